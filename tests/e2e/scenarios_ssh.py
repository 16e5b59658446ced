"""Scenarios of sshd, login and su behind pam_totp.so: codes, replays, wrong codes and
passwords, keys, policies, grace, recovery codes, lock-out, parallel sessions, unsafe files,
enrolment at login, and (phase 2) the admin CLI's unlock, enroll and activate.

Loaded by test_e2e.py (which it imports for its helpers and scenario registry)."""

import json
import os
import re
import time

from test_e2e import (POLICY, STATE_DIR, assert_no_secrets, check, new_recovery_code, new_secret,
                      recovery_hash, rfc3339, scenario, ssh_ready, totp, utc, wrong_code)


@scenario("ssh_password_and_current_code_run_the_remote_command")
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    mark = c.syslog.mark()
    s = c.ssh("alice", pw, totp(secret))
    check(s.prompts == ["Password:", "Verification code:"], f"prompts: {s}")
    check(s.ran("LOGGED-IN-alice") and s.status == 0, f"remote command did not run: {s}")
    line = c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice rhost=127\.0\.0\.1 accepted step",
                             mark)
    check(line, "no 'accepted step' syslog line for alice from 127.0.0.1")


@scenario("ssh_the_same_code_in_a_second_session_is_denied_as_a_replay")
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    code = totp(secret)
    s1 = c.ssh("alice", pw, code)
    check(s1.ran("LOGGED-IN-alice"), f"first session failed: {s1}")
    mark = c.syslog.mark()
    s2 = c.ssh("alice", pw, code)
    check(s2.prompts == ["Password:", "Verification code:"], f"prompts: {s2}")
    check(not s2.ran("LOGGED-IN-alice"), f"replayed code let alice in: {s2}")
    check("Permission denied" in s2.transcript, f"no 'Permission denied': {s2}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice .*replayed code", mark),
          "no 'replayed code' syslog line")


@scenario("ssh_wrong_code_is_denied_with_one_syslog_line_naming_user_and_rhost_and_no_secret")
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    bad = wrong_code(secret)
    mark = c.syslog.mark()
    s = c.ssh("alice", pw, bad)
    check(s.prompts == ["Password:", "Verification code:"], f"prompts: {s}")
    check(not s.ran("LOGGED-IN-alice") and "Permission denied" in s.transcript,
          f"wrong code was not denied: {s}")
    c.syslog.wait_for(r"pam_totp\(", mark)
    lines = c.syslog.module_lines(mark)
    check(len(lines) == 1, f"expected exactly one pam_totp syslog line, got {lines}")
    ln = lines[0]
    check("user=alice" in ln and "rhost=127.0.0.1" in ln and "wrong code" in ln,
          f"syslog line lacks user/rhost/reason: {ln}")
    current = [totp(secret, offset_steps=k) for k in (-1, 0, 1)]
    assert_no_secrets(c, mark, secret, pw, bad, *current)


@scenario("ssh_wrong_password_is_refused_before_the_code_prompt")
def _(c):
    ssh_ready(c)
    c.add_user("alice")
    c.enrol("alice")
    mark = c.syslog.mark()
    s = c.ssh("alice", "not-the-password", "123456")
    check(s.prompts == ["Password:"], f"the code prompt appeared after a wrong password: {s}")
    check(not s.ran("LOGGED-IN-alice"), f"logged in with a wrong password: {s}")
    check(c.syslog.module_lines(mark) == [], "pam_totp ran after a failed password")


