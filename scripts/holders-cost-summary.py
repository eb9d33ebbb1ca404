#!/usr/bin/env python3
"""What holder attribution costs, from holders-cost-guest.sh's runs: per workload and build
(off / on / measured / stacks), rmapprof's BPF ns per contended i_mmap_rwsem acquisition (every
program's run time over the i_mmap_rwsem slowpaths counted), and each program's mean.
usage: holders-cost-summary.py OUTDIR"""
import glob
import json
import os
import sys
from collections import defaultdict

out = sys.argv[1]
runs = defaultdict(list)
for path in sorted(glob.glob(os.path.join(out, "*-*-*", "report.json"))):
    build, workload, _ = os.path.basename(os.path.dirname(path)).split("-")
    r = json.load(open(path))
    slowpaths = sum(f.get("slowpaths") or 0 for f in r["files"])
    cost = {p["program"]: (p["runs"], p["ns"]) for p in r.get("bpf_cost") or []}
    total = sum(ns for _, ns in cost.values())
    timed = None
    tpath = os.path.join(os.path.dirname(path), "holder-cost.txt")
    if os.path.exists(tpath):
        # "N holder reads in NS ns, M records in NS ns, C ns of it the clock's own"
        w = open(tpath).read().replace(",", "").split()
        nums = [int(x) for x in w if x.isdigit()]
        if len(nums) == 5:
            timed = nums
    runs[(workload, build)].append((slowpaths, total, cost, timed))

programs = sorted({p for v in runs.values() for _, _, c, _ in v for p in c})
print("| workload | build | runs | i_mmap slowpaths | BPF ns per slowpath | " + " | ".join(programs) + " |")
print("| --- " * (5 + len(programs)) + "|")
timings = []
for (workload, build) in sorted(runs, key=lambda k: (k[0], ["off", "on", "measured", "stacks"].index(k[1]))):
    v = runs[(workload, build)]
    slow = sum(s for s, _, _, _ in v)
    per = sum(t for _, t, _, _ in v) / slow if slow else float("nan")
    for s, t, _, timed in v:
        if timed:
            timings.append((workload, s, t, timed))
    means = []
    for p in programs:
        n = sum(c.get(p, (0, 0))[0] for _, _, c, _ in v)
        ns = sum(c.get(p, (0, 0))[1] for _, _, c, _ in v)
        means.append(f"{ns / n:.0f}" if n else "-")
    print(f"| {workload} | {build} | {len(v)} | {slow} | {per:.0f} | " + " | ".join(means) + " |")

if timings:
    print()
    print("Timed by its own clock reads (RMAPPROF_MEASURE_HOLDERS=1), clock cost subtracted:")
    print("| workload | slowpaths | holder reads | records | holder ns per read+record | BPF ns per slowpath, less the clocks | share |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for workload, slow, total, (reads, read_ns, records, record_ns, clock_ns) in timings:
        holder = read_ns + record_ns - clock_ns
        base = total - clock_ns * 3  # three clock reads per timed section, each about one interval
        per_wait = holder / max(reads, 1)
        share = holder / (base - holder) if base > holder else float("nan")
        print(f"| {workload} | {slow} | {reads} | {records} | {per_wait:.0f} | {base / max(slow, 1):.0f} | {share:.1%} |")
