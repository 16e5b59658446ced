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

import base64
import datetime
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CONTAINER_SH = os.path.join(HERE, "container.sh")
SO = os.environ.get("PAM_TOTP_SO") or os.path.join(REPO, "target", "release", "libpam_totp.so")
CLI = os.environ.get("PAM_TOTP_CLI") or os.path.join(REPO, "target", "release", "pam-totp")
SELF = os.environ.get("PAM_TOTP_SELF") or os.path.join(os.path.dirname(CLI), "pam-totp-self")

# Paths inside the container (see container.sh).
MODULE = "/usr/local/lib/security/pam_totp.so"
STATE_DIR = "/var/lib/pam-totp"
POLICY = "/etc/pam-totp/policy.toml"
SSH_PORT = 2222
HOSTNAME = "pam-totp-e2e"

INNER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM": "dumb",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "SHELL": "/bin/bash",
}

RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"

pexpect = None  # imported in main() so that a missing module is reported as such


class TestFailure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


# ---------------------------------------------------------------------------------------------
# Helpers that do not need a container


def new_secret(nbytes=20):
    return base64.b32encode(os.urandom(nbytes)).decode().rstrip("=")


def totp(secret, at=None, offset_steps=0, period=30, digits=6, algorithm="SHA1"):
    """The code for `at` (default now) + offset_steps periods, computed by oathtool."""
    t = int(time.time() if at is None else at) + offset_steps * period
    args = ["oathtool", "--totp" if algorithm == "SHA1" else f"--totp={algorithm.lower()}",
            "-b", f"--time-step-size={period}s", f"--digits={digits}", f"--now=@{t}", secret]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def wrong_code(secret):
    """A 6-digit code that is not valid for any step in a generous window around now."""
    valid = {totp(secret, offset_steps=k) for k in range(-3, 4)}
    while True:
        c = f"{secrets.randbelow(10**6):06d}"
        if c not in valid:
            return c


def new_recovery_code():
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(12))
    return f"{raw[0:4]}-{raw[4:8]}-{raw[8:12]}"


def recovery_hash(code):
    """SPEC §4: sha256:<salt-hex>:<hex of SHA-256(salt bytes ‖ normalised code)>."""
    salt = os.urandom(16)
    norm = code.lower().replace("-", "").replace(" ", "")
    return f"sha256:{salt.hex()}:{hashlib.sha256(salt + norm.encode()).hexdigest()}"


def utc(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


def rfc3339(ts):
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def host_fingerprint():
    """What the suite must leave untouched on the host."""
    out = {}
    files = ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/nsswitch.conf",
             "/etc/hostname", "/etc/login.defs"]
    for d in ["/etc/pam.d", "/etc/ssh", "/etc/ssh/sshd_config.d"]:
        if os.path.isdir(d):
            files += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    for f in files:
        if os.path.isfile(f):
            with open(f, "rb") as fh:
                out[f] = hashlib.sha256(fh.read()).hexdigest()
    # Paths that something in a container could create if it were not isolated.
    for p in ["/etc/pam-totp", "/var/lib/pam-totp", "/usr/local/lib/security",
              "/usr/local/sbin/pam-totp", "/root/.ssh", "/etc/.pwd.lock", "/etc/passwd+",
              "/etc/passwd.lock", "/etc/shadow+", "/etc/shadow.lock", "/etc/group.lock",
              "/etc/gshadow.lock", "/run/sshd.pid", "/home/alice", "/home/bob",
              "/usr/libexec/pam-totp", "/etc/pam.d/pam-totp"]:
        out[p + " exists"] = os.path.lexists(p)
    return out


# ---------------------------------------------------------------------------------------------
# Syslog: the container's /dev/log is bound to this socket.


