"""Self-service (SPEC §8, issue 14): an ordinary user turns their own second factor on, checks
it, renews recovery codes and turns it off, through the real setuid helper
/usr/libexec/pam-totp/pam-totp-self, the real PAM service pam-totp (password: pam_unix) and
the real pam-totp front-end on a pseudo-terminal. Codes come from oathtool.

Loaded by test_e2e.py (which it imports for its helpers and scenario registry)."""

import os
import re
import subprocess
import time

from test_e2e import (STATE_DIR, Skip, check, new_recovery_code, recovery_hash, scenario,  # noqa
                      next_step, totp, wrong_code)

HELPER = "/usr/libexec/pam-totp/pam-totp-self"
PW = "Password:"
CODE = "Verification code:"
APP = "Code from the app:"


def ready(c):
    """Stacks as a Debian host has them, the PAM service of the helper, and the helper."""
    if c.run("test", "-u", HELPER, check=False).returncode != 0:
        raise Skip("the self-service helper is not built (cargo build --release --workspace)")
    c.install_stacks()
    c.write_pam("pam-totp", "@include common-auth\n@include common-account\n")


def as_user(c, user, args, answers, timeout=30):
    """`pam-totp ARGS` run by USER on a terminal, answering prompts."""
    cmd = f"exec runuser -u {user} -- pam-totp {args}"
    return c.converse(["script", "-qfec", cmd, "/dev/null"], answers, timeout=timeout)


def key_of(transcript):
    """The key the front-end showed (the last one), without spaces."""
    keys = re.findall(r"Key:\s+((?:[A-Z2-7]{1,4} ?)+)", transcript)
    if not keys:
        raise AssertionError(f"no key shown:\n{transcript}")
    return keys[-1].replace(" ", "")


def code_for_shown_key(transcript):
    return totp(key_of(transcript))


def self_lines(c, mark):
    return [ln for ln in c.syslog.since(mark) if "pam_totp(pam-totp:self)" in ln]


@scenario("self_enrol_with_a_wrong_then_a_right_app_code_then_ssh_asks_for_the_new_code",
          needs_cli=True)
def _(c):
    ready(c)
    pw = c.add_user("alice")
    c.start_sshd()
    mark = c.syslog.mark()
    s = as_user(c, "alice", "enroll", [
        (PW, pw),
        (APP, lambda t: wrong_code(key_of(t))),
        (APP, code_for_shown_key),
    ])
    check(s.status == 0 and "Two-factor login is on" in s.transcript, f"enrol: {s}")
    check("try again" in s.transcript, f"the wrong code was not reported: {s}")
    check(s.prompts[:1] == [PW] and CODE not in s.prompts, f"prompts: {s}")
    check(any("user=alice self-enrolled" in ln for ln in self_lines(c, mark)),
          f"no self-enrolled line: {c.syslog.since(mark)}")
    secret = key_of(s.transcript)
    st = as_user(c, "alice", "status", [])
    check(st.status == 0 and re.search(r"State:\s+active", st.transcript), f"status: {st}")
    good = c.ssh("alice", password=pw, code=totp(secret, offset_steps=1))
    check(good.ran("LOGGED-IN-alice"), f"ssh with the new key: {good}")


@scenario("self_status_shows_only_ones_own_account_and_other_verbs_say_what_users_can_do",
          needs_cli=True)
def _(c):
    ready(c)
    c.add_user("alice")
    c.add_user("bob")
    secret = c.enrol("bob")
    st = as_user(c, "alice", "status --json", [])
    check(st.status == 0 and '"state": "none"' in st.transcript and secret not in st.transcript,
          f"alice's status: {st}")
    for args in ("status bob", "list", "unlock bob", "enroll bob", "policy show", "doctor",
                 "--dir /tmp status"):
        r = as_user(c, "alice", args, [])
        check(r.status != 0 and ("only root can" in r.transcript or "root" in r.transcript),
              f"`pam-totp {args}` as alice: {r}")
    r = as_user(c, "bob", "status", [])
    check(r.status == 0 and re.search(r"State:\s+active", r.transcript), f"bob: {r}")


@scenario("self_recovery_renewal_needs_password_and_code_and_the_old_codes_stop_working",
          needs_cli=True)
