# run: outbound capture. The application in the pod dials a server in another namespace; the OUTPUT rules
# send it to the outbound listener, which dials the original destination. The sidecar's own connection is
# not captured again: first because it runs as uid 1337 (the rules' owner exemption), then, staying root,
# because it marks its sockets (--mark) and the rules exempt the mark.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

make_pod_and_client
serve_pong "$CLIENT" "$CLIENT_IP" 9000

check_outbound() {  # LABEL LOG
  wait_listen "$CLIENT" 9000 || fail "no server"
  local got
  got=$(client "$POD" "$CLIENT_IP" 9000)  # the application: root, not the proxy user
  expect_eq "$1: application -> $CLIENT_IP:9000" "$got" pong
  expect_stat "$POD" downstream_cx_total outbound 1
  expect_stat "$POD" downstream_cx_total inbound 0
  stop_sidecar || fail "$1: exit status $?"
  grep -q "outbound $POD_IP:[0-9]* -> $CLIENT_IP:9000 upstream=$CLIENT_IP:9000 src=$POD_IP:[0-9]* rx=5 tx=5 .* flags=- end=completed" "$2" \
    || fail "$1: no outbound access-log line"
  pass "$1: access log shows the captured connection"
}

install_redirect_rules "$POD" 1337
start_sidecar "$POD" "$WORK/uid"
check_outbound "uid 1337 exemption" "$WORK/uid.log"

start_sidecar "$POD" "$WORK/mark" --uid 0 --gid 0 --mark 1337
expect_eq "--uid 0 keeps root" "$(ps -o uid= -p "$SIDECAR_PID" | tr -d ' ')" 0
check_outbound "mark 1337 exemption" "$WORK/mark.log"
