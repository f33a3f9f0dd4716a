"""Markdown table for registry results: medians (min-max) and herd/etcd ratios."""
import json, statistics, sys
from collections import defaultdict

path, title = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
rows = [json.loads(l) for l in open(path) if l.strip()]
by = defaultdict(list)
for r in rows:
    by[(r["scenario"], r["system"])].append(r)
print(f"### Registry ({title})\n")
print("| scenario | system | ops/s median (min-max) | p50 ms | p99 ms | CPU s / 100k ops | errors |")
print("|---|---|---|---|---|---|---|")
med = {}
for sc in sorted({s for s, _ in by}):
    for sysname in ["herd", "etcd"]:
        rs = by.get((sc, sysname))
        if not rs:
            continue
        v = sorted(r["rps"] for r in rs)
        m = statistics.median(v)
        med[(sc, sysname)] = m
        p50 = statistics.median(r["p50_us"] for r in rs) / 1000
        p99 = statistics.median(r["p99_us"] for r in rs) / 1000
        cpu = statistics.median(r["cpu_s_per_100k"] for r in rs)
        errs = sum(r["errors"] + r["status_errors"] for r in rs)
        print(f"| {sc} | {sysname} | {m:,.0f} ({v[0]:,.0f}-{v[-1]:,.0f}) | {p50:.2f} | {p99:.2f} | {cpu:.2f} | {errs} |")
print()
print("| scenario | herd / etcd throughput |")
print("|---|---|")
for sc in sorted({s for s, _ in by}):
    if (sc, "herd") in med and (sc, "etcd") in med:
        print(f"| {sc} | {med[(sc, 'herd')] / med[(sc, 'etcd')]:.2f}× |")
