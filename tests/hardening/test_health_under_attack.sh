# The health endpoint (15021) keeps answering the kubelet while clients on the pod's network attack it
# (issue 17): several hundred slow connections that send an incomplete request head and hold it, opened
# again as soon as the server closes them, plus bursts of complete GETs that never read their answer.
# Meanwhile a neighbour namespace (the kubelet's place) probes GET /healthz/ready with curl and a 1 s
# timeout, as the kubelet does: at least 95% of the probes must get 200, and the sidecar's resident memory
# must stay below a bound. Everything is bounded: the attack runs ATTACK_S seconds with at most
# MAX_ATTACK_CONNECTIONS connections, the probes at most PROBES tries.
#
#   attacker ns 10.77.0.9 --+
#   prober ns   10.77.0.10 -+-- br0 (in a switch namespace) --- pod ns 10.77.0.5 (the sidecar)
source "$(dirname "$0")/../sidecar/lib.sh"
source "$(dirname "$0")/../sidecar/run_lib.sh"
command -v python3 >/dev/null || fail "python3 is missing"
if [ -n "${PODPROXY_SANITIZED:-}" ]; then
  # A rate under attack measures the build: a sanitizer build answers several times slower and its accept
  # queue fills with the attacker's connections first. The dev build's run of this test is the check.
  skip "a sanitizer build of the sidecar is too slow to hold a rate under attack; the dev build runs this test"
  exit 77
fi
ATTACK=$(dirname "$(readlink -f "$0")")/health_attack.py

ATTACK_S=24
SLOW=600
BURST=1500
MAX_ATTACK_CONNECTIONS=60000
PROBES=120
MIN_SUCCESS_PERCENT=95
# The sidecar's resident memory, sampled throughout, stays below this. Its HTTP servers hold at most a
# fixed number of connections, each with a request head of at most 8 KiB and a small coroutine frame.
RSS_LIMIT_KIB=$((32 * 1024))
PROBER_IP=10.77.0.10

POD=$(make_ns pod)
ATTACKER=$(make_ns attacker)
PROBER=$(make_ns prober)
SWITCH=$(make_ns switch)
_namespaces+=("$POD" "$ATTACKER" "$PROBER" "$SWITCH")
ip -n "$SWITCH" link add br0 type bridge
ip -n "$SWITCH" link set br0 up
for pair in "$POD:$POD_IP:p0" "$ATTACKER:$CLIENT_IP:p1" "$PROBER:$PROBER_IP:p2"; do
  IFS=: read -r ns ip port <<<"$pair"
  ip -n "$SWITCH" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$SWITCH" link set "$port" master br0 up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
done

start_sidecar "$POD" "$WORK/sidecar" --pod-ip "$POD_IP"
URL="http://$POD_IP:15021/healthz/ready"
expect_eq "the prober reaches $URL before the attack" "$(http_status "$PROBER" "$URL")" 200
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SIDECAR_PID/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SIDECAR_PID/stat"; }  # utime + stime (the name has no space)
echo "sidecar RSS before the attack: $(rss_kib) KiB"

# The attacker runs niced: on a real network it has CPUs of its own, here it shares the sidecar's.
spawn ip netns exec "$ATTACKER" nice -n 10 python3 "$ATTACK" "$POD_IP" 15021 --slow "$SLOW" --burst "$BURST" --burst-every 4 \
  --duration "$ATTACK_S" --max-connections "$MAX_ATTACK_CONNECTIONS" >"$WORK/attack.out" 2>"$WORK/attack.err"
ATTACK_PID=$SPAWNED

# Let the attack reach its full strength, then probe until it ends.
cpu_before=$(cpu_ticks) attack_started=$SECONDS
sleep 3
ok=0 tries=0 max_rss=0 max_queue=0 codes=""
probe_until=$((SECONDS + ATTACK_S - 5))
while [ "$tries" -lt "$PROBES" ] && [ "$SECONDS" -lt "$probe_until" ]; do
  out=$(ip netns exec "$PROBER" curl -s -o /dev/null -m 1 -w '%{http_code} %{time_connect} %{time_total}' "$URL" 2>/dev/null || true)
  code=${out%% *}
  tries=$((tries + 1))
  [ "$code" = 200 ] || echo "probe $tries at $((SECONDS - attack_started)) s: status, connect s, total s: $out"
  [ "$code" = 200 ] && ok=$((ok + 1))
  codes+=" $code"
  if [ $((tries % 4)) = 0 ]; then  # the listener's Recv-Q: connections waiting to be accepted
    queue=$(ip netns exec "$POD" ss -Htln 'sport = :15021' | awk '{ print $2; exit }')
    [ "${queue:-0}" -gt "$max_queue" ] && max_queue=$queue
  fi
  rss=$(rss_kib)
  [ "$rss" -gt "$max_rss" ] && max_rss=$rss
  sleep 0.05
done
wait "$ATTACK_PID" || fail "the attacker failed: $(cat "$WORK/attack.err")"
echo "attacker: $(cat "$WORK/attack.out")"
echo "sidecar CPU during the attack: $(( ($(cpu_ticks) - cpu_before) * 100 / $(getconf CLK_TCK) / (SECONDS - attack_started) ))% of one CPU"
echo "probe results:$codes"
echo "the health port's accept queue held at most $max_queue connections when sampled"
echo "probes: $ok of $tries answered 200; sidecar RSS at most $max_rss KiB during the attack, peak $(awk '/^VmHWM:/ { print $2 }' "/proc/$SIDECAR_PID/status") KiB"
[ "$tries" -ge 30 ] || fail "only $tries probes ran"
[ $((ok * 100)) -ge $((tries * MIN_SUCCESS_PERCENT)) ] ||
  fail "readiness under attack: $ok of $tries probes answered 200, want at least $MIN_SUCCESS_PERCENT%"
pass "readiness under attack: $ok of $tries probes answered 200"
[ "$max_rss" -lt "$RSS_LIMIT_KIB" ] || fail "sidecar RSS reached $max_rss KiB, want below $RSS_LIMIT_KIB KiB"
pass "sidecar RSS stayed below $RSS_LIMIT_KIB KiB ($max_rss KiB at most)"

# Afterwards it answers at once, and the admin endpoint too.
expect_eq "the prober after the attack" "$(http_status "$PROBER" "$URL")" 200
expect_eq "admin /ready after the attack" "$(ip netns exec "$POD" curl -s -m 2 http://127.0.0.1:15000/ready)" LIVE
stop_sidecar || fail "exit status $?"