@scenario("ssh_publickey_plus_code_logs_in_and_the_key_alone_does_not")
def _(c):
    ssh_ready(c, methods="publickey,keyboard-interactive", key_stack=True)
    c.add_user("alice")
    secret = c.enrol("alice")
    key = c.ssh_keygen("alice")
    # The key alone: the server wants keyboard-interactive after it.
    s0 = c.converse(c.ssh_argv("alice", methods="publickey", key=key), [])
    check(not s0.ran("LOGGED-IN-alice"), f"the key alone let alice in: {s0}")
    check("Permission denied (keyboard-interactive)" in s0.transcript,
          f"expected the server to demand keyboard-interactive: {s0}")
    # The key and a wrong code.
    s1 = c.ssh("alice", code=wrong_code(secret), methods="publickey,keyboard-interactive",
               key=key)
    check(s1.prompts == ["Verification code:"] and not s1.ran("LOGGED-IN-alice"),
          f"key + wrong code: {s1}")
    # The key and the current code; no password asked.
    s2 = c.ssh("alice", code=totp(secret), methods="publickey,keyboard-interactive", key=key)
    check(s2.prompts == ["Verification code:"], f"prompts: {s2}")
    check(s2.ran("LOGGED-IN-alice") and s2.status == 0, f"key + code did not log in: {s2}")
    check("Partial publickey for alice" in c.sshd_log() or
          "Accepted publickey for alice" in c.sshd_log(), "sshd did not log the key")


@scenario("ssh_unenrolled_user_without_policy_logs_in_with_the_password_only")
def _(c):
    ssh_ready(c)
    pw = c.add_user("bob")
    mark = c.syslog.mark()
    s = c.ssh("bob", pw)
    check(s.prompts == ["Password:"], f"prompts: {s}")
    check(s.ran("LOGGED-IN-bob"), f"bob did not get in: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=bob .*not enrolled, not required", mark),
          "no 'not enrolled, not required' line")


@scenario("ssh_unenrolled_user_under_require_all_is_denied")
def _(c):
    ssh_ready(c)
    pw = c.add_user("bob")
    c.write_policy("version = 1\nrequire_all = true\n")
    mark = c.syslog.mark()
    s = c.ssh("bob", pw, "123456")
    check(s.prompts == ["Password:", "Verification code:"],
          f"expected the same code prompt as for an enrolled user: {s}")
    check(not s.ran("LOGGED-IN-bob") and "Permission denied" in s.transcript,
          f"bob was not denied: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=bob .*not enrolled, required by "
                            r"require_all", mark), "no 'required by require_all' line")


@scenario("ssh_unenrolled_user_during_grace_sees_the_notice_and_gets_in")
def _(c):
    ssh_ready(c)
    pw = c.add_user("bob")
    until = (int(time.time()) // 86400 + 10) * 86400
    c.write_policy(f"version = 1\nrequire_all = true\ngrace_until = {rfc3339(until)}\n")
    mark = c.syslog.mark()
    # sshd shows PAM text that arrives after the last prompt as a login message, which it
    # prints for interactive (pty) sessions only: log in to a shell.
    s = c.ssh("bob", pw, command=None, tty=True, shell_command="echo LOGGED-IN-$USER; exit")
    check(s.prompts == ["Password:"], f"prompts: {s}")
    check("becomes mandatory on " + utc(until).strftime("%Y-%m-%d") in s.transcript,
          f"no grace notice naming the date: {s}")
    check(s.ran("LOGGED-IN-bob"), f"bob did not get in during grace: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=bob .*grace until", mark),
          "no 'grace until' syslog line")


@scenario("ssh_recovery_code_works_once")
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    code, other = new_recovery_code(), new_recovery_code()
    c.enrol("alice", recovery=[recovery_hash(code), recovery_hash(other)])
    mark = c.syslog.mark()
    typed = code.upper()   # any case, with dashes
    s1 = c.ssh("alice", pw, typed)
    check(s1.ran("LOGGED-IN-alice"), f"recovery code refused: {s1}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice .*accepted recovery code \(1 left\)",
                            mark), "no 'accepted recovery code (1 left)' line")
    record = c.read(f"{STATE_DIR}/users/alice.toml")
    check(record.count("sha256:") == 1, f"the used code was not burned:\n{record}")
    s2 = c.ssh("alice", pw, code.replace("-", ""))
    check(not s2.ran("LOGGED-IN-alice"), f"a burned recovery code let alice in again: {s2}")
    assert_no_secrets(c, mark, code, code.replace("-", ""), other, pw)


