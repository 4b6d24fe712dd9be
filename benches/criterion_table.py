#!/usr/bin/env python3
"""Print the last `cargo bench` run as a table: median time per iteration
and throughput in MB/s (10^6 bytes per second), from criterion's saved
estimates under target/criterion."""
import glob
import json
import os

for path in sorted(glob.glob("target/criterion/**/new/benchmark.json", recursive=True)):
    bench = json.load(open(path))
    est = json.load(open(os.path.join(os.path.dirname(path), "estimates.json")))
    ns = est["median"]["point_estimate"]
    size = (bench.get("throughput") or {}).get("Bytes")
    rate = f"{size / ns * 1e3:9.1f} MB/s" if size else ""
    print(f"| {bench['full_id']} | {ns:,.0f} ns | {rate} |")
