#!/bin/bash
# The microbenchmarks (podproxy_bench) run, briefly, and every one of them completes: none ends with
# SkipWithError (a refused connect, a short read, a wrong reply, an idle connection holding a pipe, a proxy
# child that does not hold every connection) and each family reports its counters. Timings are not checked:
# the machine is shared; the figures are for bench/README.md, not for a test.
set -uo pipefail
bench=$1
tmp=$(mktemp -d /tmp/podproxy-micro-smoke.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# --benchmark_min_time is a floor that the benchmarks which set their own (0.5 s) keep; bounded overall.
timeout 900 "$bench" --benchmark_min_time=0.01 --benchmark_out="$tmp/micro.json" --benchmark_out_format=json \
  >"$tmp/micro.txt" 2>&1
status=$?
if ((status != 0)); then
  cat "$tmp/micro.txt"
  echo "FAILED: podproxy_bench exited with status $status"
  exit 1
fi
python3 - "$tmp/micro.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
failures = []
def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what)
    if not ok:
        failures.append(what)
for run in runs:
    check(not run.get("error_occurred", False),
          f'{run["name"]} completed' + (f' (error: {run.get("error_message")})' if run.get("error_occurred") else ""))
def family(prefix):
    return [r for r in runs if r["name"].startswith(prefix) and not r.get("error_occurred", False)]
expected = {
    "Throughput/direct": ["bytes_per_second"],
    "Throughput/splice": ["bytes_per_second", "proxy_cpu_s_per_GiB", "pipe_capacity_KiB"],
    "Throughput/buffered": ["bytes_per_second", "proxy_cpu_s_per_GiB"],
    "ConnectionRate/direct": ["connections_per_s"],
    "ConnectionRate/splice": ["connections_per_s", "proxy_cpu_us_per_conn"],
    "ConnectionRate/buffered": ["connections_per_s", "proxy_cpu_us_per_conn"],
    "RoundTrip64/direct": ["p50_us", "p99_us"],
    "RoundTrip64/splice": ["p50_us", "p99_us", "proxy_cpu_us_per_rt"],
    "RoundTrip64/buffered": ["p50_us", "p99_us", "proxy_cpu_us_per_rt"],
    "IdleConnections/splice": ["rss_B_per_conn", "heap_B_per_conn", "pipes_lent", "connections"],
    "IdleConnections/buffered": ["rss_B_per_conn", "heap_B_per_conn", "pipes_lent", "connections"],
}
for prefix, counters in expected.items():
    found = family(prefix)
    check(bool(found), f"{prefix}: ran")
    for r in found:
        missing = [c for c in counters if not isinstance(r.get(c), (int, float)) or r.get(c) < 0]
        check(not missing, f'{r["name"]}: counters {", ".join(counters)}' + (f" (missing: {missing})" if missing else ""))
        if "bytes_per_second" in counters:
            check(r["bytes_per_second"] > 0, f'{r["name"]}: moved bytes')
for r in family("IdleConnections/"):
    check(r["pipes_lent"] == 0, f'{r["name"]}: idle connections hold no pipe')
    check(r["connections"] == 8000, f'{r["name"]}: the proxy holds all 8000 connections')
sizes = {r["name"].split("/")[2] for r in family("Throughput/splice/")}
check(len(sizes) >= 4, f"Throughput/splice: several transfer sizes ran ({sorted(sizes)})")
print(f"{len(failures)} check(s) failed" if failures else "all checks passed")
sys.exit(1 if failures else 0)
PY
