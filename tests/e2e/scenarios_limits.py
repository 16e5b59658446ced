"""Scenarios of issue 12 (F1): the caller's resource limits and signal dispositions must not
change what the module decides. Real `su` and `sudo`, run by a non-root user who set
`RLIMIT_FSIZE` with `prlimit` and ignores SIGXFSZ (it survives the setuid exec).

Loaded by test_e2e.py (which it imports for its helpers and scenario registry)."""

from test_e2e import check, new_secret, scenario, totp, wrong_code  # noqa: F401

UNAVAIL = "cannot retrieve authentication info"


def has_cap_sys_resource(c):
    """Whether root in the container may raise a hard limit (CAP_SYS_RESOURCE, bit 24)."""
    status = c.run("cat", "/proc/self/status").stdout
    bnd = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("CapBnd:"))
    return bool(int(bnd, 16) >> 24 & 1)


def failures(c, user):
    last = c.state_text(user).strip().splitlines()[-1]
    return int(next(f[2:] for f in last.split() if f.startswith("f=")))


def limited(cmd, fsize):
    """`cmd` as its caller would start it: SIGXFSZ ignored, RLIMIT_FSIZE at `fsize`
    ("soft:hard")."""
    return f"trap '' XFSZ; exec prlimit --fsize={fsize} -- {cmd}"


def su_as_bob(c, pw, code, fsize):
    cmd = limited("su - alice -c 'echo SU-OK-\\$(id -un)'", fsize)
    argv = ["script", "-qfec", f"exec runuser -u bob -- sh -c \"{cmd}\"", "/dev/null"]
    return c.converse(argv, [("Password:", pw), ("Verification code:", code)])


def sudo_as_alice(c, pw, code, fsize):
    cmd = limited("sudo -k sh -c 'echo SUDO-OK-\\$(id -un)'", fsize)
    argv = ["script", "-qfec", f"exec runuser -u alice -- sh -c \"{cmd}\"", "/dev/null"]
    return c.converse(argv, [(r"\[sudo\] password for alice:", pw),
                             ("Verification code:", code)])


def setup(c):
    c.install_stacks()
    pw = c.add_user("alice")
    c.add_user("bob")
    secret = c.enrol("alice")
    return pw, secret


def check_limits_do_not_matter(c, login, ok_marker, service, failure_text):
    pw, secret = setup(c)
    # Soft limit 0 under an unlimited hard limit (`ulimit -S -f 0`): lifted for the call.
    for n in (1, 2):
        mark = c.syslog.mark()
        bad = login(c, pw, wrong_code(secret), "0:unlimited")
        check(not bad.ran(ok_marker) and failure_text in bad.transcript
              and UNAVAIL not in bad.transcript, f"wrong code under the limit: {bad}")
        check(c.syslog.wait_for(rf"pam_totp\({service}:auth\).*user=alice .*wrong code "
                                rf"\(failure {n}\)", mark), f"failure {n} not counted")
    check(failures(c, "alice") == 2, f"failures not on disk:\n{c.state_text('alice')}")
    code = totp(secret)
    good = login(c, pw, code, "0:unlimited")
    check(good.ran(ok_marker), f"right code under the limit: {good}")
    again = login(c, pw, code, "unlimited:unlimited")
    check(not again.ran(ok_marker), f"the code must be spent: {again}")

    # Soft and hard limit 0 (`ulimit -f 0`): lifted where root holds CAP_SYS_RESOURCE; where it
    # cannot be, the code is not even checked, and the answer never tells which case it was.
    code = totp(secret, offset_steps=1)
    mark = c.syslog.mark()
    right = login(c, pw, code, "0:0")
    wrong = login(c, pw, wrong_code(secret), "0:0")
    for s in (right, wrong):
        check(UNAVAIL not in s.transcript, f"an error that tells a right code apart: {s}")
    if has_cap_sys_resource(c):
        check(right.ran(ok_marker), f"right code, limit lifted: {right}")
        check(not wrong.ran(ok_marker) and failure_text in wrong.transcript, f"{wrong}")
    else:
        for s in (right, wrong):
            check(not s.ran(ok_marker) and failure_text in s.transcript, f"{s}")
        check(c.syslog.wait_for(r"user=alice .*code not checked: cannot count the attempt",
                                mark), "no 'code not checked' line")
        # Nothing was judged, so nothing was spent: the same code works with ordinary limits.
        check(login(c, pw, code, "unlimited:unlimited").ran(ok_marker),
              "the code was spent although it was never checked")


@scenario("su_under_a_callers_file_size_limit_counts_wrong_codes_and_never_reveals_a_right_one")
def _(c):
    check_limits_do_not_matter(c, su_as_bob, "SU-OK-alice", "su-l", "Authentication failure")


@scenario("sudo_under_a_callers_file_size_limit_counts_wrong_codes_and_never_reveals_a_right_one")
def _(c):
    c.run("sh", "-c", "printf 'Defaults passwd_tries=1\\nalice ALL=(ALL) ALL\\n' "
                      "> /etc/sudoers.d/e2e && chmod 0440 /etc/sudoers.d/e2e "
                      "&& echo '127.0.1.1 pam-totp-e2e' >> /etc/hosts")
    c.write_pam("sudo", "@include common-auth\naccount  required  pam_unix.so\n"
                        "session  required  pam_unix.so\n")
    check_limits_do_not_matter(c, sudo_as_alice, "SUDO-OK-root", "sudo",
                               "incorrect password attempt")
