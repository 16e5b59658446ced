"""A service with a single password field (SPEC §9, issue 16): Dovecot IMAP with `passdb pam`
on the container's loopback, logged into with Python's imaplib. The user types the password
followed by the current code as one IMAP password; `pam_totp.so split` splits it, pam_unix
checks the password part and a second `pam_totp.so` line checks the code, only after the
password succeeded. Codes come from oathtool.

Loaded by test_e2e.py (which it imports for its helpers and scenario registry)."""

import os
import re
import secrets
import shutil
import subprocess
import threading
import time

from test_e2e import (INNER_ENV, MODULE, STATE_DIR, TestFailure, check, new_recovery_code,
                      new_secret, next_step, recovery_hash, scenario, totp, wrong_code)

IMAP_PORT = 1143
CONF = "/etc/dovecot/pam-totp-e2e.conf"
LOG = "/var/log/dovecot.log"
ARGS = f"dir={STATE_DIR}"

# Written by the test inside the container (its /etc is an overlay: nothing reaches the host).
DOVECOT_CONF = f"""# private e2e dovecot.conf: IMAP on loopback, passwords checked by PAM
protocols = imap
listen = 127.0.0.1
base_dir = /run/dovecot
state_dir = /run/dovecot-state
log_path = {LOG}
info_log_path = {LOG}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# No cache: a cached "password+code" would let a replay in without asking PAM.
auth_cache_size = 0
auth_failure_delay = 0
auth_verbose = yes
mail_location = maildir:~/Maildir
passdb {{
  driver = pam
  args = dovecot
}}
userdb {{
  driver = passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {IMAP_PORT}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""

# One login over IMAP from source address argv[3] (Dovecot delays logins from an address
# after failures from it: each login of a scenario comes from an address of its own); the
# password comes on stdin (not in argv).
CLIENT = r"""
import imaplib, socket, sys
user, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
password = sys.stdin.read()


class IMAP(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, (source, 0))


m = IMAP("127.0.0.1", port)
try:
    m.login(user, password)
except imaplib.IMAP4.error as e:
    print("IMAP-NO", e)
    sys.exit(1)
