#!/usr/bin/env python3
"""fleet_report.py OUT — the report of bench/fleet.sh from its work directory OUT:
summary (one line per phase), NAME.hI.{lat,out,cpu} per driver, server.log, warm.txt, meta."""
import glob
import os
import re
import statistics
import sys

out = sys.argv[1]
TICK = os.sysconf("SC_CLK_TCK")


def phase_count(name, what):
    """The number in OUT/NAME.WHAT (a figure the bench wrote for the phase), or None."""
    try:
        return int(open(os.path.join(out, f"{name}.{what}")).read())
    except (OSError, ValueError):
        return None


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


phases = []
for line in open(os.path.join(out, "summary")):
    left, load1 = line.split("|")
    f = left.split()
    name, svc, mode, hosts, wall_ms, cpu_a, cpu_b, sess = f[:8]
    mb0, mt0, mb1, mt1 = map(float, f[8:12])
    load0 = " ".join(f[12:15])
    lat, n, ok, unexpected, client, waited, span = [], 0, 0, 0, 0.0, 0.0, 0.0
    for h in range(1, int(hosts) + 1):
        base = os.path.join(out, f"{name}.h{h}")
        if os.path.exists(base + ".lat"):
            lat += [float(x) for x in open(base + ".lat") if x.strip()]
        for r in open(base + ".out"):
            m = re.search(r"^RESULT .* n=(\d+) ok=(\d+) unexpected=(\d+)", r)
            if m:
                n += int(m[1])
                ok += int(m[2])
                unexpected += int(m[3])
                w = re.search(r"waited_s=([\d.]+)", r)
                waited = max(waited, float(w[1]) if w else 0)
                sp = re.search(r"span_s=([\d.]+)", r)
                span = max(span, float(sp[1]) if sp else 0)
        try:
            u, s = open(base + ".cpu").read().split()[-2:]
            client += float(u) + float(s)
        except (OSError, ValueError):
            pass
    # the hosts' pam-totp-agents (agent phases): host-side CPU too
    agent = (phase_count(name, "agent.cpu") or 0) / TICK
    # WAL the primary wrote during the phase (file mode: the store's WAL all the same)
    wal = phase_count(name, "wal")
    wall = int(wall_ms) / 1000
    if "-at" in name and span > 0:  # paced: the drivers' own span (no start-up of each driver)
        wall = span
    phases.append(dict(name=name, svc=svc, mode=mode, hosts=int(hosts), wall=wall, n=n, ok=ok,
                       unexpected=unexpected, waited=waited, rate=n / wall if wall else 0, p50=pct(lat, 50),
                       p99=pct(lat, 99), mean=statistics.mean(lat) if lat else float("nan"),
                       srv=int(cpu_a) / TICK, sby=int(cpu_b) / TICK, sess=int(sess), client=client + agent, agent=agent, wal=wal,
                       busy=(mb1 - mb0) / (mt1 - mt0) if mt1 > mt0 else 0,
                       load=f"{load0} → {load1.strip()}"))

