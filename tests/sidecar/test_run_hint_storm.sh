# A storm of refused connections (thousands per second, bounded: 20,000 connections or 4 s) through the
# sidecar to a port nothing listens on: every one is reset and hinted "nothing listens on 8090", while the
# pod's listeners are looked at no more than once per second (upstream_hint_snapshots stays within the
# storm's seconds + 1), and the sidecar stays healthy (ready, and a working port still answers).
# How much CPU the hints cost is bench/hint_storm's to measure, not a test's to assert.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"
command -v python3 >/dev/null || fail "python3 is missing"
STORM="$(dirname "$0")/refused_storm.py"

make_pod_and_client
install_redirect_rules "$POD"
serve_pong "$POD" 0.0.0.0 8081 1
wait_listen "$POD" 8081 || fail "no server on 8081"
start_sidecar "$POD" "$WORK/storm"

result=$(ip netns exec "$CLIENT" timeout 30 python3 "$STORM" "$POD_IP" 8090 --count 20000 --seconds 4 --concurrency 64)
echo "storm: $result"
ended=$(sed -E 's/.*ended=([0-9]+).*/\1/' <<<"$result")
reset=$(sed -E 's/.*reset=([0-9]+).*/\1/' <<<"$result")
# One look per started second of the storm, and one more for connects that failed just after it.
elapsed=$(($(sed -E 's/.*seconds=([0-9]+).*/\1/' <<<"$result") + 2))
[ "$ended" -gt 100 ] || fail "the storm ended only $ended connections: $result"  # a storm happened; its rate is not asserted
expect_eq "every storm connection was reset" "$reset" "$ended"

# The connects still in flight when the storm stopped failed too: count from the sidecar's side.
expect_stat "$POD" downstream_cx_active inbound 0
failed=$(stat_value "$POD" upstream_cx_connect_fail inbound)
[ "$failed" -ge "$ended" ] || fail "upstream_cx_connect_fail is $failed, fewer than the $ended resets"
expect_stat "$POD" upstream_cx_hint_nothing_listens inbound "$failed"
lines=$(grep -c " -> $POD_IP:8090 .* hint=\"nothing listens on 8090\"$" "$WORK/storm.log" || true)
expect_eq "access-log lines with the hint" "$lines" "$failed"
snapshots=$(stat_value "$POD" upstream_hint_snapshots inbound)
[ "$snapshots" -ge 1 ] && [ "$snapshots" -le "$elapsed" ] ||
  fail "$snapshots looks at the listeners for a storm of $ended connections over at most $elapsed s"
pass "$snapshots look(s) at the listeners for $ended refused connections over at most $elapsed s"

expect_eq "ready after the storm" "$(http_status "$POD" http://127.0.0.1:15021/healthz/ready)" 200
expect_eq "a working port after the storm" "$(client "$CLIENT" "$POD_IP" 8081)" pong
stop_sidecar || fail "the sidecar did not exit 0 after the storm"
