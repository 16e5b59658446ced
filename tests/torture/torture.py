#!/usr/bin/env python3
"""The torture checks of pam_totp (tests/torture/run.sh runs this inside tests/lib/sandbox.sh).

Every login goes through the real libpam: tests/pam-harness/harness.c loads the stack from a
private config dir (pam_start_confdir) and answers the prompt from stdin. Syslog arrives on the
sandbox's private /dev/log (tests/torture/logsink.py writes it to a file). Files are checked
with the module's own store code (tests/torture/check, `torture-check`) and by logging in.

Output: one line per check, `PASS name` or `FAIL name: why`, INFO/SKIP lines that count for
nothing, and a last line `N passed, M failed`. Exit status 1 if anything failed.

Environment (set by run.sh): TORTURE_WORK, TORTURE_SO, TORTURE_HARNESS, TORTURE_CRASHKILL,
TORTURE_STORM, TORTURE_CHECK, TORTURE_CLI (may be missing), TORTURE_SUPP, TORTURE_LOG,
TORTURE_QUICK=1 (fewer iterations), TORTURE_ONLY="group ..." (run only these groups:
crash points durability cli fulldisk storm parallel badinput memory), TORTURE_SEED.
"""
import os
import sys
import time

import torture_lib
from torture_lib import QUICK, ONLY, SEED, SO, WORK, check, info
from torture_crash import group_cli, group_crash, group_durability, group_points
from torture_stress import (group_badinput, group_fulldisk, group_memory, group_parallel,
                            group_storm)


# ---------------------------------------------------------------------------------------------

GROUPS = [
    ("crash", group_crash),
    ("points", group_points),
    ("durability", group_durability),
    ("cli", group_cli),
    ("fulldisk", group_fulldisk),
    ("storm", group_storm),
    ("parallel", group_parallel),
    ("badinput", group_badinput),
    ("memory", group_memory),
]


def main():
    os.symlink(SO, WORK / "pam_totp.so")
    info(f"torture: {'quick' if QUICK else 'full'} mode, module {SO}, work dir {WORK}, seed {SEED}")
    for name, fn in GROUPS:
        if ONLY and name not in ONLY:
            continue
        t0 = time.time()
        try:
            fn()
        except Exception as e:  # a broken check is a failed check
            import traceback

            traceback.print_exc()
            check(f"{name}.completed", False, f"{type(e).__name__}: {e}")
        info(f"{name}: {time.time() - t0:.1f} s")
    print(f"{torture_lib.passed} passed, {torture_lib.failed} failed", flush=True)
    return 1 if torture_lib.failed else 0


if __name__ == "__main__":
    sys.exit(main())