print(open(os.path.join(out, "meta")).read().rstrip())
print()
print("| phase | hosts | logins | logins/s | p50 ms | p99 ms | server CPU ms/login | WAL KB/login | standby | client CPU ms/login | of it agents | connections/login | machine busy | load average (start → end) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for p in phases:
    if p["name"].startswith("warmup"):
        continue
    n = max(p["n"], 1)
    conn = f"{p['sess'] / n:.2f}" if p["svc"] != "file" else "–"
    srv = f"{1000 * p['srv'] / n:.2f}" if p["svc"] != "file" else "–"
    sby = f"{1000 * p['sby'] / n:.2f}" if p["svc"] != "file" else "–"
    bad = f" ({p['unexpected']} unexpected)" if p["unexpected"] else ""
    agent = f"{1000 * p['agent'] / n:.2f}" if p["svc"] == "agent" else "–"
    wal = f"{p['wal'] / 1024 / n:.1f}" if p["svc"] != "file" and p["wal"] is not None else "–"
    if p["waited"] > 0.5:  # the drivers ran out of fresh codes: wall-clock rate too low
        bad += f" (waited {p['waited']:.0f} s for fresh steps)"
    print(f"| {p['name']} | {p['hosts']} | {p['n']}{bad} | {p['rate']:.0f} | {p['p50']:.2f} | "
          f"{p['p99']:.2f} | {srv} | {wal} | {sby} | {1000 * p['client'] / n:.2f} | "
          f"{agent} | {conn} | "
          f"{100 * p['busy']:.0f} % | {p['load']} |")

# --- the server's log of the serial, logged run ---------------------------------------------
log = os.path.join(out, "server.log")
if os.path.exists(log):
    ts_re = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+ \[(\d+)\] LOG:  (.*)$")
    recv, auth, first_q = {}, {}, {}
    durs = {}
    sess_ms = []
    proto = set()

    def secs(t):
        h, m, s = t.split(" ")[1].split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    for line in open(log):
        m = ts_re.match(line)
        if not m:
            continue
        t, pid, msg = secs(m[1]), m[2], m[3]
        if msg.startswith("connection received"):
            recv[pid] = t
        elif msg.startswith("connection authorized"):
            auth[pid] = t
            pm = re.search(r"protocol=(\S+), cipher=(\S+),", msg)
            if pm:
                proto.add(f"{pm[1]} {pm[2]}")
        elif msg.startswith("duration:"):
            dm = re.match(r"duration: ([\d.]+) ms  (parse|bind|execute) [^:]*: (.*)", msg)
            if dm:
                what = ("enrolment" if "enrolment(" in dm[3] else "check" if "check(" in dm[3]
                        else "outcome" if "outcome(" in dm[3] else "other")
                durs.setdefault((what, dm[2]), []).append(float(dm[1]))
        elif msg.startswith("disconnection"):
            sm = re.search(r"session time: (\d+):(\d+):([\d.]+)", msg)
            if sm:
                sess_ms.append(1000 * (int(sm[1]) * 3600 + int(sm[2]) * 60 + float(sm[3])))
    handshakes = [1000 * (auth[p] - recv[p]) for p in auth if p in recv]
    print()
    print("Server log, one host, serial (log_connections, log_min_duration_statement = 0; "
          "timestamps in ms: means of ms-rounded differences):")
    if handshakes:
        print(f"- connection received → authorized (SSLRequest, TLS handshake, startup, cert auth): "
              f"mean {statistics.mean(handshakes):.2f} ms over {len(handshakes)} connections; {', '.join(sorted(proto))}")
    if sess_ms:
        print(f"- session time (received → disconnection): mean {statistics.mean(sess_ms):.2f} ms, "
              f"p50 {pct(sess_ms, 50):.0f} ms")
    for what in ("enrolment", "check", "outcome"):
        parts = []
        for step in ("parse", "bind", "execute"):
            xs = durs.get((what, step), [])
            if xs:
                parts.append(f"{step} {statistics.mean(xs):.3f}")
        if parts:
            print(f"- {what} (server, first call in its backend), mean ms: {', '.join(parts)}")

warm = os.path.join(out, "warm.txt")
if os.path.exists(warm):
    times = re.findall(r"Time: ([\d.]+) ms", open(warm).read())
    if len(times) >= 6:
        print(f"- the same calls in one psql session: check {times[0]} / {times[1]} / {times[2]} ms "
              f"(1st / 2nd / 3rd), enrolment {times[3]} / {times[4]} ms (after check compiled "
              f"the shared helpers), enrolment alone in a new session {times[5]} ms")

pooler = os.path.join(out, "pooler-checks")  # BENCH_FLEET_POOLER=pgbouncer
if os.path.exists(pooler):
    print("\nPgBouncer (per-role pools, transaction mode), properties probed:")
    for line in open(pooler):
        print(f"- {line.rstrip()}")