@scenario("ssh_five_wrong_codes_lock_the_user_and_a_correct_code_is_then_refused")
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    mark = c.syslog.mark()
    for i in range(5):
        s = c.ssh("alice", pw, wrong_code(secret))
        check(not s.ran("LOGGED-IN-alice"), f"wrong code {i + 1} let alice in: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice .*failure 5\).*locked until", mark),
          "the fifth failure did not lock")
    mark = c.syslog.mark()
    s = c.ssh("alice", pw, totp(secret))
    check(s.prompts == ["Password:", "Verification code:"],
          f"a locked user must still be prompted: {s}")
    check(not s.ran("LOGGED-IN-alice"), f"locked alice got in with a correct code: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice .*locked until", mark),
          "no 'locked until' line for the refused correct code")
    c.locked_secret = secret


@scenario("login_on_a_terminal_asks_password_then_code_and_opens_a_shell_only_with_a_correct_code")
def _(c):
    c.install_stacks()
    pw = c.add_user("alice")
    secret = c.enrol("alice")

    def login(code):
        # script(1) gives login a terminal of the container's own devpts.
        return c.converse(["script", "-qfec", "exec /bin/login alice", "/dev/null"],
                          [("Password:", pw), ("Verification code:", code)],
                          shell_command="echo LOGGED-IN-$USER; exit", timeout=30)

    mark = c.syslog.mark()
    bad = login(wrong_code(secret))
    check(bad.prompts[:2] == ["Password:", "Verification code:"], f"prompts: {bad}")
    check("Login incorrect" in bad.transcript and not bad.ran("LOGGED-IN-alice"),
          f"login with a wrong code: {bad}")
    check(c.syslog.wait_for(r"pam_totp\(login:auth\).*user=alice .*wrong code", mark),
          "no 'wrong code' line for login")
    good = login(totp(secret))
    check(good.prompts == ["Password:", "Verification code:"], f"prompts: {good}")
    check(good.ran("LOGGED-IN-alice"), f"login with the correct code opened no shell: {good}")


@scenario("su_from_an_unprivileged_user_asks_password_then_code_and_runs_only_with_a_correct_code")
def _(c):
    c.install_stacks()
    pw = c.add_user("alice")
    c.add_user("bob")
    secret = c.enrol("alice")

    def su(code):
        cmd = "exec runuser -u bob -- su - alice -c 'echo SU-OK-$(id -un)'"
        return c.converse(["script", "-qfec", cmd, "/dev/null"],
                          [("Password:", pw), ("Verification code:", code)])

    mark = c.syslog.mark()
    bad = su(wrong_code(secret))
    check(bad.prompts == ["Password:", "Verification code:"], f"prompts: {bad}")
    check(not bad.ran("SU-OK-alice") and "Authentication failure" in bad.transcript,
          f"su with a wrong code: {bad}")
    check(c.syslog.wait_for(r"pam_totp\(su-l:auth\).*user=alice .*wrong code", mark),
          "no 'wrong code' line for su")
    good = su(totp(secret))
    check(good.prompts == ["Password:", "Verification code:"], f"prompts: {good}")
    check(good.ran("SU-OK-alice"), f"su with the correct code did not run the command: {good}")


@scenario("ssh_parallel_sessions_with_the_same_code_let_exactly_one_in")
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    n = 4
    children = [c.spawn(c.ssh_argv("alice")) for _ in range(n)]
    for ch in children:
        ch.expect("Password:")
        ch.sendline(pw)
    for ch in children:
        ch.expect("Verification code:")
    code = totp(secret)
    for ch in children:     # all answers go out before any session finishes
        ch.sendline(code)
    import pexpect
    outputs = []
    for ch in children:
        ch.expect(pexpect.EOF)
        ch.close()
        outputs.append(ch.logfile_read.getvalue())
    c.transcripts += [f"--- parallel session {i} ---\n{o}" for i, o in enumerate(outputs)]
    winners = sum("LOGGED-IN-alice" in o for o in outputs)
    check(winners == 1, f"{winners} of {n} parallel sessions with one code got in")
    lines = c.syslog.module_lines(0)
    check(sum("accepted step" in ln for ln in lines) == 1 and
          sum("replayed code" in ln for ln in lines) == n - 1,
          f"expected 1 accepted and {n - 1} replayed, got {lines}")


