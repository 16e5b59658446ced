#!/usr/bin/env python3
"""The pam-totp demo (run it through tests/e2e/demo.sh, i.e. `make demo`).

Starts a throwaway container (tests/e2e/container.sh: private /etc/pam.d, /etc/ssh, users,
state directory, loopback-only network) with the real sshd on 127.0.0.1:2222 inside it, the PAM
stack of a Debian system with pam-totp enabled, and a user `demo`.

  interactive (default): enrols `demo` with `pam-totp enroll` on your terminal (scan the QR code
      with a phone, type the code it shows), prints the ssh command to try and shows the
      module's syslog lines until Ctrl-C.
  --auto (DEMO=auto): the whole story, unattended and narrated: enrol, log in with a code, the
      same code refused, a recovery code, lockout after 5 wrong codes, unlock. Codes come from
      oathtool, standing in for the phone. Exits 0 when every step behaved as expected.
"""

import json
import os
import re
import shlex
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_e2e as e2e  # noqa: E402  (the container and login helpers)

USER = "demo"
PASSWORD = "demo-password"
ISSUER = "pam-totp-demo"
PAUSE = float(os.environ.get("DEMO_PAUSE", "0.8"))
SELF_USER = "sam"
SELF_PASSWORD = "sam-password"

BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") \
    if sys.stdout.isatty() else ("", "", "", "", "")


def say(text):
    print(f"\n{BOLD}==> {text}{RESET}", flush=True)


def aside(text):
    print(f"{DIM}    {text}{RESET}", flush=True)


def syslog_since(c, mark):
    for ln in c.syslog.module_lines(mark):
        aside("syslog: " + re.sub(r"^<\d+>", "", ln))


def setup():
    say("Starting a throwaway container: private /etc, users and state; loopback-only network")
    c = e2e.Container(keep=False)
    c.install_stacks()
    c.write_pam("pam-totp", "@include common-auth\n@include common-account\n")
    c.start_sshd()
    c.add_user(USER, PASSWORD)
    c.add_user(SELF_USER, SELF_PASSWORD)
    aside(f"container {c.dir} (init PID {c.pid}); sshd on 127.0.0.1:{e2e.SSH_PORT} inside it")
    aside(f"PAM: /etc/pam.d/common-auth = pam_unix (password), then {e2e.MODULE}")
    aside(f"user {USER!r}, password {PASSWORD!r}")
    return c


def expect(cond, what):
    if cond:
        print(f"    {GREEN}✔ {what}{RESET}", flush=True)
        return True
    print(f"    {RED}✘ NOT AS EXPECTED: {what}{RESET}", flush=True)
    return False


def auto(c):
    ok = True
    c.echo = True

    def step(text):
        time.sleep(PAUSE)
        say(text)

    step(f"An admin enrols {USER}: pam-totp enroll {USER} (QR code, key, recovery codes)")
    r = c.run("pam-totp", "enroll", USER, "--json", "--qr", "terminal", "--issuer", ISSUER)
    print(r.stderr, end="")
    j = json.loads(r.stdout)
    secret, recovery = j["secret"], j["recovery_codes"]
    aside(f"Key: {' '.join(secret[i:i + 4] for i in range(0, len(secret), 4))}")
    aside(f"URI: {j['otpauth_uri']}")
    aside(f"recovery codes: {', '.join(recovery[:3])}, ... ({len(recovery)} in all)")

    step("The phone shows a code; the admin activates the record with it (oathtool plays the "
         "phone)")
    e2e.next_step()
    code = e2e.totp(secret, offset_steps=-1)
    r = c.run("pam-totp", "activate", USER, code)
    print("    " + r.stdout.strip().replace("\n", "\n    "))

    step(f"{USER} logs in over ssh: password, then the code from the app")
    code = e2e.totp(secret)
    aside(f"typing the password, then {code}")
    mark = c.syslog.mark()
    s = c.ssh(USER, PASSWORD, code, command="echo Hello from $(hostname) as $USER")
    ok &= expect(s.ran(f"as {USER}"), "logged in, the remote command ran")
    syslog_since(c, mark)

    step("Someone replays the same code in a second session")
    mark = c.syslog.mark()
    s = c.ssh(USER, PASSWORD, code, command="echo Hello")
    ok &= expect(not s.ran("Hello") and "Permission denied" in s.transcript,
                 "refused: a code works once")
    syslog_since(c, mark)

    step(f"The phone is lost: {USER} uses a recovery code (once)")
    aside(f"typing {recovery[0]}")
    mark = c.syslog.mark()
    s = c.ssh(USER, PASSWORD, recovery[0], command="echo Hello with a recovery code")
    ok &= expect(s.ran("Hello with"), "logged in with the recovery code; it is now burned")
    syslog_since(c, mark)

    step("An attacker who knows the password guesses codes: 5 wrong ones lock the second factor")
    mark = c.syslog.mark()
    c.echo = False
    for i in range(5):
        c.ssh(USER, PASSWORD, e2e.wrong_code(secret))
        aside(f"wrong code {i + 1}: denied")
    syslog_since(c, mark)
    mark = c.syslog.mark()
    c.echo = True
    s = c.ssh(USER, PASSWORD, e2e.totp(secret, offset_steps=1), command="echo Hello")
    ok &= expect(not s.ran("Hello"), "even the right code is refused while locked")
    syslog_since(c, mark)

    step(f"The admin checks and unlocks: pam-totp status {USER}; pam-totp unlock {USER}")
    print("    " + c.run("pam-totp", "status", USER).stdout.strip().replace("\n", "\n    "))
    print("    " + c.run("pam-totp", "unlock", USER).stdout.strip().replace("\n", "\n    "))

    step(f"{USER} logs in with the app's next code")
    mark = c.syslog.mark()
    s = c.ssh(USER, PASSWORD, e2e.totp(secret, offset_steps=1), command="echo Hello again")
    ok &= expect(s.ran("Hello again"), "logged in after unlock")
    syslog_since(c, mark)

    ok &= self_service(c, step)
    say("Done: " + ("every step behaved as expected." if ok else "SOME STEPS FAILED (see ✘)."))
    return 0 if ok else 1


