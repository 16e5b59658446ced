"""Scenarios of `pam-totp doctor` against crafted configurations: stacks, sshd settings,
permissions, policies, enrolment and the clock.

Loaded by test_e2e.py (which it imports for its helpers and scenario registry)."""

import os
import time

from test_e2e import (MODULE, POLICY, STATE_DIR, check, rfc3339, scenario, totp)


# -- pam-totp doctor against crafted configurations --------------------------------------------

def finding(out, level, *words):
    """The first line of `out` at `level` (ok, note, warn, ERROR) containing every word."""
    for ln in out.splitlines():
        if ln.strip().startswith(level + " ") and all(w in ln for w in words):
            return ln
    return None


def fix_after(out, line):
    lines = out.splitlines()
    i = lines.index(line)
    return lines[i + 1].strip() if i + 1 < len(lines) and "fix:" in lines[i + 1] else ""


@scenario("doctor_finds_nothing_wrong_in_a_password_and_code_setup", needs_cli=True)
def _(c):
    c.install_stacks()
    c.write_sshd_config()
    c.add_user("alice")
    c.enrol("alice")
    c.write_policy('version = 1\nrequire_users = ["alice"]\n')
    c.fake_command("timedatectl", "#!/bin/sh\necho yes\n")
    rc, out = c.doctor()
    check(rc == 0 and "Nothing wrong found" in out, f"doctor exit status {rc}:\n{out}")
    check(finding(out, "ok", "sshd:", "pam_totp.so", "pam_unix.so", "wrong password stops"),
          "no ok line for the sshd stack")
    check(finding(out, "ok", "UsePAM yes") and finding(out, "ok", "KbdInteractiveAuthentication"),
          "no ok lines for the sshd settings")
    check(finding(out, "ok", "synchronised"), "no ok line for the clock")
    check(finding(out, "ok", "every required user is enrolled"), "no ok line for the users")


@scenario("doctor_flags_a_stack_where_a_wrong_password_still_reaches_the_code_prompt",
          needs_cli=True)
def _(c):
    c.install_stacks()
    c.write_sshd_config()
    c.write_pam("login", f"auth  required  pam_unix.so nullok nodelay\n"
                         f"auth  required  {MODULE} dir={STATE_DIR}\n"
                         "account  required  pam_unix.so\nsession  required  pam_unix.so\n")
    c.add_user("alice")
    c.enrol("alice")
    rc, out = c.doctor()
    line = finding(out, "ERROR", "login:", "wrong password still reaches pam_totp.so")
    check(rc == 1 and line, f"doctor did not flag the login stack (exit {rc}):\n{out}")
    check(sum(ln.strip().startswith("ERROR") for ln in out.splitlines()) == 1,
          f"expected the login stack to be the only problem:\n{out}")
    check("requisite" in fix_after(out, line), f"the fix does not say requisite: {out}")
    check(finding(out, "ok", "sshd:", "wrong password stops"), "the good sshd stack was flagged")
    # And it is real: login asks a stranger with a wrong password for a code.
    s = c.converse(["script", "-qfec", "exec /bin/login alice", "/dev/null"],
                   [("Password:", "wrong-password"), ("Verification code:", "123456")],
                   timeout=30)
    check(s.prompts[:2] == ["Password:", "Verification code:"],
          f"expected the code prompt after a wrong password with this stack: {s}")


@scenario("doctor_flags_a_sufficient_module_before_the_code_that_lets_users_skip_it",
          needs_cli=True)
def _(c):
    c.install_stacks()
    c.write_pam("sshd", "auth  sufficient  pam_succeed_if.so user = alice\n"
                        "@include common-auth\n"
                        "account  required  pam_unix.so\nsession  required  pam_unix.so\n")
    c.start_sshd()
    c.add_user("alice")
    c.enrol("alice")
    c.fake_command("timedatectl", "#!/bin/sh\necho yes\n")
    rc, out = c.doctor()
    warn = finding(out, "warn", "pam_succeed_if.so at sshd:1", "can skip the code")
    check(rc == 1 and warn, f"doctor did not flag the sufficient line (exit {rc}):\n{out}")
    check(finding(out, "ERROR", "sshd:", "can succeed without the code"),
          f"no ERROR for the sshd stack:\n{out}")
    check(not finding(out, "ok", "sshd:"), f"the sshd stack is still called ok:\n{out}")
    check(finding(out, "ok", "su:", "wrong password stops") and not finding(out, "warn", "su:"),
          f"su's `sufficient pam_rootok.so` (root only) was flagged:\n{out}")
    # And it is real: alice logs in with neither password nor code.
    s = c.ssh("alice")
    check(s.prompts == [] and s.ran("LOGGED-IN-alice"),
          f"expected a login without password and code with this stack: {s}")


@scenario("doctor_flags_bad_permissions_and_an_untrusted_policy_with_their_fixes",
          needs_cli=True)
