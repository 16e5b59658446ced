"""Torture groups under stress: a full disk (fulldisk), 64 logins with one code (storm),
parallel logins (parallel), bad input at the prompt (badinput) and valgrind through libpam
(memory). Run by tests/torture/torture.py."""
import fcntl
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from torture_lib import (FAULT_SO, HARNESS, NO_THROTTLE, QUICK, RHOST, STORM, SUPP, Site, WORK,
                         check, info, journal_state, log_mark, now_step, rng, totp,
                         verify_user, wait_step_margin, write_file, wrong_code)


# ---------------------------------------------------------------------------------------------
# Full disk
# ---------------------------------------------------------------------------------------------


def fill(dirpath, inodes=False):
    """Fills the filesystem of dirpath: data blocks (one big file) or inodes (empty files)."""
    if inodes:
        n = 0
        while True:
            try:
                open(Path(dirpath) / f"i{n}", "wb").close()
                n += 1
            except OSError:
                return n
    fd = os.open(Path(dirpath) / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n = 0
    try:
        for size in (65536, 4096, 1):  # to the last byte
            while True:
                try:
                    w = os.write(fd, b"\0" * size)
                    if w <= 0:
                        break
                    n += w
                except OSError:
                    break
    finally:
        os.close(fd)
    return n


SPACE_WORDS = ("no space left", "disk full", "enospc")


def clear_space_log(o):
    return any(any(w in l.lower() for w in SPACE_WORDS) for l in o.logs)


def full_verdict(site, u, step, o):
    """On a full filesystem a valid code may still be accepted if the store had room for it
    (a journal appending into its last block), but never without being recorded; otherwise the
    login fails closed with one clear log line. Returns a problem or None."""
    if o.result == "PAM_SUCCESS":
        res, _ = site.inspect([u.name])
        last = res.get(u.name, {}).get("last_step", "-")
        if last == "-" or int(last) < step:
            return f"accepted step {step} but the state says {last}"
        u.accepted = step
        return None
    if o.result == "PAM_IGNORE" or not clear_space_log(o) or len(o.logs) != 1:
        return f"not a clear fail-closed denial: {o}"
    return None


def group_fulldisk():
    mnt = WORK / "fullfs"
    mnt.mkdir(mode=0o755)
    subprocess.run(["mount", "-n", "-t", "tmpfs", "-o", "size=320k,mode=0755", "torture-full",
                    str(mnt)], check=True)
    try:
        site = Site("site", base=mnt, policy=NO_THROTTLE)
        f1 = site.add("f1", recovery=3)
        f2 = site.add("f2", recovery=3)  # never logged in: no lock file, no state
        # A journal just under its compaction size: its next update would be a rewrite, which a
        # full disk has no room for; the module appends past the soft limit instead.
        f3 = site.add("f3")
        f3.accepted = now_step() - 40
        lines = [f3.accepted - 60 + i for i in range(60)] + [f3.accepted]
        j = journal_state(lines)
        while len(j) > 2040:  # any entry (45+ bytes) takes it past 2048
            lines = lines[1:]
            j = journal_state(lines)
        write_file(site.users / "f3.state", j)
        write_file(site.users / "f3.lock", "")
        o = site.login("f1", f1.fresh_code()[1])
        f1.accepted = f1.presented if o.result == "PAM_SUCCESS" else 0
        before, _ = site.inspect()
        filled = fill(site.root)
        info(f"fulldisk: filled a 320 KiB tmpfs with {filled} more bytes; df: "
             + subprocess.run(["df", "-k", str(mnt)], capture_output=True, text=True).stdout.split("\n")[1])

        denied = []
        s3, c3 = f3.fresh_code()
        o = site.login("f3", c3)
        p = full_verdict(site, f3, s3, o)
        check("fulldisk.journal-at-its-limit-still-records-an-accepted-step",
              p is None and o.result == "PAM_SUCCESS", p or o)
        s, c = f1.fresh_code()
        o = site.login("f1", c)
        p = full_verdict(site, f1, s, o)
        denied += [o] if o.result != "PAM_SUCCESS" else []
        check("fulldisk.valid-code-recorded-or-fails-closed", p is None, p)
        o = site.login("f1", wrong_code(f1.key))
        check("fulldisk.wrong-code-denied-with-clear-log",
              o.result == "PAM_AUTH_ERR" and len(o.logs) == 1
              and ("not recorded" not in o.logs[0] or clear_space_log(o)), o)
        o = site.login("f1", f1.codes[0])
        found = site.find_recovery("f1", f1.codes[0])
        if o.result == "PAM_SUCCESS":
            f1.burned.append(f1.codes[0])
            ok = found.startswith("found=none")
        else:
            ok = clear_space_log(o) and not found.startswith("found=none")
            denied.append(o)
        f1.burn_tried += 1
        check("fulldisk.recovery-code-burned-or-kept-never-lost", ok, f"{o} {found}")
        s2, c2 = f2.fresh_code()
        o = site.login("f2", c2)
        p = full_verdict(site, f2, s2, o)
        denied += [o] if o.result != "PAM_SUCCESS" else []
        check("fulldisk.first-login-recorded-or-fails-closed", p is None, p)
        check("fulldisk.some-write-really-hit-the-full-disk", bool(denied),
              "every login found room: the filesystem was not full")
        after, extra = site.inspect()
        probs = []
        for u in (f1, f2, f3):
            probs += verify_user(site, u, after.get(u.name))
            for k in ("record", "secret"):
                if after.get(u.name, {}).get(k) != before.get(u.name, {}).get(k):
                    probs.append(f"{u.name}: {k} changed")
        check("fulldisk.no-file-truncated-or-emptied", not probs, f"{probs} before {before} after {after}")
        check("fulldisk.no-temp-files-left", not [e for e in extra if ".tmp" in e], extra)
        os.unlink(site.root / "filler")
        s, c = f1.fresh_code()
        o1 = site.login("f1", c)
        code = next(x for x in f1.codes if x not in f1.burned)
        o2 = site.login("f1", code)
        s2, c2 = f2.fresh_code()
        o3 = site.login("f2", c2)
        check("fulldisk.logins-work-again-after-space-is-freed",
              o1.result == o2.result == o3.result == "PAM_SUCCESS", f"{o1} | {o2} | {o3}")
    finally:
        subprocess.run(["umount", "-n", str(mnt)])

    # The same with no free inodes (new files cannot be created at all).
    mnt = WORK / "fullino"
    mnt.mkdir(mode=0o755)
    subprocess.run(["mount", "-n", "-t", "tmpfs", "-o", "size=4m,nr_inodes=64,mode=0755",
                    "torture-ino", str(mnt)], check=True)
    try:
        site = Site("site", base=mnt, policy=NO_THROTTLE)
        g1 = site.add("g1")
        g2 = site.add("g2")  # never logged in: its lock file cannot be created
        o = site.login("g1", g1.fresh_code()[1])
        g1.accepted = g1.presented if o.result == "PAM_SUCCESS" else 0
        before, _ = site.inspect()
        n = fill(site.root, inodes=True)
        info(f"fulldisk: used the last {n} inodes of a tmpfs")
        s1, c1 = g1.fresh_code()
        o1 = site.login("g1", c1)
        s2, c2 = g2.fresh_code()
        o2 = site.login("g2", c2)
        p1, p2 = full_verdict(site, g1, s1, o1), full_verdict(site, g2, s2, o2)
        check("fullinodes.logins-recorded-or-fail-closed-with-clear-log",
              p1 is None and p2 is None and o2.result != "PAM_SUCCESS", f"{p1} | {p2}")
        after, extra = site.inspect()
        probs = []
        for u in (g1, g2):
            probs += verify_user(site, u, after.get(u.name))
            if after.get(u.name, {}).get("secret") != before.get(u.name, {}).get("secret"):
                probs.append(f"{u.name}: secret changed")
        check("fullinodes.no-file-damaged", not probs, f"{probs} before {before} after {after}")
        for i in range(n):
            os.unlink(site.root / f"i{i}")
        s1, c1 = g1.fresh_code()
        s2, c2 = g2.fresh_code()
        o1 = site.login("g1", c1)
        o2 = site.login("g2", c2)
        check("fullinodes.logins-work-again", o1.result == o2.result == "PAM_SUCCESS",
              f"{o1} | {o2}")
    finally:
        subprocess.run(["umount", "-n", str(mnt)])


# ---------------------------------------------------------------------------------------------
# Storm: 64 logins with the same valid code at once
# ---------------------------------------------------------------------------------------------


def storm(site, lines, hold=False, timeout_ms=120000):
    args = [STORM, "-t", str(timeout_ms)] + (["-H"] if hold else []) + \
        [HARNESS, str(site.pamd), site.service]
    env = dict(os.environ, PAM_RHOST=RHOST, HARNESS_SETCRED="0")
    p = subprocess.run(args, input="".join(f"{u} {a}\n" for u, a in lines), capture_output=True,
                       text=True, env=env)
    logins = [dict(re.findall(r"(\w+)=(\S+)", l)) for l in p.stdout.splitlines()
              if l.startswith("LOGIN")]
    summary = dict(re.findall(r"(\w+)=(\S+)", next(
        (l for l in p.stdout.splitlines() if l.startswith("SUMMARY")), "")))
    return p.returncode, logins, summary, p.stderr


def group_storm():
    rounds = 10 if QUICK else 100
    width = 64
    site = Site("storm")  # default policy: the throttle is on
    users = [site.add(f"s{i:03d}") for i in range(rounds)]
    bad, lat = [], []
    mark = log_mark()
    for r, u in enumerate(users):
        wait_step_margin(8)
        step = now_step()
        code = totp(u.key, step)
        rc, logins, summary, err = storm(site, [(u.name, code)] * width)
        ok = int(summary.get("success", -1))
        if rc != 0 or ok != 1 or int(summary.get("n", 0)) != width:
            bad.append(f"round {r}: rc={rc} {summary} {err[-300:]}")
        lat.append(float(summary.get("max_ms", 0)))
        u.accepted = step
    lines = site.wait_logs(mark, rounds * width, timeout=20)
    accepted = sum("accepted step" in l for l in lines)
    replayed = sum("replayed code" in l for l in lines)
    check(f"storm.exactly-one-success-per-round ({rounds} rounds x {width} logins)", not bad,
          "; ".join(bad[:5]))
    check("storm.losers-logged-as-replays",
          accepted == rounds and replayed == rounds * (width - 1),
          f"accepted {accepted}, replayed {replayed}, other: "
          + "; ".join(l for l in lines if "accepted step" not in l and "replayed" not in l)[:400])
    res, _ = site.inspect()
    counted = [n for n, d in res.items() if n and d.get("failures") not in ("0", None)]
    check("storm.replays-not-counted-as-failures", not counted, counted[:5])
    lat.sort()
    info(f"storm: time from release to the last of {width} answers: median "
         f"{lat[len(lat) // 2]:.0f} ms, worst {lat[-1]:.0f} ms")


# ---------------------------------------------------------------------------------------------
# Parallel logins: per-user locks, no lock while waiting for the answer
# ---------------------------------------------------------------------------------------------


def group_parallel():
    site = Site("par")
    n = 16
    users = [site.add(f"q{i:02d}") for i in range(n + 3)]
    a, b, c = users[n], users[n + 1], users[n + 2]

    # A held lock of user A does not delay user B; A's own login waits for it.
    wait_step_margin(10)
    lockpath = site.users / f"{a.name}.lock"
    fd = os.open(lockpath, os.O_RDWR | os.O_CREAT, 0o600)
    os.chmod(lockpath, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        t0 = time.time()
        ob = site.login(b.name, b.fresh_code()[1])
        tb = time.time() - t0
        check("parallel.other-user-not-blocked-by-a-held-lock",
              ob.result == "PAM_SUCCESS" and tb < 2.0, f"{tb:.2f}s {ob}")
        sa, ca = a.fresh_code()
        env = dict(os.environ, PAM_RHOST=RHOST, HARNESS_SETCRED="0")
        pa = subprocess.Popen(site.cmd(a.name), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env)
        pa.stdin.write(ca.encode() + b"\n")
        pa.stdin.close()
        time.sleep(1.5)
        waiting = pa.poll() is None
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    t0 = time.time()
    out = pa.stdout.read()
    pa.wait(timeout=60)
    ta = time.time() - t0
    check("parallel.same-user-waits-for-the-lock-then-succeeds",
          waiting and b"RESULT:PAM_SUCCESS" in out and ta < 5, f"waiting={waiting} {ta:.2f}s {out[-200:]!r}")

    # A login sitting at its prompt holds no lock: a second login of the same user gets in.
    wait_step_margin(10)
    rc, logins, summary, err = storm(site, [(c.name, "x"), (c.name, c.fresh_code()[1])], hold=True)
    second = logins[1] if len(logins) > 1 else {}
    check("parallel.prompt-holds-no-lock",
          rc == 0 and second.get("result") == "PAM_SUCCESS" and float(second.get("ms", 99999)) < 2000,
          f"{logins} {err[-300:]}")

    # Different users at once vs one after the other.
    wait_step_margin(10)
    rc, logins, summary, err = storm(site, [(u.name, u.fresh_code()[1]) for u in users[:n]])
    single = []
    for u in users[:4]:
        r1, l1, s1, _ = storm(site, [(u.name, u.fresh_code()[1])])
        single.append(float(s1.get("max_ms", 0)))
    one = sorted(single)[len(single) // 2]
    check(f"parallel.{n}-different-users-at-once-all-succeed",
          rc == 0 and int(summary.get("success", 0)) == n
          and float(summary.get("max_ms", 1e9)) < max(5000, 4 * n * one),
          f"{summary} {err[-300:]}")
    info(f"parallel: one login {one:.1f} ms after its answer; {n} different users answered at "
         f"once: median {float(summary.get('p50_ms', 0)):.1f} ms, last {float(summary.get('max_ms', 0)):.1f} ms "
         f"(2 CPUs: the logins share the CPUs, none waits for another's lock)")


# ---------------------------------------------------------------------------------------------
# Bad input at the prompt
# ---------------------------------------------------------------------------------------------


def group_badinput():
    site = Site("bad", policy=NO_THROTTLE)
    u = site.add("bi", recovery=2)
    code = totp(u.key, now_step())
    cases = {
        "empty": b"",
        "spaces-only": b"      ",
        "tabs-and-cr": b"\t\t\r",
        "10kb-digits": b"7" * 10240,
        "10kb-random": bytes(rng.randrange(32, 127) for _ in range(10240)),
        "1mb": b"9" * (1 << 20),
        "embedded-nul": b"12\x003456",
        "nul-first": b"\x00" + code.encode(),
        "non-utf8": b"\xff\xfe\xfd" + code.encode(),
        "non-utf8-after-code": code.encode() + b"\xff",
        "5-digits": code[:5].encode(),
        "7-digits": code.encode() + b"1",
        "9-digits": code.encode() + b"123",
        "letters": b"12345a",
        "escape-sequence": b"\x1b[31m" + code.encode(),
        "recovery-code-wrong": b"abcd-efgh-jkmn",
        "long-recovery-form": b"-".join([b"abcd"] * 40),
    }
    for name, data in cases.items():
        o = site.login("bi", data)
        ok = (o.result in ("PAM_AUTH_ERR",) and o.rc == 0 and len(o.logs) == 1
              and len(o.logs[0]) < 400 and code not in o.logs[0])
        check(f"badinput.{name}", ok, o)
    # What a PAM conversation carries: a C string. Bytes after a NUL never reach the module,
    # so a valid code followed by NUL and anything is the valid code.
    s, c = u.fresh_code()
    o = site.login("bi", c.encode() + b"\x00garbage")
    check("badinput.nul-truncates-the-answer (module sees only the bytes before NUL)",
          o.result == "PAM_SUCCESS", o)
    if o.result == "PAM_SUCCESS":
        u.accepted = s
    # PAM_RHOST comes from the application: a very long one must not break later logins.
    s1, c1 = u.fresh_code()
    o1 = site.login("bi", c1, rhost="h" * 5000)
    if o1.result == "PAM_SUCCESS":
        u.accepted = s1
    s2, c2 = u.fresh_code()
    o2 = site.login("bi", c2)
    if o2.result == "PAM_SUCCESS":
        u.accepted = s2
    check("badinput.5000-byte-rhost-then-next-login-works",
          o1.result == o2.result == "PAM_SUCCESS" and all(len(l) < 600 for l in o1.logs),
          f"{o1} | {o2}")
    res, _ = site.inspect(["bi"])
    check("badinput.files-intact", not verify_user(site, u, res.get("bi")), res)


# ---------------------------------------------------------------------------------------------
# Memory: valgrind through libpam
# ---------------------------------------------------------------------------------------------


def group_memory():
    if not shutil.which("valgrind"):
        print("SKIP memory: valgrind not installed")
        return
    vg = ["valgrind", "-q", "--leak-check=full", "--show-leak-kinds=definite",
          "--errors-for-leak-kinds=definite", "--error-exitcode=99", "--keep-debuginfo=yes",
          "--num-callers=30"]
    if SUPP:
        vg.append(f"--suppressions={SUPP}")
    site = Site("mem", policy="version = 1\n\n[throttle]\nattempts = 3\nlock_seconds = 600\n")
    ok_user = site.add("m-ok", recovery=2)
    locked = site.add("m-locked", state=f"version = 1\nfailures = 7\nlocked_until = {int(time.time()) + 3600}\n")
    corrupt = site.add("m-corrupt", state="version = 1\nlast_step = \"x\"\n")
    site.add("m-perm")
    os.chmod(site.users / "m-perm.toml", 0o644)
    site.stack("window=1 no_such_option=1", service="tt-mem-badopt")
    rp = site.root / "bad-policy"
    rp.mkdir(mode=0o755)
    write_file(rp / "policy.toml", "version = 1\nrequire_everyone = true\n", 0o644)
    write_file(site.pamd / "tt-mem-badpolicy",
               f"auth required {WORK}/pam_totp.so dir={site.state} policy={rp}/policy.toml\n", 0o644)
    ep = site.root / "enroll-policy"
    ep.mkdir(mode=0o755)
    write_file(ep / "policy.toml", 'version = 1\nrequire_all = true\nenroll_at_login = true\nissuer = "torture"\n', 0o644)
    write_file(site.pamd / "tt-mem-enroll",
               f"auth required {WORK}/pam_totp.so dir={site.state} policy={ep}/policy.toml\n", 0o644)
    # The test-only build (feature fault-injection) panics inside the module on fault=panic;
    # the trampoline must catch it. The real module must refuse that option like any other.
    write_file(site.pamd / "tt-mem-panic",
               f"auth required {FAULT_SO} dir={site.state} policy={site.policy} fault=panic\n", 0o644)
    write_file(site.pamd / "tt-mem-nofault",
               f"auth required {WORK}/pam_totp.so dir={site.state} policy={site.policy} fault=panic\n",
               0o644)

    wait_step_margin(15)
    s, code = ok_user.fresh_code()
    cases = [
        ("success", "m-ok", code, None, "PAM_SUCCESS"),
        ("wrong-code", "m-ok", wrong_code(ok_user.key), None, "PAM_AUTH_ERR"),
        ("throttled", "m-locked", totp(locked.key, now_step()), None, "PAM_AUTH_ERR"),
        ("corrupt-state", "m-corrupt", "123456", None, "PAM_AUTHINFO_UNAVAIL"),
        ("panic-caught", "m-ok", "123456", "tt-mem-panic", "PAM_SERVICE_ERR"),
        ("fault-option-refused-by-release-build", "m-ok", "123456", "tt-mem-nofault",
         "PAM_SERVICE_ERR"),
    ]
    if not QUICK:
        cases += [
            ("replay", "m-ok", code, None, "PAM_AUTH_ERR"),
            ("recovery-code", "m-ok", ok_user.codes[0], None, "PAM_SUCCESS"),
            ("bad-permissions", "m-perm", "123456", None, "PAM_AUTHINFO_UNAVAIL"),
            # The module returns PAM_IGNORE; a stack where no module decided gives PERM_DENIED.
            ("not-enrolled", "nobody-here", "", None, "PAM_PERM_DENIED"),
            ("invalid-user-name", "../etc", "", None, "PAM_AUTH_ERR"),
            ("conversation-eof", "m-ok", None, None, "PAM_CONV_ERR"),
            ("bad-module-option", "m-ok", "123456", "tt-mem-badopt", "PAM_SERVICE_ERR"),
            ("bad-policy", "m-ok", "123456", "tt-mem-badpolicy", "PAM_SERVICE_ERR"),
            ("enroll-at-login-wrong-code", "root", "000000", "tt-mem-enroll", "PAM_AUTH_ERR"),
        ]
    for name, user, answer, service, want in cases:
        o = site.login(user, answer, service=service, prefix=vg, timeout=600,
                       want_logs=1 if name == "panic-caught" else 0)
        if name == "panic-caught":
            check("memory.panic-caught.logged",
                  any("denied: internal error (panic caught)" in l for l in o.logs), f"{o.logs}")
        leaks = re.findall(rb"definitely lost: ([\d,]+) bytes", o.err)
        errors = re.findall(rb"^==\d+== (?!    |HEAP|LEAK|All heap|For lists|Use --)(.+)$", o.err, re.M)
        ok = o.rc != 99 and o.result == want and all(x == b"0" for x in leaks)
        check(f"memory.valgrind.{name}", ok,
              f"want {want}; rc={o.rc} result={o.result} valgrind: {o.err[-1500:].decode('utf-8', 'replace')}")