class Syslog:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.settimeout(0.05)
        self.lines = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            text = data.decode("utf-8", "replace").rstrip("\n\0")
            with self.lock:
                self.lines.append(text)

    def mark(self):
        time.sleep(0.05)
        with self.lock:
            return len(self.lines)

    def since(self, mark=0, settle=0.25):
        time.sleep(settle)
        with self.lock:
            return list(self.lines[mark:])

    def module_lines(self, mark=0, settle=0.25):
        return [ln for ln in self.since(mark, settle) if "pam_totp(" in ln]

    def wait_for(self, regex, mark=0, timeout=3.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for ln in self.lines[mark:]:
                    if re.search(regex, ln):
                        return ln
            time.sleep(0.05)
        return None

    def close(self):
        self.stopping = True
        self.thread.join(timeout=1)
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# The container


class Session:
    """The outcome of one interactive login attempt."""

    def __init__(self, transcript, status, prompts, unanswered):
        self.transcript = transcript
        self.status = status
        self.prompts = prompts          # prompt labels in the order they appeared
        self.unanswered = unanswered    # a prompt we had no answer for, or None

    def ran(self, marker):
        return marker in self.transcript

    def __str__(self):
        return (f"exit status {self.status}, prompts {self.prompts}, unanswered "
                f"{self.unanswered}\n--- transcript ---\n{self.transcript}\n--- end ---")


class Tee(io.StringIO):
    """Keeps what a session shows and mirrors it to a stream (the demo)."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def write(self, s):
        self.stream.write(s)
        self.stream.flush()
        return super().write(s)


class Container:
    echo = False   # mirror sessions to stdout (the demo)

    def __init__(self, keep=False):
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="pam-totp-e2e.")
        self.syslog = Syslog(os.path.join(self.dir, "log.sock"))
        # container.sh wants an empty DIR: the socket lives next to it.
        self.root = os.path.join(self.dir, "c")
        os.mkdir(self.root, 0o700)
        env = dict(os.environ, SYSLOG_SOCKET=self.syslog.path, PAM_TOTP_SO=SO)
        if os.path.isfile(CLI):
            env["PAM_TOTP_CLI"] = CLI
        else:
            env.pop("PAM_TOTP_CLI", None)
        if os.path.isfile(SELF):
            env["PAM_TOTP_SELF"] = SELF
        else:
            env.pop("PAM_TOTP_SELF", None)
        r = subprocess.run([CONTAINER_SH, "start", self.root], env=env, capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            self.syslog.close()
            raise TestFailure(f"container.sh start failed ({r.returncode}):\n{r.stderr}")
        self.pid = int(r.stdout.strip())
        self.sshd = None
        self.daemons = []       # other daemons started by scenarios (Popen of their nsenter)
        self.logs = []          # (title, function returning the text), shown when a test fails
        self.uid_next = 2001
        self.users = {}
        self.transcripts = []   # every session, shown when a test fails

    # -- running things inside ----------------------------------------------------------------
    def nsenter(self, argv):
        return ["nsenter", f"--target={self.pid}", "--mount", "--uts", "--net", "--pid",
                "--wd=/", "--"] + list(argv)

    def run(self, *argv, input=None, check=True, timeout=30):
        r = subprocess.run(self.nsenter(argv), input=input, capture_output=True, text=True,
                           env=INNER_ENV, timeout=timeout)
        if check and r.returncode != 0:
            raise TestFailure(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    def spawn(self, argv, timeout=20):
        child = pexpect.spawn(self.nsenter(argv)[0], self.nsenter(argv)[1:], env=INNER_ENV,
                              timeout=timeout, encoding="utf-8", codec_errors="replace",
                              dimensions=(50, 200))
        child.logfile_read = Tee(sys.stdout) if self.echo else io.StringIO()
        return child

    def host_path(self, inner):
        """The host path of a file in one of the bind-mounted private copies."""
        for prefix, rel in (("/etc/pam-totp", "policy"), (STATE_DIR, "state"),
                            ("/etc/pam.d", "etc/pam.d"), ("/etc/ssh", "etc/ssh")):
            if inner == prefix or inner.startswith(prefix + "/"):
                return os.path.join(self.root, rel) + inner[len(prefix):]
        if inner in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"):
            return os.path.join(self.root, "etc", os.path.basename(inner))
        raise ValueError(f"{inner} is not a private copy")

    def write(self, inner, text, mode=0o644, uid=0, gid=0):
        """Writes a file of a private copy in place (keeps the inode of bind-mounted files)."""
        path = self.host_path(inner)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chown(path, uid, gid)
        os.chmod(path, mode)

    def write_in_place(self, inner, text):
        """Rewrites a file of a private copy keeping its inode, owner and mode."""
        with open(self.host_path(inner), "r+") as f:
            f.write(text)
            f.truncate()

    def append(self, inner, text):
        with open(self.host_path(inner), "a") as f:
            f.write(text)

    def read(self, inner):
        with open(self.host_path(inner)) as f:
            return f.read()

    # -- users, records, policy, PAM stacks ------------------------------------------------------
    def add_user(self, name, password=None, shell="/bin/bash"):
        """Adds a user to the private passwd/shadow/group copies and makes a home on /home."""
        password = password or f"pw-{name}-{secrets.token_hex(4)}"
        # The copies start as the host's files: drop a same-named entry, avoid its IDs.
        taken = set()
        for f in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"):
            lines = self.read(f).splitlines(keepends=True)
            kept = [ln for ln in lines if not ln.startswith(name + ":")]
            if len(kept) != len(lines):
                self.write_in_place(f, "".join(kept))
            if f in ("/etc/passwd", "/etc/group"):
                taken |= {ln.split(":")[2] for ln in kept if ln.count(":") >= 3}
        while str(self.uid_next) in taken:
            self.uid_next += 1
        uid = self.uid_next
        self.uid_next += 1
        salt = secrets.token_hex(8)
        hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                                input=password, capture_output=True, text=True,
                                check=True).stdout.strip()
        days = int(time.time() // 86400)
        self.append("/etc/passwd", f"{name}:x:{uid}:{uid}:e2e {name}:/home/{name}:{shell}\n")
        self.append("/etc/shadow", f"{name}:{hashed}:{days}:0:99999:7:::\n")
        self.append("/etc/group", f"{name}:x:{uid}:\n")
        self.append("/etc/gshadow", f"{name}:!::\n")
        self.run("install", "-d", "-o", name, "-g", name, "-m", "0755", f"/home/{name}")
        self.users[name] = password
        return password

    def write_record(self, user, secret, recovery=(), state="active", extra="", digits=6,
                     period=30, algorithm="SHA1"):
        rec = "\n".join(f'  "{h}",' for h in recovery)
        text = (f'version = 1\nuser = "{user}"\nstate = "{state}"\n{extra}'
                f'secret = "{secret}"\nalgorithm = "{algorithm}"\ndigits = {digits}\n'
                f'period = {period}\nissuer = "e2e"\ncreated = {rfc3339(time.time())}\n'
                f"recovery = [\n{rec}\n]\n")
        self.write(f"{STATE_DIR}/users/{user}.toml", text, mode=0o600)

    def enrol(self, user, recovery=()):
        """An active record with a fresh secret, written as an admin's provisioning would."""
        secret = new_secret()
        self.write_record(user, secret, recovery=recovery)
        return secret

    def state_text(self, user):
        p = self.host_path(f"{STATE_DIR}/users/{user}.state")
        return open(p).read() if os.path.exists(p) else "(no state file)"

    def write_policy(self, text):
        self.write(POLICY, text, mode=0o644)

    def write_pam(self, service, text):
        self.write(f"/etc/pam.d/{service}", text, mode=0o644)

    def install_stacks(self, module_args=f"dir={STATE_DIR}"):
        """Debian-style stacks: common-auth as pam-auth-update writes it with pam-totp as an
        `Additional` module (after pam_permit), and sshd, login, su including it."""
        self.write_pam("common-auth", (
            "# private e2e copy: Debian's common-auth + pam-totp (Auth-Type: Additional)\n"
            "auth\t[success=1 default=ignore]\tpam_unix.so nullok nodelay\n"
            "auth\trequisite\t\t\tpam_deny.so\n"
            "auth\trequired\t\t\tpam_permit.so\n"
            f"auth\trequired\t\t\t{MODULE} {module_args}\n"))
        rest = ("account  required  pam_unix.so\n"
                "session  required  pam_unix.so\n")
        self.write_pam("sshd", "@include common-auth\n" + rest)
        self.write_pam("login", "@include common-auth\n" + rest)
        self.write_pam("su", "auth  sufficient  pam_rootok.so\n@include common-auth\n" + rest)
        self.write_pam("su-l", "auth  include  su\naccount  include  su\n"
                               "session  include  su\n")

    def install_key_and_code_sshd_stack(self, module_args=f"dir={STATE_DIR}"):
        """sshd stack for `AuthenticationMethods publickey,keyboard-interactive`: no password."""
        self.write_pam("sshd", f"auth  required  {MODULE} {module_args}\n"
                               "account  required  pam_unix.so\n"
                               "session  required  pam_unix.so\n")

    # -- sshd ------------------------------------------------------------------------------------
    def write_sshd_config(self, methods="keyboard-interactive", password_auth=False,
                          kbd_interactive=True, use_pam=True):
        self.write("/etc/ssh/sshd_config", (
            "# private e2e sshd_config\n"
            f"Port {SSH_PORT}\n"
            "ListenAddress 127.0.0.1\n"
            "HostKey /etc/ssh/ssh_host_ed25519_key\n"
            "PidFile /run/sshd.pid\n"
            f"UsePAM {'yes' if use_pam else 'no'}\n"
            f"KbdInteractiveAuthentication {'yes' if kbd_interactive else 'no'}\n"
            f"PasswordAuthentication {'yes' if password_auth else 'no'}\n"
            "PubkeyAuthentication yes\n"
            f"AuthenticationMethods {methods}\n"
            "PermitRootLogin no\n"
            "MaxAuthTries 6\n"
            "LoginGraceTime 30\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            "SyslogFacility AUTHPRIV\n"
            "LogLevel VERBOSE\n"
            "AcceptEnv LANG\n"))

    def start_sshd(self, methods="keyboard-interactive", password_auth=False):
        self.write_sshd_config(methods, password_auth)
        self.run("/usr/sbin/sshd", "-t", "-f", "/etc/ssh/sshd_config")
        log = open(os.path.join(self.dir, "sshd.log"), "w")
        self.sshd = subprocess.Popen(
            self.nsenter(["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config"]),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=INNER_ENV)
        deadline = time.time() + 10
        while time.time() < deadline:
            if "Server listening on 127.0.0.1" in self.sshd_log():
                return
            if self.sshd.poll() is not None:
                break
            time.sleep(0.02)
        raise TestFailure(f"sshd did not start:\n{self.sshd_log()}")

    def sshd_log(self):
        p = os.path.join(self.dir, "sshd.log")
        return open(p, errors="replace").read() if os.path.exists(p) else ""

    def ssh_keygen(self, user):
        """A key pair for `user` (private key in the container's /root, public one authorised)."""
        key = f"/root/{user}_ed25519"
        self.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
        self.run("install", "-d", "-o", user, "-g", user, "-m", "0700", f"/home/{user}/.ssh")
        self.run("install", "-o", user, "-g", user, "-m", "0600", f"{key}.pub",
                 f"/home/{user}/.ssh/authorized_keys")
        return key

    # -- login sessions --------------------------------------------------------------------------
    def converse(self, argv, answers, shell_command=None, timeout=20):
        """Spawns argv on a pseudo-terminal and answers prompts as they appear.

        answers: list of (label, reply); the label is also the regex of the prompt. Each reply
        is used once, in order, for its label; a callable reply gets the transcript so far. A prompt without a reply left ends the session
        (recorded as `unanswered`). With shell_command, the command is typed at the first shell
        prompt (for sessions that open an interactive shell)."""
        child = self.spawn(argv, timeout=timeout)
        labels = []
        for label, _ in answers:
            if label not in labels:
                labels.append(label)
        queues = {lb: [r for (l2, r) in answers if l2 == lb] for lb in labels}
        # Fixed end markers: a failed login re-prompting for the user name.
        patterns = [re.compile(lb) for lb in labels]
        extra = [re.compile(r"(?m)^[\w.-]+ login: ?$"), re.compile(r"\$ $"),
                 pexpect.EOF, pexpect.TIMEOUT]
        seen, unanswered, sent_command = [], None, False
        while True:
            i = child.expect(patterns + extra)
            if i < len(labels):
                lb = labels[i]
                seen.append(lb)
                if queues[lb]:
                    reply = queues[lb].pop(0)
                    if callable(reply):   # computed from what was shown so far
                        reply = reply(child.logfile_read.getvalue())
                    child.sendline(reply)
                    continue
                unanswered = lb
                break
            what = i - len(labels)
            if what == 0:       # login: asking for a user name again after a failure
                seen.append("login:")
                break
            if what == 1:       # shell prompt
                if shell_command and not sent_command:
                    child.sendline(shell_command)
                    sent_command = True
                continue
            if what == 3:
                seen.append("TIMEOUT")
            break
        if child.isalive():
            child.sendcontrol("c")
            child.close(force=True)
        else:
            child.close()
        s = Session(child.logfile_read.getvalue(), child.exitstatus, seen, unanswered)
        self.transcripts.append(f"$ {' '.join(argv)}\n{s}")
        return s

    def ssh_argv(self, user, command="echo LOGGED-IN-$USER", methods="keyboard-interactive",
                 key=None, tty=False):
        argv = ["ssh", "-F", "none", "-p", str(SSH_PORT),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", f"PreferredAuthentications={methods}",
                "-o", "NumberOfPasswordPrompts=1", "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none", "-o", "ConnectTimeout=10"]
        if key:
            argv += ["-i", key]
        if tty:
            argv.append("-tt")
        argv.append(f"{user}@127.0.0.1")
        if command:
            argv.append(command)
        return argv

    def pam_totp(self, *args, check=True):
        """Runs the admin CLI inside the container."""
        return self.run("pam-totp", *args, check=check)

    def fake_command(self, name, script):
        """Installs a script as /usr/local/bin/NAME inside (the overlay: not on the host)."""
        self.run("sh", "-c", f"cat > /usr/local/bin/{name} && chmod 0755 /usr/local/bin/{name}",
                 input=script)

    def doctor(self):
        """`pam-totp doctor`: (exit status, stdout)."""
        r = self.pam_totp("doctor", check=False)
        if "not yet implemented" in r.stderr:
            raise Skip("`pam-totp doctor` is not implemented in this build of the CLI")
        self.transcripts.append(f"$ pam-totp doctor   (exit status {r.returncode})\n"
                                f"{r.stdout}{r.stderr}")
        return r.returncode, r.stdout

    def ssh(self, user, password=None, code=None, codes=None, **kw):
        answers = []
        if password is not None:
            answers.append(("Password:", password))
        for c in ([code] if code is not None else []) + list(codes or []):
            answers.append(("Verification code:", c))
        shell_command = kw.pop("shell_command", None)
        return self.converse(self.ssh_argv(user, **kw), answers, shell_command=shell_command)

    # -- teardown --------------------------------------------------------------------------------
    def debug_dump(self):
        out = ["--- syslog ---"] + self.syslog.since(0, settle=0)
        out += ["--- sshd -e output ---", self.sshd_log().rstrip()] if self.sshd else []
        for title, read in self.logs:
            out += [f"--- {title} ---", read().rstrip()]
        out += ["--- sessions ---"] + self.transcripts
        out += [f"--- container dir: {self.dir} (kept)" if self.keep else ""]
        return "\n".join(out)

    def stop(self):
        subprocess.run([CONTAINER_SH, "stop", self.root], capture_output=True, timeout=30)
        if self.sshd:
            try:
                self.sshd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
        for p in self.daemons:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.syslog.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Scenarios

TESTS = []


def scenario(name, needs_cli=False):
    def deco(fn):
        TESTS.append((name, fn, needs_cli))
        return fn
    return deco


def ssh_ready(c, methods="keyboard-interactive", key_stack=False):
    c.install_stacks()
    if key_stack:
        c.install_key_and_code_sshd_stack()
    c.start_sshd(methods)


def assert_no_secrets(c, mark, *secret_texts):
    lines = c.syslog.since(mark) + [c.sshd_log()]
    blob = "\n".join(lines)
    for s in secret_texts:
        if not s:
            continue
        variants = {s, s.lower(), s.upper(), " ".join(s[i:i + 4] for i in range(0, len(s), 4))}
        for v in variants:
            check(v not in blob, f"a secret ({v[:3]}...) appears in syslog or sshd output")


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


# ---------------------------------------------------------------------------------------------
# Scenarios kept in files of their own register through `scenario` above.

sys.modules.setdefault("test_e2e", sys.modules[__name__])
sys.path.insert(0, HERE)
import scenarios_clients  # noqa: E402,F401
import scenarios_clock  # noqa: E402,F401
import scenarios_cockpit  # noqa: E402,F401
import scenarios_cockpit_page  # noqa: E402,F401
import scenarios_imap  # noqa: E402,F401
import scenarios_limits  # noqa: E402,F401
import scenarios_self  # noqa: E402,F401


def main(argv):
    global pexpect
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
        pexpect = px
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
