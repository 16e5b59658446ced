"""Scenarios of issue 16: real clients other than sshd's own — sudo after pam_unix (Debian's
PAM stack and default sudoers, timestamp behaviour included), PuTTY's plink and paramiko
answering sshd's keyboard-interactive prompts. The clients are the Debian packages (sudo,
putty-tools, python3-paramiko; tests/deps.sh installs them): a missing one fails its scenario.

Loaded by test_e2e.py (which it imports for its helpers and scenario registry)."""

import json
import re

from test_e2e import HOSTNAME, SSH_PORT, check, scenario, ssh_ready, totp, wrong_code

PW = r"\[sudo\] password for alice:"
CODE = "Verification code:"

# /etc/pam.d/sudo and /etc/sudoers as Debian 12's sudo package installs them (comments left
# out), so that what the scenarios establish does not depend on this host's copies.
DEBIAN_PAM_SUDO = ("#%PAM-1.0\n"
                   "session    required   pam_limits.so\n"
                   "@include common-auth\n"
                   "@include common-account\n"
                   "@include common-session-noninteractive\n")
DEBIAN_SUDOERS = ("Defaults\tenv_reset\n"
                  "Defaults\tmail_badpass\n"
                  'Defaults\tsecure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:'
                  '/sbin:/bin"\n'
                  "Defaults\tuse_pty\n"
                  "root\tALL=(ALL:ALL) ALL\n"
                  "%sudo\tALL=(ALL:ALL) ALL\n"
                  "@includedir /etc/sudoers.d\n")


def need(c, tool, package):
    if c.run("sh", "-c", f"command -v {tool}", check=False).returncode != 0:
        check(False, f"{tool} is not installed (Debian {package}; tests/deps.sh installs it)")


# -- sudo ---------------------------------------------------------------------------------------

def sudo_ready(c, sudoers_extra=""):
    """Debian's stacks (pam-totp after pam_unix in common-auth), Debian's sudo PAM file and
    sudoers, alice allowed everything by a rule in /etc/sudoers.d (0440), alice enrolled."""
    need(c, "sudo", "sudo")
    c.install_stacks()
    c.write_pam("sudo", DEBIAN_PAM_SUDO)
    c.run("sh", "-c", "cat > /etc/sudoers && chmod 0440 /etc/sudoers", input=DEBIAN_SUDOERS)
    c.run("sh", "-c", "cat > /etc/sudoers.d/e2e && chmod 0440 /etc/sudoers.d/e2e",
          input=sudoers_extra + "alice ALL=(ALL) ALL\n")
    c.run("visudo", "-c")
    # sudo looks up its own host name; without this it waits for a resolver that is not there.
    c.run("sh", "-c", f"echo '127.0.1.1 {HOSTNAME}' >> /etc/hosts")
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    return pw, secret


def as_alice(c, name, script):
    """argv that runs `script` (sh) as alice on a new terminal of her own (script(1)): one
    terminal session, as when alice types the lines at her shell."""
    path = f"/tmp/{name}.sh"
    c.run("sh", "-c", f"cat > {path} && chmod 0755 {path}", input=script)
    return ["script", "-qfec", f"exec runuser -u alice -- sh {path}", "/dev/null"]


def sudo_lines(c, mark, what):
    """sudo's own log lines (`alice : ... COMMAND=...`) since mark that contain `what`."""
    return [ln for ln in c.syslog.since(mark) if re.search(r"sudo:\s+alice : ", ln) and what in ln]


def expect_first(child, wanted, what):
    """Waits for `wanted`; fails if a sudo prompt, the end or a timeout comes first."""
    import pexpect
    got = ["", "the password prompt", "the code prompt", "the end", "a timeout"]
    i = child.expect([wanted, PW, CODE, pexpect.EOF, pexpect.TIMEOUT])
    check(i == 0, f"{what}: expected {wanted!r}, got {got[i]}")


@scenario("sudo_asks_password_then_code_and_runs_the_command")
def _(c):
    pw, secret = sudo_ready(c)
    mark = c.syslog.mark()
    s = c.converse(as_alice(c, "id", "exec sudo -k sh -c 'echo SUDO-OK-$(id -un)'\n"),
                   [(PW, pw), (CODE, totp(secret))])
    check(s.prompts == [PW, CODE], f"prompts: {s}")
    check(s.ran("SUDO-OK-root") and s.status == 0, f"sudo did not run the command: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sudo:auth\).*user=alice .*accepted step", mark),
          "no 'accepted step' line for sudo")
    check(sudo_lines(c, mark, "COMMAND=/usr/bin/sh -c"), "sudo did not log the command")


