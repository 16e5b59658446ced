#!/usr/bin/env python3
"""End-to-end tests of pam_totp.so behind the real sshd, login, su and Dovecot IMAP.

Every scenario runs in a throwaway container built from Linux namespaces by
tests/e2e/container.sh (private /etc/pam.d, /etc/ssh, passwd/shadow/group, state directory,
policy directory, /dev/log, loopback-only network). Codes come from `oathtool`, never from
our crate; prompts are answered through pseudo-terminals with pexpect.

Usage:  python3 tests/e2e/test_e2e.py [-k SUBSTRING]... [--keep] [--list] [-v]
Env:    PAM_TOTP_SO   the module (default: <repo>/target/release/libpam_totp.so)
        PAM_TOTP_CLI  the admin CLI (default: <repo>/target/release/pam-totp; scenarios that
                      need it are skipped while it does not exist)
Output: one line per test (`PASS name (1.2s)`, `FAIL name (1.2s)` followed by the details,
        `SKIP name: why`), then `N passed, M failed`. Exit status 1 if anything failed.
Needs root (namespaces, sshd); without root everything is skipped (exit 0).
"""

import os
import shutil
import sys
import time
import traceback

import e2e_lib
from e2e_lib import (HERE, REPO, CONTAINER_SH, SO, CLI, SELF, MODULE, STATE_DIR, POLICY, SSH_PORT,
                     HOSTNAME, INNER_ENV, RECOVERY_ALPHABET, TestFailure, Skip, check, new_secret,
                     totp, next_step, wrong_code, new_recovery_code, recovery_hash, utc, rfc3339,
                     host_fingerprint, Syslog, Session, Tee, Container, ssh_ready,
                     assert_no_secrets)

# Everything the scenario modules (`from test_e2e import ...`) and demo.py use.
__all__ = ["HERE", "REPO", "CONTAINER_SH", "SO", "CLI", "SELF", "MODULE", "STATE_DIR", "POLICY",
           "SSH_PORT", "HOSTNAME", "INNER_ENV", "RECOVERY_ALPHABET", "TestFailure", "Skip",
           "check", "new_secret", "totp", "next_step", "wrong_code", "new_recovery_code", "recovery_hash",
           "utc", "rfc3339", "host_fingerprint", "Syslog", "Session", "Tee", "Container",
           "ssh_ready", "assert_no_secrets", "TESTS", "scenario", "main"]


# ---------------------------------------------------------------------------------------------
# The scenario registry (scenario modules register through `scenario`, in import order)

TESTS = []


def scenario(name, needs_cli=False):
    def deco(fn):
        TESTS.append((name, fn, needs_cli))
        return fn
    return deco


# ---------------------------------------------------------------------------------------------
# The scenario modules, in the order their scenarios run.

sys.modules.setdefault("test_e2e", sys.modules[__name__])
sys.path.insert(0, HERE)
import scenarios_ssh  # noqa: E402,F401
import scenarios_doctor  # noqa: E402,F401
import scenarios_clients  # noqa: E402,F401
import scenarios_clock  # noqa: E402,F401
import scenarios_cockpit  # noqa: E402,F401
import scenarios_cockpit_page  # noqa: E402,F401
import scenarios_imap  # noqa: E402,F401
import scenarios_limits  # noqa: E402,F401
import scenarios_self  # noqa: E402,F401


def main(argv):
    keep = "--keep" in argv
    verbose = "-v" in argv
    filters = [argv[i + 1] for i, a in enumerate(argv) if a == "-k" and i + 1 < len(argv)]
    if "--list" in argv:
        for name, _, _ in TESTS:
            print(name)
        return 0
    if os.geteuid() != 0:
        print("SKIP e2e: needs root (Linux namespaces, sshd, login and su); run as root")
        print("0 passed, 0 failed")
        return 0
    try:
        import pexpect as px
        e2e_lib.pexpect = px
    except ImportError:
        print("FAIL e2e: python3-pexpect is not installed (apt-get install python3-pexpect)")
        print("0 passed, 1 failed")
        return 1
    missing = [t for t in ("sshd", "ssh", "oathtool", "openssl", "script", "nsenter", "unshare",
                           "ip") if not shutil.which(t) and not os.path.exists("/usr/sbin/" + t)]
    if missing or not os.path.isfile(SO):
        why = (f"missing tools: {' '.join(missing)}" if missing else
               f"module {SO} not built (cargo build --release -p pam_totp)")
        print(f"FAIL e2e: {why}")
        print("0 passed, 1 failed")
        return 1

    before = host_fingerprint()
    passed = failed = 0
    t_all = time.time()
    for name, fn, needs_cli in TESTS:
        if filters and not any(f in name for f in filters):
            continue
        if needs_cli and not os.path.isfile(CLI):
            print(f"SKIP {name}: the pam-totp CLI is not built ({CLI})")
            continue
        t0 = time.time()
        c = None
        try:
            try:
                c = Container(keep=keep)
                fn(c)
                ok, detail = True, ""
            except Skip as e:
                ok, detail = None, str(e)
            except TestFailure as e:
                ok, detail = False, str(e)
            except Exception:   # noqa: BLE001 — any error fails the test, with its trace
                ok, detail = False, traceback.format_exc()
            if c is not None and (ok is False or verbose):
                detail += "\n" + c.debug_dump()
        finally:
            if c is not None:
                c.stop()
        dt = time.time() - t0
        if ok is None:
            print(f"SKIP {name}: {detail}", flush=True)
            continue
        print(f"{'PASS' if ok else 'FAIL'} {name} ({dt:.1f}s)", flush=True)
        if detail.strip():
            print("    " + detail.strip().replace("\n", "\n    "), flush=True)
        passed, failed = passed + ok, failed + (not ok)

    name = "host_etc_and_state_paths_are_untouched_by_the_suite"
    after = host_fingerprint()
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    if changed:
        print(f"FAIL {name}")
        print("    changed on the host: " + ", ".join(changed))
        failed += 1
    else:
        print(f"PASS {name}")
        passed += 1
    if verbose:
        print(f"# total {time.time() - t_all:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
