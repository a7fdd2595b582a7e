#!/bin/bash
# bench/compare_tools.py report on results made up for the test: each cell is the median of the per-round
# ratios with their range, a podproxy/peer ratio is taken inside each round before the median, a failed
# measurement is left out and listed, and the goals table counts the rounds that met each goal, also for the
# head-to-head runs (podproxy's two runs over HAProxy's two, per round); the 2-thread goal says whether one
# thread bounded the 4-stream runs (its CPU, iperf3's, the machine's CPU count). A relay mode and a goal
# added to the setup (bench/compare_setup.json) appear in the report with no code changed. Then
# bench/compare and bench/cpu_split refuse bad settings (a bad setup file too) with exit status 2 before
# they install, build or start anything.
set -uo pipefail
bench=$1
tmp=$(mktemp -d /tmp/podproxy-compare-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
check() {  # description, then a command that must succeed
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; failures=$((failures + 1)); fi
}
has() { grep -qF -- "$2" "$1"; }

python3 - "$tmp/results.jsonl" <<'PY'
import json, sys
# direct 10 everywhere; podproxy-splice proxied 7, 8, 9 -> 0.70, 0.80, 0.90; haproxy 5, 8, 6 -> 0.5, 0.8, 0.6.
# Per round podproxy/haproxy 1.4, 1.0, 1.5: median 1.40, whereas the medians' ratio would be 0.80/0.60=1.33.
pod, hap = [7, 8, 9], [5, 8, 6]
with open(sys.argv[1], "w") as f:
    def put(rnd, proxy, test, direct, proxied):
        f.write(json.dumps({"round": rnd, "proxy": proxy, "test": test, "direct": direct, "proxied": proxied}) + "\n")
    for rnd in (1, 2, 3):
        for proxy, got in (("podproxy-splice", pod), ("haproxy", hap)):
            x = got[rnd - 1]
            put(rnd, proxy, "iperf1", {"bps": 10, "bytes": 1e9}, {"bps": x, "bytes": 1e9, "proxy_cpu_s": x / 10})
            # 4 streams, 5 s (bytes * 8 / bps = 5 too): podproxy-splice busy 0.50, 0.60, 0.95 of one CPU.
            iperf4 = {"bps": x, "bytes": 5 * x / 8, "seconds": 5, "proxy_cpu_s": [2.5, 3.0, 4.75][rnd - 1],
                      "client_cpu_pct": [70, 74, 80][rnd - 1], "server_cpu_pct": [50, 55, 60][rnd - 1]}
            put(rnd, proxy, "iperf4", {"bps": 10, "bytes": 1e9}, iperf4)
            close = {"error": "no Requests/sec in wrk output"} if (proxy, rnd) == ("haproxy", 2) else {"rps": x}
            put(rnd, proxy, "wrk_close", {"rps": 10}, close)
            put(rnd, proxy, "wrk_keepalive", {"rps": 10, "p99_us": 100}, {"rps": x, "p99_us": 10 * x})
        # 2 threads, 4 streams: 7, 10, 9 against the 1-thread 7, 8, 9 -> 1.00, 1.25, 1.00 (1 of 3 above 1.0).
        put(rnd, "podproxy-splice-2t", "iperf4", {"bps": 10, "bytes": 1e9}, {"bps": [7, 10, 9][rnd - 1], "bytes": 1e9})
    # Head to head, per round: podproxy's two runs summed over HAProxy's two.
    # close: 18/18 = 1.00, 22/20 = 1.10, round 3 has a failed HAProxy run (left out, listed).
    # keep-alive rps 18/20 = 0.90 each round; p99 220/200 = 1.10, 180/200 = 0.90, 180/200 = 0.90.
    failed = {"error": "no Requests/sec in wrk output"}
    close = {1: ([8, 10], [9, 9]), 2: ([10, 12], [10, 10]), 3: ([10, 10], [10, None])}
    p99 = {1: ([100, 120], [100, 100]), 2: ([90, 90], [100, 100]), 3: ([80, 100], [100, 100])}
    for rnd in (1, 2, 3):
        runs = lambda xs: [{"rps": x} if x is not None else failed for x in xs]
        mine, peer = close[rnd]
        f.write(json.dumps({"round": rnd, "proxy": "podproxy-splice", "peer": "haproxy", "test": "h2h_wrk_close",
                            "mine_runs": runs(mine), "peer_runs": runs(peer)}) + "\n")
        mine, peer = p99[rnd]
        f.write(json.dumps({"round": rnd, "proxy": "podproxy-splice", "peer": "haproxy", "test": "h2h_wrk_keepalive",
                            "mine_runs": [{"rps": 9, "p99_us": x} for x in mine],
                            "peer_runs": [{"rps": 10, "p99_us": x} for x in peer]}) + "\n")
    put(1, "podproxy-splice", "idle", {}, {"bytes_per_conn": 700, "pipes_added": 0})
    put(1, "haproxy", "idle", {}, {"bytes_per_conn": 3300, "pipes_added": 0})
PY
mkdir -p "$tmp/out"
echo "nproc: 2" >"$tmp/out/machine.txt"  # bench/compare writes it there before the report
python3 "$bench/compare_tools.py" report "$tmp/results.jsonl" "$tmp/out" >"$tmp/report.txt" 2>"$tmp/report.err"
check "report exits 0" test $? -eq 0
cat "$tmp/report.txt"
md=$tmp/out/compare.md
check "compare.md written" test -s "$md"
check "median of 3 rounds said" has "$md" "Median of 3 rounds"
check "podproxy 1-stream median and range" has "$md" "| podproxy-splice | 0.80 (0.70-0.90) | 0.80 (0.70-0.90) | 0.80 (0.70-0.90) |"
check "haproxy 1-stream median and range" has "$md" "| haproxy | 0.60 (0.50-0.80) |"
check "podproxy/haproxy ratio taken within each round" has "$md" "| podproxy-splice | haproxy | 1.40 (1.00-1.50) |"
check "failed round left out (median of two rounds)" has "$md" "| 0.55 (0.50-0.60) | 0.60 (0.50-0.80) |"
check "failed round listed" has "$md" "- haproxy wrk_close round 2 proxied: no Requests/sec in wrk output"
check "goal met by the median, 2 rounds of 3" has "$md" "| 1-stream throughput >= 1.2x HAProxy | 1.40 (1.00-1.50) | yes | 2 of 3 |"
check "CPU goal missed" has "$md" "| proxy CPU-s per GB <= 0.6x HAProxy's | 1.40 (1.00-1.50) | no | 0 of 3 |"
check "short connections over the two rounds measured" has "$md" "| short-connection rate >= 1.0x HAProxy | 1.45 (1.40-1.50) | yes | 2 of 2 |"
check "p99 compared in microseconds" has "$md" "| keep-alive p99 no worse than HAProxy's (p99 us, same round) | 1.40 (1.00-1.50) | no | 1 of 3 |"
check "head to head: short connections, round 3 left out" has "$md" \
  "| short-connection rate >= 1.0x HAProxy, head to head | 1.05 (1.00-1.10) | yes | 2 of 2 |"
check "head to head: keep-alive rate" has "$md" "| keep-alive request rate >= 1.0x HAProxy, head to head | 0.90 | no | 0 of 3 |"
check "head to head: p99" has "$md" "| keep-alive p99 no worse than HAProxy's, head to head | 0.90 (0.90-1.10) | yes | 2 of 3 |"
check "head to head: the failed run listed" has "$md" \
  "- podproxy-splice h2h_wrk_close round 3 haproxy run 2: no Requests/sec in wrk output"
check "json has the head-to-head goals" python3 -c "import json,sys; d=json.load(open('$tmp/out/compare.json')); \
sys.exit(0 if abs(d['head_to_head']['h2h_wrk_close:rps']['median'] - 1.05) < 1e-9 else 1)"
check "idle goal" has "$md" "| idle connection <= 1 KiB user space and no pipe | 700 B, 0 pipes | yes | 1 of 1 |"
check "2-thread goal: 2t over 1t per round" has "$md" \
  "| 2 threads: 4-stream throughput above 1 thread (2t / 1t) | 1.00 (1.00-1.25) | no | 1 of 3 |"
check "2-thread goal: the 1-thread proxy's CPU, iperf3's, the machine's CPUs" has "$md" \
  "the 1-thread podproxy-splice was busy 0.60 (0.50-0.95) of one CPU; iperf3's client used 74 (70-80)"
check "2-thread goal: iperf3's server" has "$md" \
  "and its server 55 (50-60) percent of one CPU (each is single-threaded); the machine has 2 CPUs"
check "2-thread goal: not bound by one thread" has "$md" "One thread was not the bottleneck (below 0.9 of a CPU)"
check "json: one thread's busy fraction" python3 -c "import json,sys; d=json.load(open('$tmp/out/compare.json')); \
t=d['one_thread_4_streams']; sys.exit(0 if abs(t['busy_median'] - 0.6) < 1e-9 and t['proxy_bound'] is False and t['cpus'] == 2 else 1)"
check "json has the rounds" python3 -c "import json,sys; d=json.load(open('$tmp/out/compare.json')); sys.exit(0 if d['rounds']==3 and len(d['proxies']['haproxy']['rounds'])==3 else 1)"

# One round: plain figures, no ranges.
grep '"round": 1' "$tmp/results.jsonl" >"$tmp/one.jsonl"
python3 "$bench/compare_tools.py" report "$tmp/one.jsonl" "$tmp/out" >/dev/null 2>&1
check "one round: no range" has "$md" "| podproxy-splice | 0.70 | 0.70 | 0.70 |"

# Results from before the head-to-head runs existed: no head-to-head rows.
grep -v h2h_ "$tmp/results.jsonl" >"$tmp/old.jsonl"
python3 "$bench/compare_tools.py" report "$tmp/old.jsonl" "$tmp/out" >/dev/null 2>&1
check "old results: report exits 0" test $? -eq 0
check "old results: no head-to-head rows" bash -c "! grep -q 'head to head' '$md'"
check "old results: the other goals still there" has "$md" "| 1-stream throughput >= 1.2x HAProxy | 1.40 (1.00-1.50) | yes | 2 of 3 |"

# One thread busy 0.95-1.0 of a CPU: it bounds the 4-stream figure, and the goal is read as measured.
python3 - "$tmp/results.jsonl" "$tmp/bound.jsonl" <<'PY'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for line in f:
        r = json.loads(line)
        if r["test"] == "iperf4" and r["proxy"] == "podproxy-splice":
            r["proxied"]["proxy_cpu_s"] = {1: 4.75, 2: 4.9, 3: 5.0}[r["round"]]
        out.write(json.dumps(r) + "\n")
PY
python3 "$bench/compare_tools.py" report "$tmp/bound.jsonl" "$tmp/out" >/dev/null 2>&1
check "bound by one thread: said so" has "$md" "busy 0.98 (0.95-1.00) of one CPU"
check "bound by one thread: read as measured" has "$md" "One thread was the bottleneck: the goal is read as measured."

# Results from before iperf3's seconds and CPU were kept: the seconds from bytes over rate, no iperf3 CPU.
python3 - "$tmp/results.jsonl" "$tmp/noseconds.jsonl" <<'PY'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for line in f:
        r = json.loads(line)
        for key in ("seconds", "client_cpu_pct", "server_cpu_pct"):
            r.get("proxied", {}).pop(key, None)
        out.write(json.dumps(r) + "\n")
PY
rm "$tmp/out/machine.txt"
python3 "$bench/compare_tools.py" report "$tmp/noseconds.jsonl" "$tmp/out" >/dev/null 2>&1
check "older results: busy from bytes over rate, nothing on iperf3 or the CPU count" has "$md" \
  "was busy 0.60 (0.50-0.95) of one CPU. One thread was not the bottleneck"

# The setup is data: a relay mode and a goal added to a copy of compare_setup.json show up in the report with
# no code changed; the added goal, which the results miss, is reported as missed.
python3 - "$bench/compare_setup.json" "$tmp/setup.json" "$tmp/results.jsonl" "$tmp/mode.jsonl" <<'PY'
import json, sys
setup = json.load(open(sys.argv[1]))
setup["proxies"].insert(1, {"name": "podproxy-newmode", "podproxy": True,
                            "command": ["{tcp_proxy}", "--relay", "newmode", "--listen", "127.0.0.1:{port}"]})
setup["goals"]["per_round"].append({"title": "keep-alive request rate >= 1.5x HAProxy", "metric": "ka_rate",
                                    "op": ">=", "bound": 1.5})
json.dump(setup, open(sys.argv[2], "w"))
with open(sys.argv[3]) as f, open(sys.argv[4], "w") as out:
    for line in f:
        out.write(line)
        r = json.loads(line)
        if r["proxy"] == "podproxy-splice" and "direct" in r:  # the new mode measures like podproxy-splice
            out.write(json.dumps(dict(r, proxy="podproxy-newmode")) + "\n")
PY
echo "nproc: 2" >"$tmp/out/machine.txt"
python3 "$bench/compare_tools.py" report --setup "$tmp/setup.json" "$tmp/mode.jsonl" "$tmp/out" >/dev/null 2>&1
check "added mode: report exits 0" test $? -eq 0
check "added mode: its row, in the setup's order" bash -c \
  "grep -A1 '^| podproxy-splice | 0.80' '$md' | grep -q '^| podproxy-newmode | 0.80 (0.70-0.90) |'"
check "added mode: against each peer" has "$md" "| podproxy-newmode | haproxy | 1.40 (1.00-1.50) |"
check "added goal: missed, and said so" has "$md" "| keep-alive request rate >= 1.5x HAProxy | 1.40 (1.00-1.50) | no | 1 of 3 |"
check "the default setup has no such mode" bash -c \
  "python3 '$bench/compare_tools.py' report '$tmp/mode.jsonl' '$tmp/out' >/dev/null 2>&1; ! grep -q newmode '$md'"
check "added mode: its command with the port filled in" bash -c \
  "python3 '$bench/compare_tools.py' command podproxy-newmode --setup '$tmp/setup.json' --port 21001 --upstream 21000 \
   --tmp /t --tcp-proxy /b/podproxy-tcp --bench-proxy /b/bp | tr '\n' ' ' | grep -qx '/b/podproxy-tcp --relay newmode --listen 127.0.0.1:21001 '"
check "the setup's proxies in order" bash -c \
  "python3 '$bench/compare_tools.py' proxies --setup '$tmp/setup.json' | head -2 | tr '\n' ' ' | grep -qx 'podproxy-splice podproxy-newmode '"
python3 -c "import json,sys; s=json.load(open(sys.argv[1])); s['goals']['per_round'][0]['op']='=>'; json.dump(s, open(sys.argv[2],'w'))" \
  "$bench/compare_setup.json" "$tmp/badop.json"
python3 "$bench/compare_tools.py" report --setup "$tmp/badop.json" "$tmp/results.jsonl" "$tmp/out" >/dev/null 2>"$tmp/badop.err"
check "a goal with an unknown comparison refused with exit 2" test $? -eq 2
check "the goal and its comparison named" has "$tmp/badop.err" "has op '=>'"

# Bad settings: exit 2, the message names the setting, nothing started.
for setting in COMPARE_ROUNDS=0 COMPARE_SECONDS=abc COMPARE_IDLE=-5 COMPARE_SETUP=/nonexistent.json \
               COMPARE_SETUP=$tmp/badop.json; do
  env "$setting" bash "$bench/compare" >"$tmp/bad.out" 2>"$tmp/bad.err"
  status=$?
  check "$setting refused with exit 2" test "$status" -eq 2
  check "$setting named in the message" has "$tmp/bad.err" "${setting%%=*}"
done

for setting in CPU_SPLIT_ROUNDS=0 CPU_SPLIT_SECONDS=abc CPU_SPLIT_BASELINE=/nonexistent/podproxy-tcp \
               CPU_SPLIT_BASELINE=$tmp/bad.err `# exists, not executable` \
               CPU_SPLIT_CPUS=abc "CPU_SPLIT_CPUS=0;true" CPU_SPLIT_CPUS=4095; do  # no such CPU here
  env "$setting" bash "$bench/cpu_split" >"$tmp/bad.out" 2>"$tmp/bad.err.txt"
  status=$?
  check "$setting refused with exit 2" test "$status" -eq 2
  check "$setting named in the message" has "$tmp/bad.err.txt" "${setting%%=*}"
done

if ((failures)); then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