def _(c):
    c.install_stacks()
    c.write_sshd_config()
    c.add_user("alice")
    c.enrol("alice")
    os.chmod(c.host_path(f"{STATE_DIR}/users/alice.toml"), 0o644)
    c.write(POLICY, "version = 1\n", mode=0o666)
    rc, out = c.doctor()
    check(rc == 1, f"exit status {rc}:\n{out}")
    rec = finding(out, "ERROR", "alice", "bad permissions on /var/lib/pam-totp/users/alice.toml")
    check(rec and "chmod 0600" in fix_after(out, rec), f"record finding/fix missing:\n{out}")
    pol = finding(out, "ERROR", "bad permissions on /etc/pam-totp/policy.toml")
    check(pol and "chmod" in fix_after(out, pol), f"policy finding/fix missing:\n{out}")


@scenario("doctor_flags_a_policy_that_does_not_parse", needs_cli=True)
def _(c):
    c.install_stacks()
    c.write_policy("version = 1\nrequire_everyone = true\n")
    rc, out = c.doctor()
    check(rc == 1 and finding(out, "ERROR", "policy.toml", "require_everyone"),
          f"exit status {rc}:\n{out}")


@scenario("doctor_flags_sshd_settings_that_hide_the_code_prompt", needs_cli=True)
def _(c):
    c.install_stacks()
    c.write_sshd_config(methods="any", password_auth=True, kbd_interactive=False, use_pam=False)
    rc, out = c.doctor()
    check(rc == 1, f"exit status {rc}:\n{out}")
    check(finding(out, "ERROR", "UsePAM no"), f"UsePAM no not flagged:\n{out}")
    check(finding(out, "ERROR", "KbdInteractiveAuthentication no"), f"kbd-int not flagged:\n{out}")
    check(finding(out, "warn", "public-key logins", "skip the code"), f"pubkey bypass:\n{out}")
    check(finding(out, "warn", "PasswordAuthentication yes"), f"password auth:\n{out}")


@scenario("doctor_flags_a_code_only_sshd_stack_unless_a_key_comes_first", needs_cli=True)
def _(c):
    c.install_stacks()
    c.install_key_and_code_sshd_stack()
    c.start_sshd(methods="keyboard-interactive")
    c.add_user("alice")
    secret = c.enrol("alice")
    rc, out = c.doctor()
    check(rc == 1 and finding(out, "ERROR", "keyboard-interactive", "code alone logs in"),
          f"exit status {rc}:\n{out}")
    # And it is real: with this configuration the code alone opens a session.
    s = c.ssh("alice", code=totp(secret))
    check(s.prompts == ["Verification code:"] and s.ran("LOGGED-IN-alice"),
          f"expected a code-only login with this configuration: {s}")
    c.write_sshd_config(methods="publickey,keyboard-interactive")
    rc, out = c.doctor()
    check(finding(out, "ok", "AuthenticationMethods publickey,keyboard-interactive") and
          not finding(out, "ERROR", "sshd"), f"key + code still flagged:\n{out}")


@scenario("doctor_flags_required_users_who_are_not_enrolled_and_only_warns_during_grace",
          needs_cli=True)
def _(c):
    c.install_stacks()
    c.write_sshd_config()
    c.add_user("alice")
    c.add_user("bob")
    c.enrol("alice")
    c.write_policy("version = 1\nrequire_all = true\nexempt_users = [\"root\"]\n")
    rc, out = c.doctor()
    check(rc == 1 and finding(out, "ERROR", "bob is required (require_all) but not enrolled"),
          f"exit status {rc}:\n{out}")
    check(not finding(out, "ERROR", "alice is required"), f"enrolled alice flagged:\n{out}")
    until = rfc3339((int(time.time()) // 86400 + 10) * 86400)
    c.write_policy(f"version = 1\nrequire_all = true\nexempt_users = [\"root\"]\n"
                   f"grace_until = {until}\n")
    rc, out = c.doctor()
    check(rc == 0 and finding(out, "warn", "bob is required", until[:10]),
          f"during grace expected a warning and exit 0, got {rc}:\n{out}")


@scenario("doctor_reports_the_clock_synchronisation_and_only_warns_when_unknown", needs_cli=True)
def _(c):
    c.install_stacks()
    c.write_sshd_config()
    rc, out = c.doctor()
    check(rc == 0 and finding(out, "warn", "cannot tell whether the clock is synchronised"),
          f"no clock tool answering: exit {rc}:\n{out}")
    c.fake_command("timedatectl", "#!/bin/sh\necho no\n")
    rc, out = c.doctor()
    check(rc == 0 and finding(out, "warn", "not synchronised"), f"unsynchronised: {rc}\n{out}")
    c.fake_command("timedatectl", "#!/bin/sh\nexit 1\n")
    c.fake_command("chronyc", "#!/bin/sh\nprintf 'Reference ID    : 7F7F0101 ()\\n"
                              "Leap status     : Normal\\n'\n")
    rc, out = c.doctor()
    check(rc == 0 and finding(out, "ok", "synchronised (chronyc"), f"chrony: {rc}\n{out}")