@scenario("ssh_group_writable_policy_denies_everyone_and_logs_why")
def _(c):
    ssh_ready(c)
    pw_a = c.add_user("alice")
    pw_b = c.add_user("bob")
    secret = c.enrol("alice")
    c.write(POLICY, "version = 1\n", mode=0o664)
    mark = c.syslog.mark()
    s1 = c.ssh("alice", pw_a, totp(secret))
    s2 = c.ssh("bob", pw_b)
    check(not s1.ran("LOGGED-IN-alice"), f"enrolled alice got in under an untrusted policy: {s1}")
    check(not s2.ran("LOGGED-IN-bob"), f"unenrolled bob got in under an untrusted policy: {s2}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=bob .*bad permissions on "
                            r"/etc/pam-totp/policy\.toml", mark),
          "no 'bad permissions on /etc/pam-totp/policy.toml' line")


@scenario("ssh_record_readable_by_others_is_refused_and_logged")
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    os.chmod(c.host_path(f"{STATE_DIR}/users/alice.toml"), 0o644)
    mark = c.syslog.mark()
    s = c.ssh("alice", pw, totp(secret))
    check(not s.ran("LOGGED-IN-alice"), f"alice got in with a world-readable record: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice .*bad permissions on "
                            r"/var/lib/pam-totp/users/alice\.toml", mark),
          "no 'bad permissions on .../alice.toml' line")


@scenario("ssh_record_with_an_unknown_key_is_refused_naming_file_and_key")
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = new_secret()
    c.write_record("alice", secret, extra='colour = "blue"\n')
    mark = c.syslog.mark()
    s = c.ssh("alice", pw, totp(secret))
    check(not s.ran("LOGGED-IN-alice"), f"alice got in with an unknown key in her record: {s}")
    line = c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice .*alice\.toml", mark)
    check(line and "colour" in line, f"the log line does not name the file and the key: {line}")
    assert_no_secrets(c, mark, secret, pw)


@scenario("ssh_password_authentication_cannot_skip_the_code")
def _(c):
    # With PasswordAuthentication, sshd answers every hidden PAM prompt with the password.
    c.install_stacks()
    c.start_sshd(methods="any", password_auth=True)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    mark = c.syslog.mark()
    s = c.converse(c.ssh_argv("alice", methods="password"), [("[Pp]assword:", pw)])
    check(not s.ran("LOGGED-IN-alice"), f"password authentication skipped the code: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice .*wrong code", mark),
          "no 'wrong code' line for the password-authentication attempt")
    assert_no_secrets(c, mark, pw, secret)


@scenario("ssh_enroll_at_login_shows_the_qr_code_enrols_on_a_correct_code_and_the_next_login_"
          "asks_for_a_code")
