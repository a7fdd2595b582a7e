# The PROXY protocol against HAProxy, a third-party implementation, both versions, IPv4 and IPv6:
#  - podproxy sends: HAProxy is the application behind the sidecar (`bind ... accept-proxy`) and answers
#    each HTTP request with the client address it learnt from the header (%[src]) and the destination;
#  - podproxy accepts: HAProxy is the balancer in front of the pod (`server ... send-proxy` and
#    `send-proxy-v2`); the original client (an address of its own, not the balancer's) reaches the
#    application, the access log names it with via=BALANCER, and a client that sends no header is reset
#    and counted on /stats.
#
#   client ns: curl from ORIG_IP, balancer HAProxy on CLIENT_IP  <--veth-->  pod ns: sidecar, app HAProxy
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

if ! command -v haproxy >/dev/null; then
  skip "haproxy is not installed (tests/install-deps.sh installs it)"
  exit 77
fi

make_dual_stack_pod_and_client
ORIG_IP=10.88.0.7
ORIG_IP6=fd00:88::7
ip -n "$CLIENT" addr add "$ORIG_IP/32" dev lo
ip -n "$CLIENT" addr add "$ORIG_IP6/128" dev lo nodad
ip netns exec "$POD" "$SIDECAR" init >"$WORK/init.out"

# The application: HAProxy in HTTP mode that requires a PROXY header and says what it learnt from it.
cat >"$WORK/app.cfg" <<'EOF'
global
  maxconn 100
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend app
  bind :::8080 v4v6 accept-proxy
  http-request return status 200 content-type text/plain lf-string "src=%[src] dst=%[dst]:%[dst_port]"
EOF
spawn ip netns exec "$POD" haproxy -db -f "$WORK/app.cfg" >"$WORK/app-haproxy.log" 2>&1
wait_listen "$POD" 8080 || fail "the application HAProxy did not listen"

# The balancer: HAProxy in TCP mode in the client namespace, one frontend per version and family.
cat >"$WORK/lb.cfg" <<EOF
global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 10s
  timeout server 10s
listen v1_ipv4
  bind $CLIENT_IP:7000
  server pod $POD_IP:8080 send-proxy
listen v2_ipv4
  bind $CLIENT_IP:7002
  server pod $POD_IP:8080 send-proxy-v2
listen v1_ipv6
  bind ipv6@$CLIENT_IP6:7001
  server pod ipv6@$POD_IP6:8080 send-proxy
listen v2_ipv6
  bind ipv6@$CLIENT_IP6:7003
  server pod ipv6@$POD_IP6:8080 send-proxy-v2
EOF
spawn ip netns exec "$CLIENT" haproxy -db -f "$WORK/lb.cfg" >"$WORK/lb-haproxy.log" 2>&1
for port in 7000 7001 7002 7003; do wait_listen "$CLIENT" "$port" || fail "the balancer did not listen on $port"; done

# get NS URL [SOURCE]: the body curl gets inside NS (from SOURCE), or the error.
get() {
  ip netns exec "$1" curl -sS -m 10 ${3:+--interface "$3"} "$2" 2>&1 || true
}

for version in v1 v2; do
  LABEL="send $version"
  start_sidecar "$POD" "$WORK/send-$version" --inbound-proxy-protocol-send "$version"
  expect_eq "$LABEL, IPv4: the application learns" "$(get "$CLIENT" "http://$POD_IP:8080/")" \
    "src=$CLIENT_IP dst=$POD_IP:8080"
  expect_eq "$LABEL, IPv6: the application learns" "$(get "$CLIENT" "http://[$POD_IP6]:8080/")" \
    "src=$CLIENT_IP6 dst=$POD_IP6:8080"
  stop_sidecar || fail "$LABEL: exit status $?"
done

# Without the flag the application's HAProxy gets no header and refuses: it is the flag that does it.
start_sidecar "$POD" "$WORK/send-off"
case "$(get "$CLIENT" "http://$POD_IP:8080/")" in
  src=*) fail "without --inbound-proxy-protocol-send the application still learnt a client" ;;
  *) pass "without --inbound-proxy-protocol-send the application's accept-proxy refuses the connection" ;;
esac
stop_sidecar || fail "send off: exit status $?"

for send in v1 v2; do
  LABEL="accept any, send $send"
  start_sidecar "$POD" "$WORK/accept-$send" --inbound-proxy-protocol-accept any --inbound-proxy-protocol-send "$send"
  expect_eq "$LABEL: balancer v1, IPv4" "$(get "$CLIENT" "http://$CLIENT_IP:7000/" "$ORIG_IP")" "src=$ORIG_IP dst=$POD_IP:8080"
  expect_eq "$LABEL: balancer v2, IPv4" "$(get "$CLIENT" "http://$CLIENT_IP:7002/" "$ORIG_IP")" "src=$ORIG_IP dst=$POD_IP:8080"
  expect_eq "$LABEL: balancer v1, IPv6" "$(get "$CLIENT" "http://[$CLIENT_IP6]:7001/" "$ORIG_IP6")" "src=$ORIG_IP6 dst=$POD_IP6:8080"
  expect_eq "$LABEL: balancer v2, IPv6" "$(get "$CLIENT" "http://[$CLIENT_IP6]:7003/" "$ORIG_IP6")" "src=$ORIG_IP6 dst=$POD_IP6:8080"
  # A client that bypasses the balancer sends no header: reset, counted, the others unaffected.
  case "$(get "$CLIENT" "http://$POD_IP:8080/")" in
    src=*) fail "$LABEL: a client without a header was relayed" ;;
    *) pass "$LABEL: a client without a header is refused" ;;
  esac
  expect_stat "$POD" downstream_cx_proxy_proto_error inbound 1
  expect_eq "$LABEL: balancer v2, IPv4, after that" "$(get "$CLIENT" "http://$CLIENT_IP:7002/" "$ORIG_IP")" "src=$ORIG_IP dst=$POD_IP:8080"
  stop_sidecar || fail "$LABEL: exit status $?"
  for line in \
    "inbound $ORIG_IP:[0-9]* -> $POD_IP:8080 upstream=$POD_IP:8080 src=127.0.0.6:[0-9]* .* end=completed error=- via=$CLIENT_IP:[0-9]*" \
    "inbound \[$ORIG_IP6\]:[0-9]* -> \[$POD_IP6\]:8080 upstream=\[$POD_IP6\]:8080 src=\[::6\]:[0-9]* .* end=completed error=- via=\[$CLIENT_IP6\]:[0-9]*" \
    "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8080 upstream=- src=- rx=0 tx=0 .* flags=DPE end=bad_proxy_header error=-$"; do
    grep -q -- "$line" "$WORK/accept-$send.log" || fail "$LABEL: no access-log line like '$line' in: $(cat "$WORK/accept-$send.log")"
  done
  pass "$LABEL: the access log names the original client, via the balancer, and the bad header"
done
