"""The machinery of the torture checks (tests/torture/torture.py runs the groups): the
environment run.sh sets, the PASS/FAIL counters, TOTP and recovery codes computed
independently of the crate under test, records, sites (a state dir, a PAM stack, logins),
the crash helpers, and the policy without throttling most groups use."""
import base64
import hashlib
import hmac
import os
import random
import re
import struct
import subprocess
import time
from pathlib import Path

WORK = Path(os.environ["TORTURE_WORK"])
SO = os.environ["TORTURE_SO"]
FAULT_SO = os.environ.get("TORTURE_FAULT_SO", "")
HARNESS = os.environ["TORTURE_HARNESS"]
CRASHKILL = os.environ["TORTURE_CRASHKILL"]
STORM = os.environ["TORTURE_STORM"]
CHECK = os.environ["TORTURE_CHECK"]
CLI = os.environ.get("TORTURE_CLI", "")
SUPP = os.environ.get("TORTURE_SUPP", "")
LOG = Path(os.environ["TORTURE_LOG"])
QUICK = os.environ.get("TORTURE_QUICK") == "1"
ONLY = set(os.environ.get("TORTURE_ONLY", "").split())
SEED = int(os.environ.get("TORTURE_SEED", str(int(time.time()))))
rng = random.Random(SEED)

PERIOD = 30
RHOST = "192.0.2.77"

passed = 0
failed = 0


def check(name, ok, why=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}: {why}", flush=True)
    return ok


def info(text):
    print(f"INFO {text}", flush=True)


# ---------------------------------------------------------------------------------------------
# TOTP, recovery codes, records — independent of the crate under test
# ---------------------------------------------------------------------------------------------


def totp(key, step, digits=6):
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 15
    code = (struct.unpack(">I", mac[off : off + 4])[0] & 0x7FFFFFFF) % 10**digits
    return f"{code:0{digits}d}"


assert totp(b"12345678901234567890", 1, 8) == "94287082"  # RFC 6238 appendix B


def b32(key):
    return base64.b32encode(key).decode().rstrip("=")


def now_step():
    return int(time.time()) // PERIOD


def wait_step_margin(margin=6):
    """Sleeps into the next step if fewer than `margin` seconds remain in this one."""
    left = PERIOD - time.time() % PERIOD
    if left < margin:
        time.sleep(left + 0.3)


def fresh_step(last):
    """The oldest step within +-1 of now that is newer than `last` (None if there is none)."""
    t = time.time()
    cur = int(t) // PERIOD
    cands = ([cur - 1] if t % PERIOD < 24 else []) + [cur, cur + 1]
    for s in cands:
        if s > last:
            return s
    return None


def wrong_code(key):
    bad = {totp(key, now_step() + d) for d in range(-3, 4)}
    while True:
        c = f"{rng.randrange(10**6):06d}"
        if c not in bad:
            return c


RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


def new_recovery_code():
    s = "".join(rng.choice(RECOVERY_ALPHABET) for _ in range(12))
    return f"{s[0:4]}-{s[4:8]}-{s[8:12]}"


def recovery_entry(code):
    salt = os.urandom(16)
    norm = code.replace("-", "").replace(" ", "").lower()
    return f"sha256:{salt.hex()}:{hashlib.sha256(salt + norm.encode()).hexdigest()}"


def journal_state(steps):
    """A state journal as the module writes it (pam_totp/src/store/state.rs): the header, then
    one checksummed line per update; the last one is the state."""
    out = "pam-totp state journal 1\n"
    for s in steps:
        body = f"s={s} f=0 l=0 t=- r=-"
        out += f"{body} c={hashlib.sha256(body.encode()).digest()[:8].hex()}\n"
    return out


def write_file(path, data, mode=0o600):
    path = Path(path)
    tmp = path.with_name(path.name + ".writing")
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(tmp, mode)
    os.rename(tmp, path)


