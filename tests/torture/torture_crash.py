"""Torture groups of crash safety: random kill -9 during logins (crash), kill -9 at the N-th
write-path syscall (points), the durability order of writes (durability), and the CLI's
writes (cli). Run by tests/torture/torture.py."""
import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

from torture_lib import (CLI, CRASHKILL, NO_THROTTLE, QUICK, SEED, Site, WORK, calibrate,
                         check, crashkill, info, log_mark, now_step, rng, totp, verify_user,
                         wait_step_margin, wrong_code)


# ---------------------------------------------------------------------------------------------
# Crash safety: random kill -9 during logins (state writes, recovery burns)
# ---------------------------------------------------------------------------------------------


def group_crash():
    iters = 50 if QUICK else 1000
    nusers = 16 if QUICK else 200
    site = Site("crash", policy=NO_THROTTLE)
    users = [site.add(f"c{i:03d}", recovery=8) for i in range(nusers)]

    spare = itertools.cycle(users)

    def cal(kind):
        def one():
            u = next(spare)
            if kind == "success":
                step, code = u.fresh_code()
            else:
                code = wrong_code(u.key)
            inp, out = WORK / "cal.in", WORK / "cal.out"
            inp.write_text(code + "\n")
            line = subprocess.run(
                [CRASHKILL, "-d", "0", "-i", str(inp), "-o", str(out), "--", *site.cmd(u.name)],
                capture_output=True, text=True, env=dict(os.environ, HARNESS_SETCRED="0"),
            ).stdout
            if kind == "success" and b"RESULT:PAM_SUCCESS" in out.read_bytes():
                u.accepted = step
            return line
        return calibrate(one)

    # Kill delays follow the recent durations of unkilled logins (the machine's load varies).
    recent = {"success": [cal("success")] * 3, "failure": [cal("failure")] * 3}
    info(f"crash: an unkilled login takes ~{recent['success'][0]} us (valid code), "
         f"~{recent['failure'][0]} us (wrong code); kill delays drawn from [0.3, 1.05] x the "
         f"median of recent unkilled logins; seed {SEED}")

    def typical(kind):
        r = sorted(recent["failure" if kind == "failure" else "success"][-15:])
        return r[len(r) // 2]

    kinds = ["success"] * 4 + ["failure"] * 3 + ["recovery"] * 2
    stats = {"killed": 0, "exited": 0}
    problems, unexpected = [], []
    cursor = 0
    for it in range(iters):
        kind = rng.choice(kinds)
        # Pick a user that can take this kind of attempt.
        for _ in range(nusers):
            u = users[cursor % nusers]
            cursor += 1
            if kind == "recovery" and u.next_code >= len(u.codes):
                continue
            break
        if kind == "success":
            step, answer = u.fresh_code(wait=False)
            if answer is None:
                kind, answer = "failure", wrong_code(u.key)
        elif kind == "failure":
            answer = wrong_code(u.key)
        else:
            answer = u.codes[u.next_code]
            u.next_code += 1
            u.burn_tried += 1
        # Every fifth attempt runs unkilled: its duration keeps the kill delays honest (runs
        # that merely finished before their kill are biased towards fast ones).
        measure = it % 5 == 4
        t = typical(kind)
        killed, result, line = crashkill(site, u.name, answer, 0 if measure else 0.3 * t,
                                         0 if measure else 1.05 * t)
        stats["killed" if killed else "exited"] += 1
        m = re.search(r"elapsed_us=(\d+)", line)
        if m and measure:
            recent["failure" if kind == "failure" else "success"].append(int(m.group(1)))
        if result == "PAM_SUCCESS":
            if kind == "success":
                u.accepted = max(u.accepted, step)
            elif kind == "recovery":
                u.burned.append(answer)
            else:
                unexpected.append(f"iteration {it}: wrong code accepted for {u.name}")
        elif not killed and result is not None:
            if kind != "failure":
                unexpected.append(f"iteration {it}: {kind} attempt for {u.name} gave {result}")
        res, _ = site.inspect([u.name])
        problems += [f"iteration {it} ({kind}, {'killed' if killed else 'exited'}): {p}"
                     for p in verify_user(site, u, res.get(u.name))]
        if kind == "recovery" and result == "PAM_SUCCESS":
            found = site.find_recovery(u.name, answer)
            if not found.startswith("found=none"):
                problems.append(f"iteration {it}: burned recovery code of {u.name} still there ({found})")
        if len(problems) > 20:
            break

    info(f"crash: {iters} iterations, {stats['killed']} killed mid-login, "
         f"{stats['exited']} finished before the kill")
    res, extra = site.inspect()
    sweep = []
    for u in users:
        sweep += verify_user(site, u, res.get(u.name))
    check("crash.random-kill.files-parse-secrets-kept-no-step-backwards",
          not problems and not sweep, "; ".join((problems + sweep)[:8]))
    check("crash.random-kill.logins-behave", not unexpected, "; ".join(unexpected[:5]))
    stray = [e for e in extra if ".tmp" in e]
    other = [e for e in extra if ".tmp" not in e]
    check("crash.random-kill.no-unknown-files", not other, " ".join(other[:10]))
    info(f"crash: {len(stray)} temporary files left behind by killed writers (harmless; "
         f"never at a final name)")

    # The module itself reads every file: a wrong code must be judged as a wrong code.
    mark = log_mark()
    bad = []
    for u in users:
        o = site.login(u.name, wrong_code(u.key), want_logs=0)
        if o.result != "PAM_AUTH_ERR":
            bad.append(f"{u.name}: {o.result}")
    lines = site.wait_logs(mark, len(users), timeout=10)
    judged = [l for l in lines if "wrong code" in l]
    check("crash.random-kill.module-reads-every-file",
          not bad and len(judged) == len(users),
          f"{bad[:5]} {len(judged)}/{len(users)} judged as wrong code; "
          + "; ".join(l for l in lines if "wrong code" not in l)[:500])

    # No replay: every code reported accepted (and still inside the window) is refused now.
    replays, bad = 0, []
    wait_step_margin(10)   # the loop stays in one step: a code at lo must not become two old
    lo = now_step() - 1
    for u in users:
        if u.accepted >= lo:
            replays += 1
            o = site.login(u.name, totp(u.key, u.accepted))
            if o.result == "PAM_SUCCESS" or not any("replayed code" in l for l in o.logs):
                bad.append(f"{u.name} step {u.accepted}: {o}")
    check("crash.random-kill.no-replay-after-crash", not bad, "; ".join(bad[:3]))
    info(f"crash: replayed {replays} accepted codes still inside the window; all refused"
         if not bad else "crash: replay check failed")


# ---------------------------------------------------------------------------------------------
# Crash safety, deterministic: kill -9 at the N-th call of each write-path syscall (strace)
# ---------------------------------------------------------------------------------------------


def group_points():
    strace = shutil.which("strace")
    if not strace:
        print("SKIP crash.points: strace not installed")
        return
    site = Site("points", policy=NO_THROTTLE)
    syscalls = ["write", "fsync", "fdatasync", "rename", "renameat2", "unlink", "flock",
                "ftruncate", "pwrite64"]
    counter = [0]

    def new_user():
        counter[0] += 1
        return site.add(f"p{counter[0]:03d}", recovery=4)

    total, problems, unexpected = 0, [], []
    for path in ("success", "failure", "recovery"):
        for sc in syscalls:
            for n in range(1, 41):
                u = new_user()
                if path == "success":
                    step, answer = u.fresh_code()
                elif path == "failure":
                    answer = wrong_code(u.key)
                else:
                    answer = u.codes[0]
                    u.burn_tried = 1
                prefix = [strace, "-f", "-qq", "-o", "/dev/null", "-e", f"trace={sc}",
                          "-e", f"inject={sc}:signal=KILL:when={n}"]
                o = site.login(u.name, answer, prefix=prefix, want_logs=0)
                completed = o.result != "NONE"
                if completed:
                    ok = (o.result == "PAM_SUCCESS") == (path != "failure")
                    if not ok:
                        unexpected.append(f"{path}/{sc}#{n}: {o.result}")
                    if path == "success" and o.result == "PAM_SUCCESS":
                        u.accepted = step
                    if path == "recovery" and o.result == "PAM_SUCCESS":
                        u.burned = [answer]
                else:
                    total += 1
                res, extra = site.inspect([u.name])
                problems += [f"{path}, killed at {sc} #{n}: {p}"
                             for p in verify_user(site, u, res.get(u.name))]
                # And the user can still log in (no stuck lock, no unreadable file).
                s2, c2 = u.fresh_code()
                if c2 is not None:
                    o2 = site.login(u.name, c2, want_logs=0)
                    if o2.result != "PAM_SUCCESS":
                        problems.append(f"{path}, killed at {sc} #{n}: next login {o2.result}")
                    else:
                        u.accepted = s2
                if completed:
                    break
    info(f"crash.points: the login was killed at {total} distinct syscall entries "
         f"({', '.join(syscalls)}) on the success, failure and recovery paths")
    check("crash.points.every-kill-point-leaves-valid-files", not problems and total > 0,
          "; ".join(problems[:6]) or "no kill point was reached")
    check("crash.points.unkilled-logins-behave", not unexpected, "; ".join(unexpected[:5]))


# ---------------------------------------------------------------------------------------------
# Durability order (what kill -9 cannot show: a power cut loses what was not flushed)
# ---------------------------------------------------------------------------------------------


def durability_problems(trace_text, users_dir, must_flush):
    """Checks the syscall order of one login (strace -y). Always: a file renamed into users/
    was fsynced before the rename (a power cut never leaves a truncated file). With
    must_flush (success): every write under users/ is followed by an fsync/fdatasync of that
    file and every rename by an fsync of users/ — all before the application sees RESULT."""
    lines = trace_text.splitlines()
    end = next((i for i, l in enumerate(lines) if re.search(r"write\(1<[^>]*>, \"RESULT:", l)),
               len(lines))
    ud = str(users_dir)
    writes, syncs, renames = [], [], []
    for i, l in enumerate(lines[:end]):
        m = re.search(r"\b(write|pwrite64|pwritev|writev)\(\d+<([^>]*)>", l)
        if m and m.group(2).startswith(ud + "/"):
            writes.append((i, m.group(2)))
        m = re.search(r"\b(fsync|fdatasync)\(\d+<([^>]*)>\) = 0", l)
        if m:
            syncs.append((i, m.group(2)))
        m = re.search(r'\brename(?:at2?)?\((?:\d+<[^>]*>, )?"([^"]*)", (?:\d+<[^>]*>, )?"([^"]*)".*= 0', l)
        if m and m.group(2).startswith(ud + "/"):
            renames.append((i, m.group(1), m.group(2)))
    problems = []
    for i, src, dst in renames:
        if not any(j < i and p == src for j, p in syncs):
            problems.append(f"rename of {Path(src).name} without an fsync of it first")
    if must_flush:
        for i, p in writes:
            if not any(j > i and q == p for j, q in syncs):
                problems.append(f"write to {Path(p).name} not flushed before the result")
        for i, src, dst in renames:
            if not any(j > i and q == ud for j, q in syncs):
                problems.append(f"rename to {Path(dst).name} not made durable (fsync of users/)")
        if not writes and not renames:
            problems.append("nothing was written under users/")
    return problems


def group_durability():
    strace = shutil.which("strace")
    if not strace:
        print("SKIP durability: strace not installed")
        return
    site = Site("durable", policy=NO_THROTTLE)
    ud = site.users.resolve()
    trace = WORK / "durable.trace"
    prefix = [strace, "-f", "-y", "-qq", "-s", "40", "-o", str(trace), "-e",
              "trace=write,pwrite64,writev,pwritev,fsync,fdatasync,rename,renameat,renameat2"]
    for path in ("success", "first-success", "recovery", "failure"):
        u = site.add(f"d-{path}", recovery=2)
        if path != "first-success":
            o = site.login(u.name, u.fresh_code()[1], want_logs=0)  # the state exists already
            u.accepted = u.presented
        if path in ("success", "first-success"):
            answer, want = u.fresh_code()[1], "PAM_SUCCESS"
        elif path == "recovery":
            answer, want = u.codes[0], "PAM_SUCCESS"
        else:
            answer, want = wrong_code(u.key), "PAM_AUTH_ERR"
        o = site.login(u.name, answer, prefix=prefix, want_logs=0)
        probs = durability_problems(trace.read_text(errors="replace"), ud, want == "PAM_SUCCESS")
        check(f"durability.{path}", o.result == want and not probs, f"{o.result}: {probs}")


# ---------------------------------------------------------------------------------------------
# Crash safety of the CLI's writes: enroll --force, disable, recovery, unlock
# ---------------------------------------------------------------------------------------------


def group_cli():
    if not CLI or not os.access(CLI, os.X_OK):
        print(f"SKIP crash.cli: no CLI binary at {CLI or '(unset)'} (cargo build --release)")
        return
    iters = 8 if QUICK else 100
    site = Site("cli", policy=None)
    nopol = str(site.root / "no-policy.toml")
    base = [CLI, "--dir", str(site.state), "--policy", nopol]
    ops = {
        "enroll": lambda u: ["enroll", u, "--force", "--json", "--qr", "none"],
        "disable": lambda u: ["disable", u],
        "recovery": lambda u: ["recovery", u],
        "unlock": lambda u: ["unlock", u],
    }
    step0 = now_step() - 5
    state0 = f"version = 1\nlast_step = {step0}\nfailures = 3\nlocked_until = 0\n"

    def reset(name):
        for ext in ("toml", "state"):
            try:
                os.unlink(site.users / f"{name}.{ext}")
            except FileNotFoundError:
                pass
        u = site.add(name, recovery=3, state=state0)
        u.accepted = step0
        return u

    def run_op(op, name, lo, hi):
        out = WORK / "cli.out"
        cmd = [CRASHKILL, "-m", str(int(lo)), "-d", str(int(hi)), "-s", str(rng.randrange(2**31)),
               "-o", str(out), "--", *base, *ops[op](name)]
        return subprocess.run(cmd, capture_output=True, text=True).stdout

    times = {}
    for op in ops:
        reset("kcal")
        times[op] = calibrate(lambda: (reset("kcal"), run_op(op, "kcal", 0, 0))[1])
    info("crash.cli: unkilled runs take " + ", ".join(f"{k} ~{v} us" for k, v in times.items()))
    problems, killed = [], 0
    for it in range(iters):
        op = rng.choice(list(ops))
        name = f"k{it % 8}"
        u = reset(name)
        line = run_op(op, name, 0.2 * times[op], 1.2 * times[op])
        killed += line.startswith("KILLED")
        res, _ = site.inspect([name])
        d = res.get(name, {})
        rec, st = d.get("record"), d.get("state")
        where = f"iteration {it} ({op}, {'killed' if line.startswith('KILLED') else 'exited'})"
        if rec not in ("ok", "none") or st != "ok":
            problems.append(f"{where}: record={rec} state={st} {d.get('error', '')}")
            continue
        if rec == "none" and op != "disable":
            problems.append(f"{where}: record vanished")
        if rec == "ok":
            same = d.get("secret") == u.secret
            if op == "enroll":
                if not (same and d.get("status") == "active") and not (
                    not same and d.get("status") == "pending" and d.get("replaces") == "1"):
                    problems.append(f"{where}: record {d}")
            elif not same or d.get("status") != "active":
                problems.append(f"{where}: secret or status changed: {d}")
        ls = d.get("last_step", "-")
        # disable may remove the state (then "-"); otherwise no step may go backwards.
        if ls != "-" and int(ls) < step0:
            problems.append(f"{where}: last_step {ls} < {step0}")
        if ls == "-" and op != "disable":
            problems.append(f"{where}: state lost")
    info(f"crash.cli: {iters} iterations, {killed} killed mid-command")
    check("crash.cli.kill-during-enroll-disable-recovery-unlock", not problems,
          "; ".join(problems[:6]))
