# run: the admin endpoints a mesh user scripts against, with Envoy's semantics. POST /drain_listeners: new
# connections are refused, an open one keeps flowing both ways, readiness says 503, the sidecar keeps
# running. POST /quitquitquit: the same drain, then exit 0 once the last connection ends (what a Job's last
# step calls); from 127.0.0.1 on pilot-agent's port 15020 too. Other methods on those paths get 405.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

make_pod_and_client
install_redirect_rules "$POD"

post() {  # URL: the status of a POST from inside the pod
  ip netns exec "$POD" curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST "$1" || true
}

# An echo server (ncat --exec cat) keeps a connection open while its client talks; the client is a
# coprocess whose lines we send one at a time and read back.
spawn ip netns exec "$POD" timeout 120 ncat -l "$POD_IP" 8081 --exec /bin/cat
start_sidecar "$POD" "$WORK/drain" --drain-timeout 60s --threads 2
wait_listen "$POD" 8081

expect_eq "GET /drain_listeners" "$(http_status "$POD" http://127.0.0.1:15000/drain_listeners)" 405
expect_eq "GET /quitquitquit" "$(http_status "$POD" http://127.0.0.1:15000/quitquitquit)" 405
expect_eq "PUT /quitquitquit" \
  "$(ip netns exec "$POD" curl -s -o /dev/null -m 5 -w '%{http_code}' -X PUT http://127.0.0.1:15000/quitquitquit)" 405
allow=$(ip netns exec "$POD" curl -s -m 5 -D - -o /dev/null http://127.0.0.1:15000/quitquitquit | tr -d '\r' | grep -i '^Allow:')
expect_eq "the 405's Allow header" "$allow" "Allow: POST"
expect_eq "POST /stats" "$(post http://127.0.0.1:15000/stats)" 405
expect_eq "/healthz/ready before the drain" "$(http_status "$POD" http://127.0.0.1:15021/healthz/ready)" 200

coproc ECHO { timeout 60 ip netns exec "$CLIENT" ncat "$POD_IP" 8081 2>&1; }
exchange() {  # LINE: send it over the open connection, print what comes back
  echo "$1" >&"${ECHO[1]}"
  local reply=""
  read -r -t 10 reply <&"${ECHO[0]}" || true
  echo "$reply"
}
expect_eq "the open connection before the drain" "$(exchange one)" one
expect_stat "$POD" downstream_cx_active inbound 1

expect_eq "POST /drain_listeners" "$(post http://127.0.0.1:15000/drain_listeners)" 200
wait_for 10 grep -q "drain_listeners: no longer accepting" "$WORK/drain.err" || fail "no drain_listeners message"
expect_eq "/healthz/ready while draining" "$(http_status "$POD" http://127.0.0.1:15021/healthz/ready)" 503
expect_eq "admin /ready while draining" "$(ip netns exec "$POD" curl -s -m 5 http://127.0.0.1:15000/ready)" DRAINING
spawn ip netns exec "$POD" timeout 60 ncat -l "$POD_IP" 8082
wait_listen "$POD" 8082
expect_eq "a new connection after drain_listeners" "$(client "$CLIENT" "$POD_IP" 8082)" "Ncat: Connection refused."
expect_eq "the open connection after drain_listeners" "$(exchange two)" two
sleep 1  # drain_listeners has no deadline: the sidecar and the connection are still there a while later
kill -0 "$SIDECAR_PID" || fail "the sidecar exited after drain_listeners"
expect_eq "the open connection a second later" "$(exchange three)" three
expect_eq "POST /drain_listeners again" "$(post http://127.0.0.1:15000/drain_listeners)" 200

# quitquitquit: the drain goes on; exit 0 once the connection ends.
expect_eq "POST /quitquitquit" "$(post http://127.0.0.1:15000/quitquitquit)" 200
expect_eq "the open connection after quitquitquit" "$(exchange four)" four
kill -0 "$SIDECAR_PID" || fail "the sidecar exited before its connection ended"
echo_in=${ECHO[1]}; exec {echo_in}>&-  # the client's FIN: the echo server finishes, the connection ends
status=0
wait "$SIDECAR_PID" || status=$?
expect_eq "exit status after quitquitquit" "$status" 0
grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8081 .* rx=19 tx=19 .* flags=- end=completed" "$WORK/drain.log" \
  || fail "no completed line with the 19 bytes each way"
pass "access log: the drained connection completed, 19 bytes each way"

# quitquitquit with nothing open: exits at once, 0. pilot-agent's port takes it from 127.0.0.1 only.
start_sidecar "$POD" "$WORK/quit"
expect_eq "POST /quitquitquit on 15020 from the client" \
  "$(ip netns exec "$CLIENT" curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST "http://$POD_IP:15020/quitquitquit")" 403
expect_eq "GET /quitquitquit on 15020" "$(http_status "$POD" http://127.0.0.1:15020/quitquitquit)" 405
kill -0 "$SIDECAR_PID" || fail "the sidecar exited"
expect_eq "POST /quitquitquit on 127.0.0.1:15020" "$(post http://127.0.0.1:15020/quitquitquit)" 200
status=0
wait_for 10 sh -c "! kill -0 $SIDECAR_PID" || fail "the sidecar did not exit after quitquitquit"
wait "$SIDECAR_PID" || status=$?
expect_eq "exit status after quitquitquit with nothing open" "$status" 0

# A drain deadline still applies after drain_listeners: quitquitquit with --drain-timeout 1s cuts what is left.
spawn ip netns exec "$POD" timeout 60 ncat -l "$POD_IP" 8083 --exec /bin/cat
start_sidecar "$POD" "$WORK/cut" --drain-timeout 1s
wait_listen "$POD" 8083
(timeout 30 ip netns exec "$CLIENT" ncat --recv-only "$POD_IP" 8083 >"$WORK/cut.out" 2>&1) &
expect_stat "$POD" downstream_cx_active inbound 1
expect_eq "POST /drain_listeners" "$(post http://127.0.0.1:15000/drain_listeners)" 200
sleep 2  # longer than --drain-timeout: drain_listeners alone has no deadline
expect_stat "$POD" downstream_cx_active inbound 1
expect_eq "POST /quitquitquit" "$(post http://127.0.0.1:15000/quitquitquit)" 200
status=0
wait "$SIDECAR_PID" || status=$?
expect_eq "exit status after the deadline" "$status" 0
grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8083 .* flags=DT end=drained" "$WORK/cut.log" || fail "no DT line"
pass "access log: the connection left at the deadline has flags=DT"
