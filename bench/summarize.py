"""Turn results.jsonl into the Markdown tables of docs/BENCHMARKS.md: medians with min-max,
and herd's ratios to HAProxy and nginx measured in the same run."""
import json, statistics, sys
from collections import defaultdict

path, title = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
rows = [json.loads(l) for l in open(path) if l.strip()]
by = defaultdict(list)
for r in rows:
    by[(r["scenario"], r["system"])].append(r)

ORDER = ["ka64", "ka256", "default64", "default256", "ka10k", "close", "1m", "https", "h2", "tcp", "idle", "idle-tls", "idle-h2"]

def stat(vals):
    vals = sorted(vals)
    return statistics.median(vals), vals[0], vals[-1]

def ms(v):
    return "n/a" if not v else f"{v / 1000:.2f}"

print(f"### Gateway ({title})\n")
print("| scenario | system | req/s median (min-max) | p50 ms | p99 ms | p99.9 ms | CPU s / 100k req | RSS MiB | errors |")
print("|---|---|---|---|---|---|---|---|---|")
scenarios = sorted({s for s, _ in by}, key=lambda s: ORDER.index(s) if s in ORDER else 99)
ratios = []
for sc in scenarios:
    if sc.startswith("idle"):
        continue
    med = {}
    for sysname in ["herd", "haproxy", "nginx", "direct"]:
        rs = by.get((sc, sysname))
        if not rs:
            continue
        m, lo, hi = stat([r["rps"] for r in rs])
        p50 = stat([r["p50_us"] for r in rs])[0]
        p99 = stat([r["p99_us"] for r in rs])[0]
        p999 = stat([r["p999_us"] for r in rs])[0]
        cpu = stat([r["cpu_s_per_100k"] for r in rs])[0]
        rss = stat([r["rss_kib"] for r in rs])[0] / 1024
        errs = sum(r["errors"] + r["status_errors"] for r in rs)
        med[sysname] = dict(rps=m, cpu=cpu, p99=p99, p50=p50)
        p50_label = ms(p50) + (" (mean)" if rs[0].get("mean_only") else "")
        print(f"| {sc} | {sysname} | {m:,.0f} ({lo:,.0f}-{hi:,.0f}) | {p50_label} | {ms(p99)} | {ms(p999)} | {cpu:.2f} | {rss:.1f} | {errs} |")
    if "herd" in med:
        for other in ["haproxy", "nginx"]:
            if other in med:
                o, h = med[other], med["herd"]
                lat_key = "p99" if h["p99"] and o["p99"] else "p50"
                ratios.append((sc, other, h["rps"] / o["rps"],
                               h["cpu"] / o["cpu"] if o["cpu"] else float("nan"),
                               h[lat_key] / o[lat_key] if o[lat_key] else float("nan"),
                               lat_key if lat_key == "p99" else "mean"))
print()
print("| scenario | herd / … | throughput | CPU per request | latency (p99, or mean for h2) |")
print("|---|---|---|---|---|")
for sc, other, t, c, p, k in ratios:
    print(f"| {sc} | {other} | {t:.2f}× | {c:.2f}× | {p:.2f}× ({k}) |")
# Where the CPU goes: user space (the proxy's own code) and the kernel (its syscalls and
# the loopback TCP work they do), in microseconds per request.
split = [(sc, sysname, rs) for sc in scenarios if not sc.startswith("idle")
         for sysname in ["herd", "haproxy", "nginx"]
         for rs in [by.get((sc, sysname))] if rs and all("sys_s_per_100k" in r for r in rs)]
if split:
    print()
    print("| scenario | system | user µs / req | kernel µs / req | kernel share |")
    print("|---|---|---|---|---|")
    for sc, sysname, rs in split:
        total = stat([r["cpu_s_per_100k"] for r in rs])[0] * 10
        kernel = stat([r["sys_s_per_100k"] for r in rs])[0] * 10
        print(f"| {sc} | {sysname} | {total - kernel:.1f} | {kernel:.1f} | {kernel / total:.0%} |")
# Only the first idle round counts: memory a process touched for the first N connections
# stays resident (allocators keep it), so later rounds reuse it and read near zero.
idle = [r for r in rows if r["scenario"].startswith("idle") and r["round"] == 1]
if idle:
    print()
    print("| idle keep-alive connections (first round) | system | connections | RSS before MiB | RSS holding them MiB | KiB per connection |")
    print("|---|---|---|---|---|---|")
    for sc in [s for s in ORDER if s.startswith("idle")]:
        for sysname in ["herd", "haproxy", "nginx"]:
            for r in (r for r in idle if r["system"] == sysname and r["scenario"] == sc):
                print(f"| {sc} | {sysname} | {r['conns']} | {r['rss_before_kib'] / 1024:.1f} | {r['rss_after_kib'] / 1024:.1f} | {r['kib_per_conn']:.1f} |")

sys_rows = [(sc, sysname, rs) for sc in scenarios for sysname in ["herd", "haproxy", "nginx"]
            for rs in [by.get((sc, sysname))] if rs and all("syscalls_per_req" in r for r in rs)]
if sys_rows:
    names = ["total"] + sorted({k for _, _, rs in sys_rows for r in rs for k, v in r["syscalls_per_req"].items()
                                if k != "total" and v >= 0.01})
    print()
    print("System calls per request (perf stat on the syscall tracepoints; median of the rounds):")
    print()
    print("| scenario | system | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for sc, sysname, rs in sys_rows:
        cells = [f"{stat([r['syscalls_per_req'].get(n, 0.0) for r in rs])[0]:.2f}" for n in names]
        print(f"| {sc} | {sysname} | " + " | ".join(cells) + " |")