def _(c):
    ssh_ready(c)
    pw = c.add_user("bob")
    c.write_policy("version = 1\nrequire_all = true\nenroll_at_login = true\n")
    record = c.host_path(f"{STATE_DIR}/users/bob.toml")
    # A wrong code does not enrol.
    s0 = c.ssh("bob", pw, "000000")
    check(s0.prompts == ["Password:", "Verification code:"] and not s0.ran("LOGGED-IN-bob"),
          f"enrolment with a wrong code: {s0}")
    check(not os.path.exists(record) or 'state = "active"' not in open(record).read(),
          "a wrong code at enrolment left an active record")
    got = {}

    def code_from_the_shown_key(transcript):
        keys = re.findall(r"Key: ([A-Z2-7]{4}(?: [A-Z2-7]{1,4})*)", transcript)
        got["secret"] = keys[-1].replace(" ", "") if keys else ""
        return totp(got["secret"]) if keys else "000000"

    s = c.converse(c.ssh_argv("bob"), [("Password:", pw),
                                       ("Verification code:", code_from_the_shown_key)])
    check(got.get("secret"), f"no 'Key: XXXX XXXX ...' line shown: {s}")
    check(re.search(r"otpauth://totp/[^\s]*secret=" + got["secret"], s.transcript),
          f"no otpauth:// URI with the key: {s}")
    check(re.search("[\u2580\u2584\u2588]{5}", s.transcript), f"no QR code (half blocks): {s}")
    check(s.ran("LOGGED-IN-bob"), f"bob was not let in after enrolling: {s}")
    check(os.path.exists(record) and 'state = "active"' in open(record).read(),
          "no active record after enrolment at login")
    # Next login: password, then a code (the enrolment consumed the current step).
    s2 = c.ssh("bob", pw, totp(got["secret"], offset_steps=1))
    check(s2.prompts == ["Password:", "Verification code:"], f"next login prompts: {s2}")
    check(s2.ran("LOGGED-IN-bob"), f"bob's next login failed: {s2}")


# -- phase 2 (the admin CLI): enrol-at-login and unlock ---------------------------------------

@scenario("ssh_locked_user_is_freed_by_pam_totp_unlock", needs_cli=True)
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    for _ in range(5):
        c.ssh("alice", pw, wrong_code(secret))
    s = c.ssh("alice", pw, totp(secret))
    check(not s.ran("LOGGED-IN-alice"), f"not locked: {s}")
    c.run("pam-totp", "unlock", "alice")
    # unlock sets last_step to the current step: a code of the next step is still in the window.
    s = c.ssh("alice", pw, totp(secret, offset_steps=1))
    check(s.ran("LOGGED-IN-alice"), f"unlocked alice could not log in: {s}")


@scenario("ssh_after_pam_totp_enroll_and_activate_the_app_code_and_a_recovery_code_work",
          needs_cli=True)
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    j = json.loads(c.pam_totp("enroll", "alice", "--json", "--issuer", "e2e").stdout)
    check(j["state"] == "pending", f"enroll --json: {j}")
    secret = j["secret"]
    # A pending record is not used: under no policy alice logs in with the password only.
    s0 = c.ssh("alice", pw)
    check(s0.prompts == ["Password:"] and s0.ran("LOGGED-IN-alice"), f"pending record: {s0}")
    c.pam_totp("activate", "alice", totp(secret))
    s1 = c.ssh("alice", pw, totp(secret, offset_steps=1))
    check(s1.prompts == ["Password:", "Verification code:"] and s1.ran("LOGGED-IN-alice"),
          f"login with the app's code after activation: {s1}")
    s2 = c.ssh("alice", pw, j["recovery_codes"][0])
    check(s2.ran("LOGGED-IN-alice"), f"recovery code from enroll --json: {s2}")


@scenario("ssh_enroll_force_denies_the_user_until_the_new_key_is_activated", needs_cli=True)
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    old = c.enrol("alice")
    new = json.loads(c.pam_totp("enroll", "alice", "--force", "--json").stdout)["secret"]
    mark = c.syslog.mark()
    s1 = c.ssh("alice", pw, totp(old))
    check(s1.prompts == ["Password:", "Verification code:"] and not s1.ran("LOGGED-IN-alice"),
          f"the old key still works after enroll --force: {s1}")
    s2 = c.ssh("alice", pw, totp(new))
    check(not s2.ran("LOGGED-IN-alice"), f"the new key works before activation: {s2}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice .*re-enrolment pending "
                            r"activation", mark), "no 're-enrolment pending activation' line")
    c.pam_totp("activate", "alice", totp(new))
    s3 = c.ssh("alice", pw, totp(new, offset_steps=1))
    check(s3.ran("LOGGED-IN-alice"), f"the new key does not work after activation: {s3}")
    s4 = c.ssh("alice", pw, totp(old, offset_steps=1))
    check(not s4.ran("LOGGED-IN-alice"), f"the old key works after activation: {s4}")