def _(c):
    ready(c)
    pw = c.add_user("alice")
    old = new_recovery_code()
    secret = c.enrol("alice", recovery=[recovery_hash(old)])
    c.start_sshd()
    s = as_user(c, "alice", "recovery", [(PW, pw), (CODE, totp(secret))])
    check(s.status == 0 and s.prompts == [PW, CODE], f"recovery: {s}")
    new = re.findall(r"^\s+([2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4})\s*$", s.transcript, re.M)
    check(len(new) == 10, f"ten new codes expected: {s}")
    bad = c.ssh("alice", password=pw, code=old)
    check(not bad.ran("LOGGED-IN-alice"), f"the old recovery code still works: {bad}")
    good = c.ssh("alice", password=pw, code=new[0])
    check(good.ran("LOGGED-IN-alice"), f"a new recovery code does not work: {good}")


@scenario("self_disable_is_refused_with_a_wrong_code_or_password_and_done_with_both",
          needs_cli=True)
def _(c):
    ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    record = f"{STATE_DIR}/users/alice.toml"
    r = as_user(c, "alice", "disable", [(PW, pw), (CODE, wrong_code(secret))])
    check(r.status != 0 and "not accepted" in r.transcript, f"wrong code: {r}")
    check(os.path.exists(c.host_path(record)), "the record was removed after a wrong code")
    r = as_user(c, "alice", "disable", [(PW, pw + "x")])
    check(r.status != 0 and CODE not in r.prompts, f"wrong password: {r}")
    check(os.path.exists(c.host_path(record)), "the record was removed after a wrong password")
    next_step()
    r = as_user(c, "alice", "disable", [(PW, pw), (CODE, totp(secret))])
    check(r.status == 0 and "off" in r.transcript, f"disable: {r}")
    check(not os.path.exists(c.host_path(record)), "the record is still there")


@scenario("self_disable_is_refused_for_a_required_user_naming_the_rule", needs_cli=True)
def _(c):
    ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    c.write_policy('version = 1\nrequire_users = ["alice"]\n')
    r = as_user(c, "alice", "disable", [(PW, pw), (CODE, totp(secret))])
    check(r.status != 0 and "required by require_users" in r.transcript, f"{r}")
    check(os.path.exists(c.host_path(f"{STATE_DIR}/users/alice.toml")), "record removed")


@scenario("self_service_off_refuses_every_verb_but_status", needs_cli=True)
def _(c):
    ready(c)
    c.add_user("alice")
    c.write_policy("version = 1\nself_service = false\n")
    for verb in ("enroll", "recovery", "disable"):
        r = as_user(c, "alice", verb, [])
        check(r.status != 0 and "turned off by your administrator" in r.transcript
              and PW not in r.prompts, f"{verb}: {r}")
    r = as_user(c, "alice", "status", [])
    check(r.status == 0, f"status: {r}")


@scenario("self_re_enrolment_aborted_before_the_app_code_leaves_the_old_key_working",
          needs_cli=True)
def _(c):
    ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    before = open(c.host_path(f"{STATE_DIR}/users/alice.toml")).read()
    # Ctrl-C at the app-code prompt.
    r = as_user(c, "alice", "enroll", [(PW, pw), (CODE, totp(secret)), (APP, "\x03")])
    check(r.prompts == [PW, CODE, APP] and r.status != 0, f"expected Ctrl-C to end it: {r}")
    after = open(c.host_path(f"{STATE_DIR}/users/alice.toml")).read()
    check(before == after, "the record changed although the new key was never confirmed")
    c.start_sshd()
    good = c.ssh("alice", password=pw, code=totp(secret, offset_steps=1))
    check(good.ran("LOGGED-IN-alice"), f"the old key no longer works: {good}")


def helper_run(c, user, lines, env=None, prefix=""):
    """Runs the helper as USER with LINES (protocol requests) on its stdin."""
    env_text = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    cmd = f"{prefix} exec env {env_text} {HELPER}"
    return subprocess.run(c.nsenter(["runuser", "-u", user, "--", "sh", "-c", cmd]),
                          input="".join(ln + "\n" for ln in lines), capture_output=True,
                          text=True, timeout=30)


STATUS_HELLO = '{"type":"hello","version":1,"verb":{"verb":"status"}}'


@scenario("self_helper_ignores_a_hostile_environment_and_refuses_hostile_limits_cleanly",
          needs_cli=True)