typ, data = m.select("INBOX")
print("IMAP-OK", user, typ)
m.logout()
"""

LOGINS_LOCK = threading.Lock()

SPLIT_STACK = (f"auth  requisite  {MODULE} {ARGS} split\n"
               "auth  requisite  pam_unix.so use_first_pass\n"
               f"auth  required   {MODULE} {ARGS}\n"
               "account  required  pam_unix.so\n")


def start_dovecot(c, stack=SPLIT_STACK):
    """/etc/pam.d/dovecot as SPEC §9 has it, and dovecot listening on 127.0.0.1:IMAP_PORT."""
    if not shutil.which("dovecot") and not os.path.exists("/usr/sbin/dovecot"):
        raise TestFailure("dovecot is not installed (apt-get install dovecot-imapd)")
    c.write_pam("dovecot", stack)
    c.run("sh", "-c", f"mkdir -p /etc/dovecot && cat > {CONF}", input=DOVECOT_CONF)
    c.run("/usr/sbin/dovecot", "-c", CONF, "-n")   # the config parses
    log = open(os.path.join(c.dir, "dovecot.out"), "w")
    dovecot = subprocess.Popen(c.nsenter(["/usr/sbin/dovecot", "-F", "-c", CONF]),
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=INNER_ENV)
    c.daemons.append(dovecot)
    c.logs.append(("dovecot log", lambda: dovecot_log(c)))
    deadline = time.time() + 15
    while time.time() < deadline:
        r = c.run("python3", "-c", "import socket; socket.create_connection("
                  f"('127.0.0.1', {IMAP_PORT}), 1).recv(100)", check=False)
        if r.returncode == 0:
            return
        if dovecot.poll() is not None:
            break
        time.sleep(0.1)
    raise TestFailure(f"dovecot did not start:\n{dovecot_log(c)}")


def dovecot_log(c):
    r = c.run("cat", LOG, check=False)
    out = os.path.join(c.dir, "dovecot.out")
    early = open(out, errors="replace").read() if os.path.exists(out) else ""
    return early + r.stdout + r.stderr


def imap_login(c, user, password):
    """Logs in over IMAP from a new loopback address; (whether the server said OK and INBOX
    could be selected, the client's address: PAM_RHOST of this login)."""
    with LOGINS_LOCK:
        c.imap_logins = getattr(c, "imap_logins", 0) + 1
        source = f"127.0.0.{10 + c.imap_logins}"
    r = c.run("python3", "-c", CLIENT, user, str(IMAP_PORT), source, input=password,
              check=False)
    c.transcripts.append(f"$ imap login {user} from {source} (exit status {r.returncode})\n"
                         f"{r.stdout}{r.stderr}")
    return r.returncode == 0 and "IMAP-OK" in r.stdout, source


def imap_ready(c, recovery=()):
    """Dovecot with the SPEC §9 stack and alice enrolled: (her password, her secret)."""
    start_dovecot(c)
    # Ends in a digit, as many passwords do, but not in six (see the unenrolled case).
    pw = c.add_user("alice", password=f"pw-{secrets.token_hex(4)}-hunter2")
    return pw, c.enrol("alice", recovery=recovery)


def state(c, user):
    """The fields of the user's last state journal line ({} without a state file)."""
    lines = c.state_text(user).strip().splitlines()
    if len(lines) < 2:
        return {}
    return dict(f.split("=", 1) for f in lines[-1].split() if "=" in f)


def decision(c, mark, user, rhost, reason):
    """The module's syslog line for USER's login from RHOST with REASON (a regex), or a failure
    naming every module line seen."""
    line = c.syslog.wait_for(rf"pam_totp\(dovecot:auth\): user={user} rhost={re.escape(rhost)} "
                             rf"{reason}", mark)
    check(line, f"no pam_totp line 'user={user} rhost={rhost} {reason}' in "
                f"{c.syslog.module_lines(mark)}")
    return line


def module_lines_from(c, mark, rhost):
    return [ln for ln in c.syslog.module_lines(mark) if f"rhost={rhost} " in ln]


def assert_nothing_logged(c, mark, *texts):
    """Neither syslog nor Dovecot's log shows a password, code or secret."""
    blob = "\n".join(c.syslog.since(mark)) + "\n" + dovecot_log(c)
    for t in texts:
        check(t not in blob, f"a secret ({t[:3]}...) appears in syslog or Dovecot's log")


def recovery_code():
    """A recovery code whose undashed form does not end in six digits (that would be read as
    password + TOTP code)."""
    while True:
        code = new_recovery_code()
        if not code.replace("-", "")[-6:].isdigit():
            return code


@scenario("imap_password_plus_code_logs_in_and_a_replay_is_refused")
def _(c):
    pw, secret = imap_ready(c)
    code = totp(secret)
    mark = c.syslog.mark()
    ok, rhost = imap_login(c, "alice", pw + code)
    check(ok, "password + code was refused over IMAP")
    decision(c, mark, "alice", rhost, r"accepted step \d+")
    step = state(c, "alice").get("s")
    ok, rhost = imap_login(c, "alice", pw + code)
    check(not ok, "the same password + code let alice in a second time")
    decision(c, mark, "alice", rhost, "replayed code")
    st = state(c, "alice")
    check(st.get("s") == step and st.get("f") == "0",
          f"a replay must not move the step or count a failure: {st} (step was {step})")
    assert_nothing_logged(c, mark, secret, pw, pw + code)


@scenario("imap_wrong_password_with_a_valid_code_keeps_the_code_for_the_right_password")
def _(c):
    pw, secret = imap_ready(c)
    next_step()
    code = totp(secret, offset_steps=1)   # inside the window for over a minute (the loop ~20 s)
    mark = c.syslog.mark()
    # More wrong passwords than the throttle's 5 attempts, with the valid code and then with a
    # wrong one: none of them may be checked, consume the code or count.
    for i, typed in enumerate([code] * 5 + [wrong_code(secret)]):
        ok, rhost = imap_login(c, "alice", f"not-{pw}" + typed)
        check(not ok, f"wrong password {i + 1} + code let alice in")
        check(c.syslog.wait_for(rf"pam_unix\(dovecot:auth\).*rhost={re.escape(rhost)} ", mark),
              f"pam_unix did not refuse the password from {rhost}")
        lines = module_lines_from(c, mark, rhost)
        check(not any(w in ln for ln in lines for w in ("accepted", "wrong code", "replayed",
                                                        "locked")),
              f"the code was checked after a wrong password: {lines}")
    check(state(c, "alice").get("f", "0") == "0" and state(c, "alice").get("s", "-") == "-",
          f"a wrong password consumed the code or counted a failure: {state(c, 'alice')}")
    ok, rhost = imap_login(c, "alice", pw + code)
    check(ok, "the code was no longer accepted with the right password")
    decision(c, mark, "alice", rhost, r"accepted step \d+")
    assert_nothing_logged(c, mark, secret, pw, pw + code)


@scenario("imap_right_password_with_a_wrong_code_is_refused_and_counts_a_failure")
def _(c):
    pw, secret = imap_ready(c)
    mark = c.syslog.mark()
    ok, rhost = imap_login(c, "alice", pw + wrong_code(secret))
    check(not ok, "a wrong code let alice in")
    decision(c, mark, "alice", rhost, r"wrong code \(failure 1\)")
    check(state(c, "alice").get("f") == "1", f"failure not counted: {state(c, 'alice')}")


@scenario("imap_password_alone_is_refused_for_an_enrolled_user")
def _(c):
    pw, secret = imap_ready(c)
    mark = c.syslog.mark()
    ok, rhost = imap_login(c, "alice", pw)
    check(not ok, "the password alone let an enrolled user in")
    lines = module_lines_from(c, mark, rhost)
    check(lines and "user=alice" in lines[-1] and "accepted" not in lines[-1],
          f"no pam_totp line refusing alice's password alone from {rhost}: "
          f"{c.syslog.module_lines(mark)}")
    ok, rhost = imap_login(c, "alice", pw + totp(secret))
    check(ok, "password + code refused after a login with the password alone")
    decision(c, mark, "alice", rhost, r"accepted step \d+")
    assert_nothing_logged(c, mark, secret, pw)


@scenario("imap_code_after_a_password_whose_tail_looks_like_a_recovery_code_is_read_as_the_code")
def _(c):
    start_dovecot(c)
    # "...hunter" + a code of the digits 2-9: the last 12 characters are also in the recovery
    # code alphabet; the last six digits must win.
    pw = c.add_user("alice", password=f"pw-{secrets.token_hex(4)}-hunter")
    while True:
        secret = new_secret()
        code = totp(secret)
        if set(code) <= set("23456789"):
            break
    c.write_record("alice", secret)
    mark = c.syslog.mark()
    ok, rhost = imap_login(c, "alice", pw + code)
    check(ok, "password + code whose last 12 characters look like a recovery code refused")
    decision(c, mark, "alice", rhost, r"accepted step \d+")


@scenario("imap_unenrolled_user_password_passes_through_whole")
def _(c):
    start_dovecot(c)
    c.add_user("alice")
    c.enrol("alice")
    # Ends in six digits: `split` must not cut them off for a user without a record.
    pw = c.add_user("bob", password=f"pw-{secrets.token_hex(4)}-492039")
    mark = c.syslog.mark()
    ok, rhost = imap_login(c, "bob", pw)
    check(ok, "an unenrolled user's password was refused")
    decision(c, mark, "bob", rhost, "not enrolled, not required")
    check(not c.syslog.wait_for(r"pam_unix\(dovecot:auth\).*authentication failure", mark,
                                timeout=0.3),
          "pam_unix refused the whole password of an unenrolled user")
    ok, rhost = imap_login(c, "bob", pw[:-6])
    check(not ok, "bob got in with his password minus its last six characters")
    assert_nothing_logged(c, mark, pw)


@scenario("imap_recovery_code_appended_works_once")
def _(c):
    first, second = recovery_code(), recovery_code()
    pw, _ = imap_ready(c, recovery=[recovery_hash(first), recovery_hash(second)])
    mark = c.syslog.mark()
    # The 14-character form with dashes.
    ok, rhost = imap_login(c, "alice", pw + first)
    check(ok, "password + recovery code (with dashes) was refused")
    decision(c, mark, "alice", rhost, r"accepted recovery code \(1 left\)")
    ok, rhost = imap_login(c, "alice", pw + first)
    check(not ok, "a burned recovery code let alice in again")
    # The 12-character form without dashes, upper case.
    typed = second.replace("-", "").upper()
    ok, rhost = imap_login(c, "alice", pw + typed)
    check(ok, "password + recovery code (without dashes) was refused")
    decision(c, mark, "alice", rhost, r"accepted recovery code \(0 left\)")
    ok, rhost = imap_login(c, "alice", pw + typed)
    check(not ok, "a burned recovery code (without dashes) let alice in again")
    record = c.read(f"{STATE_DIR}/users/alice.toml")
    check("sha256:" not in record, f"the used codes were not burned:\n{record}")
    assert_nothing_logged(c, mark, pw, first, typed, first.replace("-", ""))


@scenario("imap_parallel_logins_with_the_same_password_plus_code_let_exactly_one_in")
def _(c):
    pw, secret = imap_ready(c)
    answer = pw + totp(secret)
    n = 4
    results = [None] * n

    def login(i):
        results[i] = imap_login(c, "alice", answer)

    threads = [threading.Thread(target=login, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = sum(ok for ok, _ in results)
    check(winners == 1, f"{winners} of {n} parallel IMAP logins with one code got in")
    lines = c.syslog.module_lines(0)
    check(sum("accepted step" in ln for ln in lines) == 1 and
          sum("replayed code" in ln for ln in lines) == n - 1,
          f"expected 1 accepted and {n - 1} replayed, got {lines}")


@scenario("imap_without_split_an_enrolled_user_cannot_log_in_with_one_password_field")
def _(c):
    """Why `split` exists: without it Dovecot answers the code prompt with the password."""
    start_dovecot(c, "auth  requisite  pam_unix.so\n"
                     f"auth  required   {MODULE} {ARGS}\n"
                     "account  required  pam_unix.so\n")
    pw = c.add_user("alice", password=f"pw-{secrets.token_hex(4)}-hunter2")
    secret = c.enrol("alice")
    mark = c.syslog.mark()
    ok, rhost = imap_login(c, "alice", pw)
    check(not ok, "the password alone let an enrolled user in")
    decision(c, mark, "alice", rhost, "wrong code")
    ok, rhost = imap_login(c, "alice", pw + totp(secret))
    check(not ok, "password + code let alice in without split")
    check(c.syslog.wait_for(rf"pam_unix\(dovecot:auth\).*rhost={re.escape(rhost)} ", mark),
          "pam_unix did not refuse password + code as the password")
    assert_nothing_logged(c, mark, secret, pw)