@scenario("sudo_wrong_code_is_refused")
def _(c):
    """Debian's sudo allows 3 tries (passwd_tries): a wrong code is "Sorry, try again." and
    password and code are asked again; three wrong codes end it without running anything."""
    pw, secret = sudo_ready(c)
    mark = c.syslog.mark()
    argv = as_alice(c, "wrong", "sudo -k\nsudo sh -c 'echo SUDO-OK-$(id -un)'\necho rc=$?\n"
                                "sudo -n true 2>/dev/null || echo NO-TIMESTAMP\n")
    bad = c.converse(argv, [(PW, pw), (CODE, wrong_code(secret))] * 3)
    check(bad.prompts == [PW, CODE] * 3, f"prompts: {bad}")
    check(bad.transcript.count("Sorry, try again.") == 2 and
          "3 incorrect password attempts" in bad.transcript, f"sudo's refusal: {bad}")
    check(not bad.ran("SUDO-OK-root") and "rc=1" in bad.transcript, f"the command ran: {bad}")
    check(bad.ran("NO-TIMESTAMP"), f"a refused sudo left a timestamp: {bad}")
    for n in (1, 2, 3):
        check(c.syslog.wait_for(rf"pam_totp\(sudo:auth\).*user=alice .*wrong code "
                                rf"\(failure {n}\)", mark), f"no 'wrong code (failure {n})' line")
    check(sudo_lines(c, mark, "3 incorrect password attempts"), "sudo did not log the refusal")
    check(not any("accepted" in ln for ln in c.syslog.module_lines(mark)), "a code was accepted")
    # A wrong code, then the right one at the second try: the command runs.
    mark = c.syslog.mark()
    s = c.converse(as_alice(c, "retry", "exec sudo -k sh -c 'echo SUDO-OK-$(id -un)'\n"),
                   [(PW, pw), (CODE, wrong_code(secret)), (PW, pw), (CODE, totp(secret))])
    check(s.prompts == [PW, CODE, PW, CODE] and "Sorry, try again." in s.transcript,
          f"prompts: {s}")
    check(s.ran("SUDO-OK-root") and s.status == 0, f"the second try did not run it: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sudo:auth\).*user=alice .*accepted step", mark),
          "no 'accepted step' line after the retry")


@scenario("sudo_wrong_password_is_refused_before_the_code_prompt")
def _(c):
    pw, secret = sudo_ready(c)
    mark = c.syslog.mark()
    s = c.converse(as_alice(c, "wrongpw", "exec sudo -k sh -c 'echo SUDO-OK-$(id -un)'\n"),
                   [(PW, "not-" + pw), (CODE, totp(secret))] * 3)
    check(s.prompts == [PW] * 3 and "3 incorrect password attempts" in s.transcript,
          f"the code prompt appeared after a wrong password: {s}")
    check(not s.ran("SUDO-OK-root"), f"the command ran: {s}")
    check(c.syslog.module_lines(mark) == [], "pam_totp ran after a failed password")


