# run: inbound capture through both policies and through a per-port default endpoint (the seed's table).
# A server bound to 127.0.0.1:8080 (netcat-lo) and one bound to the pod IP on 8081 (netcat-eth0) in the pod
# namespace; ncat in the client namespace dials the pod IP; the capture rules send it to the sidecar.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

make_pod_and_client
install_redirect_rules "$POD"
serve_pong "$POD" 127.0.0.1 8080
serve_pong "$POD" "$POD_IP" 8081

# check PORT EXPECTED: one client connection to the pod IP.
check() {
  wait_listen "$POD" "$1" || fail "no server on $1"
  local got
  got=$(client "$CLIENT" "$POD_IP" "$1")
  [ "$got" = "$2" ] || fail "$LABEL: port $1 gave '$got', expected '$2'"
  pass "$LABEL: port $1 -> $got"
}
# last_server_peer PORT: the address the server on PORT last saw its client come from.
last_server_peer() { sed -n 's/^Ncat: Connection from \([0-9.]*\):.*/\1/p' "$WORK/server-$1.log" | tail -n 1; }
RESET="Ncat: Connection reset by peer."

LABEL="loopback (Istio 1.9)"
start_sidecar "$POD" "$WORK/lo" --inbound-policy loopback --relay buffered
check 8080 pong
expect_eq "$LABEL: server on 127.0.0.1 sees the client as" "$(last_server_peer 8080)" 127.0.0.1
check 8081 "$RESET"
expect_eq "$LABEL: the sidecar runs as uid" "$(ps -o uid= -p "$SIDECAR_PID" | tr -d ' ')" "$PROXY_UID"
stop_sidecar || fail "$LABEL: exit status $?"
grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8080 upstream=127.0.0.1:8080 src=127.0.0.1:[0-9]* rx=5 tx=5 dur_ms=[0-9]* flags=- end=completed error=-$" "$WORK/lo.log" \
  || { cat "$WORK/lo.log"; fail "$LABEL: no access-log line for the completed connection"; }
grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8081 upstream=127.0.0.1:8081 src=- rx=0 tx=0 dur_ms=[0-9]* flags=UF,URX end=upstream_connect_failed error=\"Connection refused\" hint=\"8081 listens on $POD_IP only; the loopback policy dials 127.0.0.1:8081: bind 0.0.0.0 or run --inbound-policy pod-ip\"$" "$WORK/lo.log" \
  || { cat "$WORK/lo.log"; fail "$LABEL: no UF access-log line for the refused connection"; }
pass "$LABEL: access log has the completed and the UF line"

LABEL="pod-ip (Istio 1.10)"
start_sidecar "$POD" "$WORK/pod" --inbound-policy pod-ip --relay splice
check 8080 "$RESET"
check 8081 pong
expect_eq "$LABEL: server on the pod IP sees the client as" "$(last_server_peer 8081)" 127.0.0.6
stop_sidecar || fail "$LABEL: exit status $?"
grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8081 upstream=$POD_IP:8081 src=127.0.0.6:[0-9]* rx=5 tx=5 .* flags=- end=completed" "$WORK/pod.log" \
  || { cat "$WORK/pod.log"; fail "$LABEL: no access-log line for the completed connection"; }

LABEL="pod-ip + --inbound-default-endpoint 8080=127.0.0.1:8080"
start_sidecar "$POD" "$WORK/override" --inbound-default-endpoint 8080=127.0.0.1:8080
check 8080 pong
expect_eq "$LABEL: server on 127.0.0.1 sees the client as" "$(last_server_peer 8080)" 127.0.0.1
check 8081 pong
stop_sidecar || fail "$LABEL: exit status $?"

LABEL="loopback + --inbound-default-endpoint 8081=$POD_IP:8081"
start_sidecar "$POD" "$WORK/override2" --inbound-policy loopback --inbound-default-endpoint "8081=$POD_IP:8081" --threads 2
check 8081 pong
expect_eq "$LABEL: delivered to the pod IP from" "$(last_server_peer 8081)" 127.0.0.6
check 8080 pong
stop_sidecar || fail "$LABEL: exit status $?"
