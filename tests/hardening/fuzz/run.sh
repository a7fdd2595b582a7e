#!/bin/bash
# Builds the libFuzzer targets of the sidecar's parsers with Debian's clang (-fsanitize=fuzzer,address,
# undefined; apart from the g++ build; Asio does not detect clang 14 + libstdc++ coroutines by itself, so
# they are switched on explicitly) and runs each for a bounded time from a small seed corpus.
#   bash tests/hardening/fuzz/run.sh [SECONDS_PER_TARGET (default 20)] [BUILD_DIR (default build/fuzz)]
# Exit status: 0 when every target ran its time without a finding; 1 otherwise (the crash input is kept in
# BUILD_DIR/<target>/). Prints the number of inputs each target ran.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
seconds=${1:-20}
out=${2:-$root/build/fuzz}
CXX=${CXX_FUZZ:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz: $CXX not found (apt-get install clang)" >&2; exit 2; }
mkdir -p "$out"

names=(ports endpoints durations numbers overrides http_request proxy_header)
# Seeds: valid values and near misses for each parser.
seeds_ports=("15006" "15006,15001" "*" "" "0" "65536" "80," "1,2,3")
seeds_endpoints=("127.0.0.1:8080" "[::1]:80" "::1:80" "10.0.0.1" "[fe80::1%eth0]:1" ":80")
seeds_durations=("10s" "500ms" "1h" "0" "5m" "18446744073709551615h" "1d")
seeds_numbers=("1" "256" "0x1337" "4294967295" "0" "-1")
seeds_overrides=("8080=127.0.0.1:9090" "80=[::1]:80" "http://127.0.0.1:15021/healthz/ready" "x=y:z")
seeds_proxy_header=($'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n' $'PROXY TCP6 ::1 fd00::2 1 65535\r\n'
  $'PROXY UNKNOWN\r\n' $'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n')
seeds_http_request=($'GET /stats HTTP/1.1\r\nHost: x\r\n\r\n' $'HEAD /ready?x=1 HTTP/1.0\r\n\r\n' $'GET  / HTTP/1.1\r\n\r\n' $'BREW / HTTP/2\r\n\r\n')

status=0
passed=0
failed=0
for i in "${!names[@]}"; do
  name=${names[$i]}
  bin="$out/fuzz_$name"
  "$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -DASIO_HAS_CO_AWAIT=1 -DASIO_HAS_STD_COROUTINE=1 -DPODPROXY_FUZZ_TARGET=$((i + 1)) -I"$root/examples/sidecar/src" -I"$root/include" \
    "$here/fuzz_parsers.cpp" -o "$bin" -lfmt
  corpus="$out/corpus_$name"
  mkdir -p "$corpus"
  declare -n seeds="seeds_$name"
  for j in "${!seeds[@]}"; do printf '%s' "${seeds[$j]}" >"$corpus/seed_$j"; done
  if [ "$name" = proxy_header ]; then  # binary v2 headers (NUL bytes: not in a shell string)
    printf '\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x07\xdc\x04\x01\xbbdata' >"$corpus/seed_v2_inet"
    printf '\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x05\x01\x00\x02h2' >"$corpus/seed_v2_local_tlv"
  fi
  log="$out/fuzz_$name.log"
  if (cd "$out" && "$bin" -max_total_time="$seconds" -print_final_stats=1 -max_len=512 \
        -artifact_prefix="$out/crash_${name}_" "$corpus" >"$log" 2>&1); then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz_$name: ${runs:-?} inputs in ${seconds}s, no finding"
    passed=$((passed + 1))
  else
    echo "fuzz_$name: FINDING (log: $log)" >&2
    tail -n 40 "$log" >&2
    status=1
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
exit "$status"