def _(c):
    ready(c)
    c.add_user("alice")
    secret = c.enrol("alice")
    os.makedirs(c.host_path("/etc/pam-totp"), exist_ok=True)
    hostile = {"PAM_TOTP_DIR": "/tmp", "PAM_TOTP_POLICY": "/tmp/p.toml",
               "PAM_TOTP_STORE": "/tmp/s", "RUST_BACKTRACE": "1", "TZ": "XYZ+99",
               "LANG": "xx_XX", "PATH": "/tmp", "LD_PRELOAD": "/tmp/evil.so",
               "LD_LIBRARY_PATH": "/tmp"}
    r = helper_run(c, "alice", [STATUS_HELLO], env=hostile)
    check(r.returncode == 0 and '"state":"active"' in r.stdout and secret not in r.stdout,
          f"status with a hostile environment: {r}")
    r = helper_run(c, "alice", ['{"type":"answer","text":"' + "x" * 1_000_000 + '"}'])
    check(r.returncode == 1 and '"refused"' in r.stdout, f"1 MB line: {r}")
    r = helper_run(c, "alice", [STATUS_HELLO], prefix="ulimit -n 3;")
    check(r.returncode != 0, f"RLIMIT_NOFILE 3 must refuse: {r}")
    r = helper_run(c, "alice", [STATUS_HELLO], prefix="exec 1>&-;")
    check(r.returncode != 0, f"closed stdout must refuse: {r}")
    state = c.state_text("alice")
    check(".tmp" not in " ".join(os.listdir(c.host_path(f"{STATE_DIR}/users"))),
          f"a temp file was left: {state}")


@scenario("self_helper_refuses_root_and_a_uid_unknown_to_the_user_database", needs_cli=True)
def _(c):
    ready(c)
    r = subprocess.run(c.nsenter([HELPER]), input=STATUS_HELLO + "\n", capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 1 and "root" in (r.stdout + r.stderr), f"root: {r}")
    r = subprocess.run(c.nsenter(["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups",
                                  HELPER]), input=STATUS_HELLO + "\n", capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 1, f"uid 4242 without a passwd entry: {r}")


@scenario("self_front_end_killed_at_every_prompt_leaves_the_record_and_no_helper_behind",
          needs_cli=True)
def _(c):
    ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    record = c.host_path(f"{STATE_DIR}/users/alice.toml")
    before = open(record).read()
    answers = [(PW, pw), (CODE, None), (APP, None)]
    for stop in range(len(answers)):
        next_step()
        child = c.spawn(["runuser", "-u", "alice", "--", "pam-totp", "enroll", "--qr", "none"])
        for i, (label, reply) in enumerate(answers):
            child.expect(label)
            if i == stop:
                break
            child.sendline(reply if reply is not None else totp(secret))
        c.run("pkill", "-KILL", "-x", "pam-totp")
        child.close(force=True)
        deadline = time.time() + 5
        while time.time() < deadline and c.run("pgrep", "-x", "pam-totp-self",
                                               check=False).returncode == 0:
            time.sleep(0.1)
        check(c.run("pgrep", "-x", "pam-totp-self", check=False).returncode != 0,
              f"the helper outlived its front-end (killed at {answers[stop][0]})")
        check(open(record).read() == before, f"the record changed (killed at {answers[stop][0]})")
        leftovers = [n for n in os.listdir(c.host_path(f"{STATE_DIR}/users")) if ".tmp" in n]
        check(not leftovers, f"temp files left: {leftovers}")
    c.start_sshd()
    good = c.ssh("alice", password=pw, code=totp(secret, offset_steps=1))
    check(good.ran("LOGGED-IN-alice"), f"the old key no longer works: {good}")


@scenario("self_proof_racing_a_login_with_the_same_code_lets_exactly_one_use_it",
          needs_cli=True)
def _(c):
    ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    c.start_sshd()
    next_step()
    ssh = c.spawn(c.ssh_argv("alice"))
    ssh.expect("Password:")
    ssh.sendline(pw)
    ssh.expect(CODE)
    rec = c.spawn(["runuser", "-u", "alice", "--", "pam-totp", "recovery"])
    rec.expect(PW)
    rec.sendline(pw)
    rec.expect(CODE)
    code = totp(secret)
    ssh.sendline(code)
    rec.sendline(code)
    import pexpect
    ssh.expect(pexpect.EOF)
    rec.expect(pexpect.EOF)
    ssh_out, rec_out = ssh.logfile_read.getvalue(), rec.logfile_read.getvalue()
    ssh.close()
    rec.close()
    logged_in = "LOGGED-IN-alice" in ssh_out
    renewed = "New recovery codes" in rec_out
    check(logged_in != renewed, f"exactly one may use the code: ssh={logged_in} "
          f"recovery={renewed}\n--- ssh ---\n{ssh_out}\n--- recovery ---\n{rec_out}")