@scenario("sudo_timestamp_skips_pam_until_sudo_k")
def _(c):
    """Debian's default sudoers: after a successful sudo, the next sudo in the same terminal
    within 15 minutes runs PAM not at all (no password, no code, no pam_totp line); another
    terminal asks again (timestamp_type=tty); `sudo -k` drops the timestamp."""
    import pexpect
    pw, secret = sudo_ready(c)
    info = c.run("sudo", "-V").stdout
    check("Authentication timestamp timeout: 15.0 minutes" in info and
          "Type of authentication timestamp record: tty" in info,
          f"not Debian's sudo defaults:\n{info}")
    child = c.spawn(as_alice(c, "ts", (
        "sudo -k\n"
        "sudo sh -c 'echo FIRST-$(id -un)'\n"
        "echo STEP-2; read _\n"
        "sudo -n true && echo NO-PASSWORD-NEEDED\n"
        "sudo sh -c 'echo SECOND-$(id -un)'\n"
        "echo STEP-3; read _\n"
        "sudo -k\n"
        "sudo -n true 2>/dev/null || echo PASSWORD-NEEDED\n"
        "sudo sh -c 'echo THIRD-$(id -un)'\n"
        "echo DONE\n")))
    try:
        mark = c.syslog.mark()
        child.expect(PW)
        child.sendline(pw)
        child.expect(CODE)
        child.sendline(totp(secret))
        expect_first(child, "FIRST-root", "first sudo")
        expect_first(child, "STEP-2", "first sudo")
        check(c.syslog.wait_for(r"pam_totp\(sudo:auth\).*user=alice .*accepted step", mark),
              "no 'accepted step' line for the first sudo")

        # The same terminal, within timestamp_timeout: no prompt, PAM not run.
        mark = c.syslog.mark()
        child.sendline("")
        expect_first(child, "NO-PASSWORD-NEEDED", "sudo -n in the same terminal")
        expect_first(child, "SECOND-root", "second sudo in the same terminal")
        expect_first(child, "STEP-3", "second sudo")
        check(c.syslog.wait_for(r"sudo:\s+alice : .*COMMAND=.*SECOND", mark),
              "sudo did not log the second command")
        check(c.syslog.module_lines(mark) == [],
              f"pam_totp ran for a sudo under a valid timestamp: {c.syslog.module_lines(mark)}")

        # Another terminal of alice's: the timestamp is per terminal, so sudo asks again.
        other = c.spawn(as_alice(c, "other", "exec sudo true\n"))
        try:
            i = other.expect([PW, pexpect.EOF, pexpect.TIMEOUT])
            c.transcripts.append("--- another terminal ---\n" + other.logfile_read.getvalue())
            check(i == 0, "another terminal did not ask for the password")
        finally:
            other.sendcontrol("c")
            other.close(force=True)

        # sudo -k: the next sudo in this terminal asks for password and code again.
        mark = c.syslog.mark()
        child.sendline("")
        expect_first(child, "PASSWORD-NEEDED", "sudo -n after sudo -k")
        child.expect(PW)
        child.sendline(pw)
        child.expect(CODE)
        child.sendline(totp(secret, offset_steps=1))   # the current step is spent
        expect_first(child, "THIRD-root", "sudo after sudo -k")
        child.expect("DONE")
        check(c.syslog.wait_for(r"pam_totp\(sudo:auth\).*user=alice .*accepted step", mark),
              "no 'accepted step' line after sudo -k")
    finally:
        c.transcripts.append("--- alice's terminal ---\n" + child.logfile_read.getvalue())
        child.close(force=True)


@scenario("sudo_timestamp_timeout_0_asks_password_and_code_every_time")
def _(c):
    pw, secret = sudo_ready(c, sudoers_extra="Defaults timestamp_timeout=0\n")
    mark = c.syslog.mark()
    argv = as_alice(c, "t0", "sudo -k\n"
                             "sudo sh -c 'echo FIRST-$(id -un)'\n"
                             "sudo -n true 2>/dev/null || echo PASSWORD-NEEDED\n"
                             "sudo sh -c 'echo SECOND-$(id -un)'\n")
    s = c.converse(argv, [(PW, pw), (CODE, totp(secret)),
                          (PW, pw), (CODE, totp(secret, offset_steps=1))])
    check(s.prompts == [PW, CODE, PW, CODE], f"prompts: {s}")
    check(s.ran("FIRST-root") and s.ran("PASSWORD-NEEDED") and s.ran("SECOND-root"),
          f"transcript: {s}")
    lines = c.syslog.module_lines(mark)
    check(sum("accepted step" in ln for ln in lines) == 2, f"expected two accepted codes: {lines}")


# -- PuTTY's plink ------------------------------------------------------------------------------

def host_key_fingerprint(c):
    out = c.run("ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub").stdout
    return out.split()[1]    # SHA256:...


def plink(c, answers, command="echo PLINK-OK-$USER"):
    """plink on a terminal with the server's host key given (-hostkey: no trust prompt) and
    HOME in the container's /tmp (PuTTY's ~/.putty never reaches the host)."""
    c.run("install", "-d", "-m", "0700", "/tmp/plink-home")
    argv = ["env", "HOME=/tmp/plink-home", "plink", "-ssh", "-P", str(SSH_PORT), "-l", "alice",
            "-hostkey", host_key_fingerprint(c), "-noagent", "-no-antispoof", "127.0.0.1",
            command]
    # A trust prompt would mean -hostkey was not taken: answered "n", it ends the session.
    return c.converse(argv, answers + [("Store key in cache", "n")])