class User:
    def __init__(self, name, recovery=0):
        self.name = name
        self.key = os.urandom(20)
        self.secret = b32(self.key)
        self.codes = [new_recovery_code() for _ in range(recovery)]
        self.entries = [recovery_entry(c) for c in self.codes]
        self.next_code = 0  # next unused recovery code
        self.presented = 0  # highest step ever presented
        self.accepted = 0  # highest step reported accepted
        self.burn_tried = 0
        self.burned = []  # recovery codes whose login reported success

    def record_toml(self, state="active", extra=""):
        rec = "".join(f'  "{e}",\n' for e in self.entries)
        return (
            f'version = 1\nuser = "{self.name}"\nstate = "{state}"\n{extra}'
            f'secret = "{self.secret}"\nalgorithm = "SHA1"\ndigits = 6\nperiod = 30\n'
            f'issuer = "torture"\ncreated = 2026-01-01T00:00:00Z\nrecovery = [\n{rec}]\n'
        )

    def fresh_code(self, wait=True):
        """A code of a step never presented for this user; (None, None) if every step in the
        window was used, unless `wait`: then it waits for the next step."""
        s = fresh_step(max(self.presented, self.accepted))
        while s is None and wait:
            time.sleep(PERIOD - time.time() % PERIOD + 0.2)
            s = fresh_step(max(self.presented, self.accepted))
        if s is None:
            return None, None
        self.presented = s
        return s, totp(self.key, s)


# ---------------------------------------------------------------------------------------------
# Sites: a state dir, a PAM stack, logins
# ---------------------------------------------------------------------------------------------


class Outcome:
    def __init__(self, rc, out, err, logs):
        self.rc = rc
        self.out = out
        self.err = err
        self.logs = logs
        m = re.search(rb"^RESULT:(\S+)", out, re.M)
        self.result = m.group(1).decode() if m else "NONE"

    def __repr__(self):
        return (
            f"result={self.result} rc={self.rc} stdout={self.out[-300:]!r} "
            f"stderr={self.err[-600:]!r} logs={self.logs}"
        )


def log_mark():
    try:
        return LOG.stat().st_size
    except FileNotFoundError:
        return 0


def log_lines_since(mark):
    try:
        with open(LOG, "rb") as f:
            f.seek(mark)
            data = f.read()
    except FileNotFoundError:
        return []
    return [l.decode("utf-8", "replace") for l in data.split(b"\n") if l]


class Site:
    def __init__(self, name, policy=None, options="window=1", base=None):
        self.name = name
        self.root = Path(base or WORK) / name
        self.root.mkdir(mode=0o755, parents=True)
        os.chmod(self.root, 0o755)
        self.state = self.root / "state"
        self.users = self.state / "users"
        for d in (self.state, self.users):
            d.mkdir(mode=0o700)
            os.chmod(d, 0o700)
        self.pamd = self.root / "pam.d"
        self.pamd.mkdir(mode=0o755)
        self.service = f"tt-{name}"
        self.policy = self.root / "policy.toml"
        if policy is not None:
            write_file(self.policy, policy, 0o644)
        self.stack(options)
        write_file(self.pamd / "other", "auth required pam_deny.so\n", 0o644)
        self.people = {}

    def stack(self, options, service=None):
        write_file(
            self.pamd / (service or self.service),
            f"auth required {WORK}/pam_totp.so dir={self.state} policy={self.policy} {options}\n",
            0o644,
        )

    def add(self, name, recovery=0, state=None):
        u = User(name, recovery)
        write_file(self.users / f"{name}.toml", u.record_toml())
        if state is not None:
            write_file(self.users / f"{name}.state", state)
        self.people[name] = u
        return u

    def rewrite(self, u):
        write_file(self.users / f"{u.name}.toml", u.record_toml())

    def cmd(self, user, service=None):
        return [HARNESS, str(self.pamd), service or self.service, user]

    def login(self, user, answer, service=None, prefix=(), timeout=120, want_logs=1, rhost=RHOST):
        """One login; answer: bytes/str (one line) or None (EOF: no answer)."""
        if isinstance(answer, str):
            answer = answer.encode()
        data = b"" if answer is None else answer + b"\n"
        mark = log_mark()
        env = dict(os.environ, PAM_RHOST=rhost, HARNESS_SETCRED="0")
        p = subprocess.run(
            list(prefix) + self.cmd(user, service),
            input=data,
            capture_output=True,
            timeout=timeout,
            env=env,
        )
        logs = self.wait_logs(mark, want_logs, service) if want_logs else []
        return Outcome(p.returncode, p.stdout, p.stderr, logs)

    def wait_logs(self, mark, want, service=None, timeout=3.0):
        tag = f"pam_totp({service or self.service}:auth)"
        end = time.time() + timeout
        while True:
            lines = [l for l in log_lines_since(mark) if tag in l]
            if len(lines) >= want or time.time() > end:
                break
            time.sleep(0.005)
        time.sleep(0.03)  # anything more that belongs to this login
        return [l for l in log_lines_since(mark) if tag in l]

    def inspect(self, users=()):
        p = subprocess.run([CHECK, str(self.state), *users], capture_output=True, text=True)
        res, extra = {}, []
        for line in p.stdout.splitlines():
            if line.startswith("extra="):
                extra = line.split()[1:]
                continue
            if line.startswith("error="):
                res["_store"] = {"error": line}
                continue
            d = {}
            for part in re.findall(r"(\w+)=(\S+)", line.split(" error=")[0]):
                d[part[0]] = part[1]
            if " error=" in line:
                d["error"] = line.split(" error=", 1)[1]
            res[d.get("user")] = d
        return res, extra

    def find_recovery(self, user, code):
        p = subprocess.run(
            [CHECK, "--find-recovery", str(self.state), user, code], capture_output=True, text=True
        )
        return p.stdout.strip()


