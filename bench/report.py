#!/usr/bin/env python3
"""report.py WORKDIR — the markdown table of a bench/run.sh run, with ratios and targets."""
import glob
import os
import re
import sys

NAMES = {"ours": "pam_totp", "ga": "pam_google_authenticator", "oath": "pam_oath"}
MODULES = ["ours", "ga", "oath"]


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(p * (len(sorted_vals) - 1) + 0.5))]


def main():
    work = sys.argv[1]
    meta = open(os.path.join(work, "meta.txt")).read().strip()
    pops = {}
    nss = {}
    for line in meta.splitlines():
        m = re.match(r"nss: ([\d,]+) users: (known|unknown)", line)
        if m:
            nss.setdefault(int(m.group(1).replace(",", "")), set()).add(m.group(2))
        m = re.match(r"extra module (extra\d+): (.*) \(", line)
        if m:
            NAMES[m.group(1)] = m.group(2)
            MODULES.insert(MODULES.index("ga"), m.group(1))
        m = re.search(r"small=(\d+) large=(\d+)", line)
        if m:
            pops = {"small": int(m.group(1)), "large": int(m.group(2))}
    cells = {}
    for path in glob.glob(os.path.join(work, "raw.*")):
        _, pop, sc, mod = os.path.basename(path).split(".")
        vals = sorted(float(x) for x in open(path) if x.strip())
        total = sum(vals) / 1000.0
        cells[(pop, sc, mod)] = {
            "n": len(vals),
            "rate": len(vals) / total if total else float("nan"),
            "p50": pct(vals, 0.50),
            "p99": pct(vals, 0.99),
        }
    unexpected = 0
    results = open(os.path.join(work, "results.txt")).read()
    for line in results.splitlines():
        m = re.match(r"CALLGRIND (\w+) (\w+) (\w+) (\d+) (\d+)", line)
        if m:
            pop, sc, mod, k, ir = m.groups()
            cells.setdefault((pop, sc, mod), {})["ir"] = int(ir) / int(k)
        m = re.search(r"unexpected=(\d+)", line)
        if m:
            unexpected += int(m.group(1))

    out = ["```", meta, "```", ""]
    out.append("| users | scenario | module | logins | logins/s | p50 ms | p99 ms | instructions/login |")
    out.append("|---:|---|---|---:|---:|---:|---:|---:|")
    for pop in ("small", "large"):
        for sc in ("valid", "wrong"):
            for mod in MODULES:
                c = cells.get((pop, sc, mod))
                if not c:
                    continue
                ir = c.get("ir")
                out.append(
                    f"| {pops.get(pop, pop):,} | {sc} | {NAMES[mod]} | {c.get('n', 0)} | "
                    f"{c.get('rate', float('nan')):.0f} | {c.get('p50', float('nan')):.2f} | "
                    f"{c.get('p99', float('nan')):.2f} | "
                    + (f"{ir / 1000:,.0f} k" if ir else "-")
                    + " |"
                )
    out.append("")

    def rate(pop, sc, mod):
        return cells.get((pop, sc, mod), {}).get("rate", float("nan"))

    def ir(pop, sc, mod):
        return cells.get((pop, sc, mod), {}).get("ir", float("nan"))

    checks = []
    for mod in [m for m in MODULES if m not in ("ga", "oath")]:
        name = NAMES[mod]
        for pop in ("small", "large"):
            r = rate(pop, "valid", mod) / rate(pop, "valid", "ga")
            checks.append((f"valid code, {pops.get(pop):,} users: {name} / google-authenticator throughput",
                           r, 1.0, ir(pop, "valid", "ga") / ir(pop, "valid", mod), False))
        for pop in ("small", "large"):
            r = rate(pop, "wrong", mod) / rate(pop, "wrong", "ga")
            checks.append((f"wrong code, {pops.get(pop):,} users: {name} / google-authenticator throughput",
                           r, 4.0, ir(pop, "wrong", "ga") / ir(pop, "wrong", mod), False))
        # A valid login looks the user up (a wrong one does not): populations that NSS sees
        # differently (BENCH_NSS=1) do not compare on valid codes.
        same_nss = nss.get(pops.get("small")) == nss.get(pops.get("large"))
        for sc in ("valid", "wrong"):
            r = rate("large", sc, mod) / rate("small", sc, mod)
            checks.append((f"{name} {sc} code: {pops.get('large'):,} users / {pops.get('small'):,} users throughput",
                           r, 0.9, ir("small", sc, mod) / ir("large", sc, mod),
                           sc == "valid" and not same_nss))
    out.append("| ratio | measured | target | same ratio in instructions | |")
    out.append("|---|---:|---:|---:|---|")
    for name, r, target, irr, apart in checks:
        if apart:
            verdict = "not comparable: NSS knows one population, not the other (BENCH_NSS=0 or all)"
        else:
            verdict = "met" if r >= target else "**missed**"
        out.append(f"| {name} | {r:.2f} | ≥ {target:.1f} | {irr:.2f} | {verdict} |")
    if unexpected:
        out.append("")
        out.append(f"**{unexpected} logins gave an unexpected result** (see results.txt)")
    print("\n".join(out))


if __name__ == "__main__":
    main()
