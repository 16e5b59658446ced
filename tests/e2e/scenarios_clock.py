"""The phone's clock (SPEC §10): the offset of each accepted code is stored, shown by
`pam-totp status` (JSON `clock_offset_seconds`, and in words when it is not 0), carried by the
log line, and listed by `pam-totp doctor`. Real sshd and ssh; codes from oathtool.

Loaded by test_e2e.py (which it imports for its helpers and scenario registry)."""

import json

from test_e2e import check, next_step, scenario, ssh_ready, totp  # noqa: E402


def status(c, user):
    return json.loads(c.pam_totp("status", user, "--json").stdout)


@scenario("clock_codes_from_a_phone_30s_behind_then_ahead_show_in_status_log_and_doctor",
          needs_cli=True)
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    check(status(c, "alice")["clock_offset_seconds"] is None,
          "clock_offset_seconds is not null before the first login")
    # A phone 30 s behind: the code of the previous step.
    next_step()
    mark = c.syslog.mark()
    s = c.ssh("alice", pw, lambda _: totp(secret, offset_steps=-1))   # at the prompt
    check(s.ran("LOGGED-IN-alice"), f"a code from 30 s ago was refused: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice .*accepted step \d+ "
                            r"\(offset -1\)", mark),
          "the log line does not carry (offset -1)")
    check(status(c, "alice")["clock_offset_seconds"] == -30, f"status: {status(c, 'alice')}")
    human = c.pam_totp("status", "alice").stdout
    check("alice's phone was 30 s behind at the last login" in human
          and "automatic time" in human, f"status does not say it in words:\n{human}")
    doctor = c.run("pam-totp", "doctor", check=False).stdout
    check("alice (30 s behind)" in doctor, f"doctor does not list alice:\n{doctor}")
    # The same phone, now 30 s ahead: the code of the next step (later than the last one used).
    next_step()
    mark = c.syslog.mark()
    s = c.ssh("alice", pw, lambda _: totp(secret, offset_steps=1))   # at the prompt
    check(s.ran("LOGGED-IN-alice"), f"a code from 30 s ahead was refused: {s}")
    check(c.syslog.wait_for(r"accepted step \d+ \(offset 1\)", mark),
          "the log line does not carry (offset 1)")
    st = status(c, "alice")
    check(st["clock_offset_seconds"] == 30, f"status: {st}")
    human = c.pam_totp("status", "alice").stdout
    check("30 s ahead" in human, f"status does not say ahead:\n{human}")