@scenario("plink_keyboard_interactive_password_and_code_log_in")
def _(c):
    need(c, "plink", "putty-tools")
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    # A wrong code: denied; PuTTY starts keyboard-interactive over (not answered here).
    mark = c.syslog.mark()
    bad = plink(c, [("Password:", pw), (CODE, wrong_code(secret))])
    check(bad.prompts == ["Password:", CODE, "Password:"] and "Access denied" in bad.transcript,
          f"plink with a wrong code: {bad}")
    check(not bad.ran("PLINK-OK-alice"), f"a wrong code let plink in: {bad}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice rhost=127\.0\.0\.1 wrong code",
                            mark), "no 'wrong code' line for plink")
    # Password and the current code.
    mark = c.syslog.mark()
    s = plink(c, [("Password:", pw), (CODE, totp(secret))])
    check(s.prompts == ["Password:", CODE], f"prompts: {s}")
    check("Keyboard-interactive authentication prompts from server" in s.transcript,
          f"plink did not use keyboard-interactive: {s}")
    check(s.ran("PLINK-OK-alice") and s.status == 0, f"the remote command did not run: {s}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice rhost=127\.0\.0\.1 accepted "
                            r"step", mark), "no 'accepted step' line for plink")
    check("Accepted keyboard-interactive/pam for alice" in c.sshd_log(),
          "sshd did not log a keyboard-interactive login")


# -- paramiko -----------------------------------------------------------------------------------

# Runs inside the container (its network namespace) under Debian's python3. Reads
# {user, password, code, host_key} as JSON on stdin; prints one JSON document.
PARAMIKO_CLIENT = r'''
import json, socket, sys
try:
    import paramiko
except ImportError:
    sys.exit("python3-paramiko is not installed (tests/deps.sh installs it)")
args = json.load(sys.stdin)
prompts = []

def answer(title, instructions, asked):
    replies = []
    for text, echo in asked:
        prompts.append([text, echo])
        if text.startswith("Password"):
            replies.append(args["password"])
        elif text.startswith("Verification code"):
            replies.append(args["code"])
        else:
            replies.append("")
    return replies

sock = socket.create_connection(("127.0.0.1", args["port"]), timeout=10)
t = paramiko.Transport(sock)
t.start_client(timeout=10)
key = t.get_remote_server_key()
if key.get_name() + " " + key.get_base64() != args["host_key"]:
    sys.exit("unexpected host key " + key.get_base64())
out = {"prompts": prompts, "auth": None, "output": None, "status": None}
try:
    out["left"] = t.auth_interactive(args["user"], answer)
    out["auth"] = "ok"
    ch = t.open_session()
    ch.exec_command("echo PARAMIKO-OK-$USER")
    data = b""
    while True:
        d = ch.recv(4096)
        if not d:
            break
        data += d
    out["output"] = data.decode()
    out["status"] = ch.recv_exit_status()
    ch.close()
except paramiko.AuthenticationException as e:
    out["auth"] = "denied: %s" % e
t.close()
print(json.dumps(out))
'''


def paramiko_login(c, pw, code):
    host_key = " ".join(c.run("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2])
    args = {"user": "alice", "password": pw, "code": code, "host_key": host_key,
            "port": SSH_PORT}
    r = c.run("/usr/bin/python3", "-c", PARAMIKO_CLIENT, input=json.dumps(args))
    c.transcripts.append(f"$ paramiko auth_interactive alice\n{r.stdout}{r.stderr}")
    return json.loads(r.stdout)


@scenario("paramiko_auth_interactive_logs_in_and_a_replay_is_refused")
def _(c):
    ssh_ready(c)
    pw = c.add_user("alice")
    secret = c.enrol("alice")
    code = totp(secret)
    asked = [["Password: ", False], ["Verification code: ", False]]
    mark = c.syslog.mark()
    first = paramiko_login(c, pw, code)
    check(first["prompts"] == asked, f"prompts (text, echo): {first['prompts']}")
    check(first["auth"] == "ok" and first["output"] == "PARAMIKO-OK-alice\n" and
          first["status"] == 0, f"paramiko login: {first}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice rhost=127\.0\.0\.1 accepted "
                            r"step", mark), "no 'accepted step' line for paramiko")
    # The same code again: asked for, then refused as a replay.
    mark = c.syslog.mark()
    again = paramiko_login(c, pw, code)
    check(again["prompts"] == asked, f"prompts (text, echo): {again['prompts']}")
    check(again["auth"].startswith("denied") and again["output"] is None,
          f"a replayed code let paramiko in: {again}")
    check(c.syslog.wait_for(r"pam_totp\(sshd:auth\).*user=alice rhost=127\.0\.0\.1 replayed "
                            r"code", mark), "no 'replayed code' line for paramiko")