def verify_user(site, u, d, allow_missing_record=False):
    """Invariants of one user's files after a crash; returns a list of problems."""
    problems = []
    if d is None:
        return [f"{u.name}: not listed by torture-check"]
    if d.get("record") == "none" and allow_missing_record:
        pass
    elif d.get("record") != "ok":
        problems.append(f"{u.name}: record {d.get('record')} {d.get('error', '')}")
    elif d.get("secret") != u.secret:
        problems.append(f"{u.name}: secret changed")
    if d.get("state") != "ok":
        problems.append(f"{u.name}: state {d.get('state')} {d.get('error', '')}")
    else:
        ls = d.get("last_step", "-")
        last = 0 if ls == "-" else int(ls)
        if last < u.accepted:
            problems.append(f"{u.name}: last_step {last} < accepted {u.accepted} (step went backwards)")
    if d.get("record") == "ok" and u.entries:
        left = int(d.get("recovery", -1))
        hi = len(u.entries) - len(u.burned)
        lo = len(u.entries) - u.burn_tried
        if not lo <= left <= hi:
            problems.append(f"{u.name}: {left} recovery codes left, expected {lo}..{hi}")
    return problems


def crashkill(site, user, answer, lo_us, hi_us, prefix=()):
    inp = WORK / "ck.in"
    out = WORK / "ck.out"
    inp.write_bytes(answer.encode() + b"\n")
    cmd = [CRASHKILL, "-m", str(int(lo_us)), "-d", str(int(hi_us)), "-s", str(rng.randrange(2**31)),
           "-i", str(inp), "-o", str(out), "--", *prefix, *site.cmd(user)]
    env = dict(os.environ, PAM_RHOST=RHOST, HARNESS_SETCRED="0")
    line = subprocess.run(cmd, capture_output=True, text=True, env=env).stdout.strip()
    text = out.read_bytes()
    m = re.search(rb"^RESULT:(\S+)", text, re.M)
    return line.startswith("KILLED"), (m.group(1).decode() if m else None), line


def calibrate(run):
    """Median duration (us) of three unkilled runs (after two warm-up runs)."""
    times = []
    run()
    run()
    for _ in range(3):
        line = run()
        m = re.search(r"elapsed_us=(\d+)", line)
        if m:
            times.append(int(m.group(1)))
    return sorted(times)[len(times) // 2] if times else 20000


# ---------------------------------------------------------------------------------------------
# Shared by the groups
# ---------------------------------------------------------------------------------------------


NO_THROTTLE = "version = 1\n\n[throttle]\nattempts = 1000000000\n"
