"""The machinery of the end-to-end tests (tests/e2e/test_e2e.py): constants, codes and
recovery hashes computed independently of our crate, the syslog socket, the throwaway
container (Container) and the helpers scenarios share (ssh_ready, assert_no_secrets).

test_e2e.py re-exports every name defined here, so scenario modules keep importing them
from test_e2e."""

import base64
import datetime
import hashlib
import io
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

pexpect = None  # set by test_e2e.main() (or demo.py) once imported: a missing module is reported


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


def next_step(margin=8):
    """Waits into the next 30 s step when less than `margin` seconds are left of this one: a
    code computed now is then still judged in the step it was computed for (a code of the
    previous step, a phone behind, would otherwise be two steps old when it arrives), and it is
    not from a step a proof just used."""
    left = 30 - time.time() % 30
    if left < margin:
        time.sleep(left + 0.5)


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
# Helpers shared by the scenarios


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