def self_service(c, step):
    """The self-service chapter: a user turns two-factor login on and off for themselves."""
    ok = True
    if c.run("test", "-u", "/usr/libexec/pam-totp/pam-totp-self", check=False).returncode:
        aside("(self-service chapter skipped: the helper pam-totp-self is not built)")
        return ok
    u, pw = SELF_USER, SELF_PASSWORD

    def as_user(args, answers):
        return c.converse(["script", "-qfec", f"exec runuser -u {u} -- pam-totp {args}",
                           "/dev/null"], answers)

    def key(t):
        return re.findall(r"Key:\s+((?:[A-Z2-7]{1,4} ?)+)", t)[-1].replace(" ", "")

    step(f"Self-service: {u} turns two-factor login on for himself: pam-totp enroll "
         "(his password, then a code from the app he just set up)")
    mark = c.syslog.mark()
    s = as_user("enroll --qr none", [("Password:", pw),
                                     ("Code from the app:", lambda t: e2e.totp(key(t)))])
    ok &= expect(s.status == 0 and "Two-factor login is on" in s.transcript,
                 f"{u} enrolled himself; no administrator involved")
    secret = key(s.transcript)
    for ln in c.syslog.since(mark):
        if "pam-totp:self" in ln:
            aside("syslog: " + re.sub(r"^<\d+>", "", ln))
    step(f"{u} logs in over ssh with his new code")
    s = c.ssh(u, pw, e2e.totp(secret, offset_steps=1), command="echo Hello $USER")
    ok &= expect(s.ran(f"Hello {u}"), "logged in with password and code")
    step(f"{u} turns it off again: pam-totp disable (password and a current code)")
    time.sleep(31 - time.time() % 30)
    s = as_user("disable", [("Password:", pw),
                            ("Verification code:", e2e.totp(secret, offset_steps=1))])
    ok &= expect(s.status == 0 and "off" in s.transcript, "turned off; he logs in as before")
    return ok


def interactive(c):
    say(f"Enrol {USER}: scan the QR code with an authenticator app (Aegis, FreeOTP, Google "
        "Authenticator...), then type the code it shows")
    # On this terminal: the CLI draws the QR code, asks for a code and activates.
    import subprocess
    rc = subprocess.call(c.nsenter(["pam-totp", "enroll", USER, "--issuer", ISSUER]),
                         env=e2e.INNER_ENV)
    if rc != 0:
        aside(f"pam-totp enroll exited with status {rc}")
    wrapper = os.path.join(c.dir, "ssh-demo")
    ssh = c.ssh_argv(USER, command=None, tty=True)
    term = os.environ.get("TERM", "xterm")
    argv = c.nsenter(["env", f"TERM={term}"] + ssh)
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\n# ssh into the pam-totp demo container\nexec {shlex.join(argv)}\n")
    os.chmod(wrapper, 0o755)
    say("Now log in (in another terminal, as root):")
    print(f"\n    {wrapper}\n")
    aside(f"password: {PASSWORD}   then the code from your app (or a recovery code)")
    aside(f"admin commands inside: {os.path.join(e2e.HERE, 'container.sh')} exec {c.root} "
          f"pam-totp status {USER}    (also: unlock, recovery, list)")
    aside(f"or, on this machine: {' '.join(shlex.quote(a) for a in c.nsenter(ssh))}")
    say("Module log (syslog) follows; Ctrl-C stops the demo and removes the container")
    mark = 0
    try:
        while True:
            time.sleep(0.5)
            lines = c.syslog.since(mark, settle=0)
            mark += len(lines)
            for ln in lines:
                if "pam_totp(" in ln:
                    print("    " + re.sub(r"^<\d+>", "", ln), flush=True)
    except KeyboardInterrupt:
        print()
    return 0


def main():
    if os.geteuid() != 0:
        print("demo: run as root (it builds Linux namespaces and runs sshd)", file=sys.stderr)
        return 1
    try:
        import pexpect
        e2e.e2e_lib.pexpect = pexpect
    except ImportError:
        print("demo: python3-pexpect is missing (make deps)", file=sys.stderr)
        return 1
    for f, what in ((e2e.SO, "module"), (e2e.CLI, "CLI")):
        if not os.path.isfile(f):
            print(f"demo: the {what} {f} is not built (make build)", file=sys.stderr)
            return 1
    t0 = time.time()
    c = setup()
    try:
        rc = auto(c) if "--auto" in sys.argv[1:] else interactive(c)
    finally:
        c.stop()
        say(f"Container removed ({time.time() - t0:.0f} s).")
    return rc


if __name__ == "__main__":
    sys.exit(main())
