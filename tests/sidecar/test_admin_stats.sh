# run: the admin endpoint (127.0.0.1:15000). GET /stats is Prometheus text with every counter per listener,
# and the counters move as connections happen; /ready; what the responder answers to other requests.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

make_pod_and_client
install_redirect_rules "$POD"
serve_pong "$POD" "$POD_IP" 8081
serve_pong "$CLIENT" "$CLIENT_IP" 9000
start_sidecar "$POD" "$WORK/sidecar"

STATS="$WORK/stats.txt"
ip netns exec "$POD" curl -s -m 5 -D "$WORK/headers" http://127.0.0.1:15000/stats >"$STATS"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$WORK/headers" || fail "/stats content type"
for name in downstream_cx_total downstream_cx_destroy downstream_cx_rx_bytes_total downstream_cx_tx_bytes_total \
            downstream_cx_overflow downstream_cx_refused downstream_cx_loop downstream_cx_loopback_refused \
            downstream_cx_reset \
            downstream_cx_drain_close upstream_cx_total upstream_cx_connect_fail upstream_cx_connect_timeout \
            upstream_cx_reset idle_timeout; do
  grep -qx "# TYPE podproxy_$name counter" "$STATS" || fail "no counter TYPE line for $name"
  for listener in inbound outbound; do
    grep -qx "podproxy_$name{listener=\"$listener\"} 0" "$STATS" || fail "$name{$listener} is not 0 at start"
  done
done
grep -qx '# TYPE podproxy_downstream_cx_active gauge' "$STATS" || fail "downstream_cx_active is not a gauge"
grep -qx '# TYPE podproxy_pipe_pool_lent gauge' "$STATS" || fail "no pipe pool figures"
pass "/stats: every counter, both listeners, zero at start, TYPE lines"

wait_listen "$POD" 8081
expect_eq "inbound to the pod-IP server" "$(client "$CLIENT" "$POD_IP" 8081)" pong
expect_eq "inbound to a closed port" "$(client "$CLIENT" "$POD_IP" 8099)" "Ncat: Connection reset by peer."
wait_listen "$CLIENT" 9000
expect_eq "outbound" "$(client "$POD" "$CLIENT_IP" 9000)" pong

expect_stat "$POD" downstream_cx_total inbound 2
expect_stat "$POD" upstream_cx_total inbound 2
expect_stat "$POD" upstream_cx_connect_fail inbound 1
expect_stat "$POD" downstream_cx_rx_bytes_total inbound 5
expect_stat "$POD" downstream_cx_tx_bytes_total inbound 5
expect_stat "$POD" downstream_cx_destroy inbound 2
expect_stat "$POD" downstream_cx_active inbound 0
expect_stat "$POD" downstream_cx_total outbound 1
expect_stat "$POD" downstream_cx_rx_bytes_total outbound 5

# The loop guard: a connection to the pod IP's inbound port itself is refused, and counted.
expect_eq "inbound to $POD_IP:15006 itself" "$(client "$CLIENT" "$POD_IP" 15006)" "Ncat: Connection reset by peer."
expect_stat "$POD" downstream_cx_loop inbound 1

# The responder itself.
expect_eq "/ready" "$(ip netns exec "$POD" curl -s -m 5 http://127.0.0.1:15000/ready)" LIVE
expect_eq "/nope" "$(http_status "$POD" http://127.0.0.1:15000/nope)" 404
expect_eq "POST /stats" "$(ip netns exec "$POD" curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST -d x=1 http://127.0.0.1:15000/stats)" 405
expect_eq "HEAD /ready" "$(ip netns exec "$POD" curl -s -o /dev/null -m 5 -w '%{http_code}' -I http://127.0.0.1:15000/ready)" 200
raw() { printf "$1" | ip netns exec "$POD" timeout 10 ncat 127.0.0.1 15000 2>&1 | head -n 1 | tr -d '\r'; }
expect_eq "a malformed request line" "$(raw 'GARBAGE\r\n\r\n')" "HTTP/1.1 400 Bad Request"
expect_eq "HTTP/2.0" "$(raw 'GET /ready HTTP/2.0\r\n\r\n')" "HTTP/1.1 505 HTTP Version Not Supported"
big=$(head -c 9000 /dev/zero | tr '\0' a)
expect_eq "a 9000-byte header" "$(raw "GET /ready HTTP/1.1\r\nX-Big: $big\r\n\r\n")" "HTTP/1.1 431 Request Header Fields Too Large"
expect_eq "admin is not on the pod IP" "$(http_status "$POD" "http://$POD_IP:15000/stats")" 000
stop_sidecar || fail "exit status $?"
