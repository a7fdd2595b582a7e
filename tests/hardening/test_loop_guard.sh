# Loops: a connection whose original destination is one of the sidecar's own listeners is refused (the
# client is reset, flags=NR end=loop_refused), never relayed into itself. Dialed from another pod (through
# the capture rules) and from the app inside the pod (no capture), under both inbound policies.
source "$(dirname "$0")/../sidecar/lib.sh"
source "$(dirname "$0")/../sidecar/run_lib.sh"

make_pod_and_client
install_redirect_rules "$POD"
RESET="Ncat: Connection reset by peer."

# app_client HOST PORT: `echo ping | ncat HOST PORT` from inside the pod as an application user (uid 1000:
# not the proxy's uid, so rule 3 of the capture lets it reach the pod IP directly).
app_client() {
  echo ping | timeout 15 ip netns exec "$POD" setpriv --reuid 1000 --regid 1000 --clear-groups ncat "$1" "$2" 2>&1 || true
}

# both NAME: the counter summed over the inbound and outbound listeners.
both() { echo $(( $(stat_value "$POD" "$1" inbound) + $(stat_value "$POD" "$1" outbound) )); }
both_is() { [ "$(both "$1")" = "$2" ]; }
expect_both() {  # NAME VALUE
  wait_for 10 both_is "$1" "$2" || true
  expect_eq "$1 (inbound + outbound)" "$(both "$1")" "$2"
}

for policy in pod-ip loopback; do
  start_sidecar "$POD" "$WORK/$policy" --inbound-policy "$policy" --pod-ip "$POD_IP"
  # From the other pod: 15006 is captured (original destination POD_IP:15006); 15001 is one of the ports
  # init exempts, so it reaches the outbound listener directly.
  for port in 15006 15001; do
    expect_eq "$policy: client pod -> $POD_IP:$port" "$(client "$CLIENT" "$POD_IP" "$port")" "$RESET"
  done
  # From the app inside the pod: to the pod IP (rule 3: not captured) and to loopback (not captured):
  # straight to the listener, whose original destination is then the listener itself.
  expect_eq "$policy: app -> $POD_IP:15006" "$(app_client "$POD_IP" 15006)" "$RESET"
  expect_eq "$policy: app -> 127.0.0.1:15006" "$(app_client 127.0.0.1 15006)" "$RESET"
  expect_eq "$policy: app -> 127.0.0.1:15001" "$(app_client 127.0.0.1 15001)" "$RESET"
  expect_eq "$policy: app -> $POD_IP:15001" "$(app_client "$POD_IP" 15001)" "$RESET"
  attempts=6
  expect_both downstream_cx_loop "$attempts"
  # Never relayed: not one upstream connection was opened, and each attempt is exactly one connection
  # (a loop would have multiplied them).
  expect_both upstream_cx_total 0
  expect_both downstream_cx_total "$attempts"
  lines=$(grep -c "flags=NR end=loop_refused" "$WORK/$policy.log" || true)
  expect_eq "$policy: access-log lines with flags=NR end=loop_refused" "$lines" "$attempts"
  if [ "$policy" = pod-ip ]; then
    serve_pong "$POD" "$POD_IP" 8081 1
  else
    serve_pong "$POD" 127.0.0.1 8081 1
  fi
  wait_listen "$POD" 8081 || fail "no server on 8081"
  expect_eq "$policy: client pod -> $POD_IP:8081 afterwards" "$(client "$CLIENT" "$POD_IP" 8081)" pong
  stop_sidecar || fail "$policy: exit status $?"
done
