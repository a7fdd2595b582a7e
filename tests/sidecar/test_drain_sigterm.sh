# run: SIGTERM with a transfer in flight. The sidecar stops accepting and reports 503 on /healthz/ready,
# the in-flight connection still completes, then it exits 0. With a short --drain-timeout, a connection
# that does not finish is cut (flags=DT) and the sidecar still exits 0.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

make_pod_and_client
install_redirect_rules "$POD"

# slow_server PORT GO_FILE: one connection; answers "done" only once GO_FILE exists. Its client sends
# nothing (--recv-only), so the connection stays open both ways until the server has answered.
slow_server() {
  spawn ip netns exec "$POD" bash -c "(while [ ! -e '$2' ]; do sleep 0.1; done; echo done) | timeout 60 ncat -l $POD_IP $1 >/dev/null"
}

slow_server 8081 "$WORK/go"
start_sidecar "$POD" "$WORK/drain" --drain-timeout 60s --threads 2
wait_listen "$POD" 8081
(timeout 30 ip netns exec "$CLIENT" ncat --recv-only "$POD_IP" 8081 >"$WORK/client.out" 2>&1) &
CLIENT_JOB=$!
expect_stat "$POD" downstream_cx_active inbound 1
kill -TERM "$SIDECAR_PID"
wait_for 10 grep -q "draining 1 connection" "$WORK/drain.err" || fail "no drain message"
expect_eq "/healthz/ready while draining" "$(http_status "$POD" http://127.0.0.1:15021/healthz/ready)" 503
expect_eq "admin /ready while draining" "$(ip netns exec "$POD" curl -s -m 5 http://127.0.0.1:15000/ready)" DRAINING
slow_server 8082 "$WORK/go"
wait_listen "$POD" 8082
expect_eq "a new connection while draining" "$(client "$CLIENT" "$POD_IP" 8082)" "Ncat: Connection refused."
kill -0 "$SIDECAR_PID" || fail "the sidecar exited before its connection finished"
touch "$WORK/go"
wait "$CLIENT_JOB"
expect_eq "the in-flight transfer" "$(cat "$WORK/client.out")" done
status=0
wait "$SIDECAR_PID" || status=$?
expect_eq "exit status after the drain" "$status" 0
grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8081 .* rx=0 tx=5 .* flags=- end=completed" "$WORK/drain.log" || fail "no completed line"
pass "access log: the drained connection completed"

rm -f "$WORK/go"
slow_server 8083 "$WORK/never"
start_sidecar "$POD" "$WORK/cut" --drain-timeout 1s
wait_listen "$POD" 8083
(timeout 30 ip netns exec "$CLIENT" ncat --recv-only "$POD_IP" 8083 >"$WORK/client2.out" 2>&1) &
CLIENT_JOB=$!
expect_stat "$POD" downstream_cx_active inbound 1
status=0
stop_sidecar || status=$?
expect_eq "exit status after a drain deadline" "$status" 0
wait "$CLIENT_JOB" || true
expect_eq "the cut connection's client" "$(cat "$WORK/client2.out")" "Ncat: Connection reset by peer."
grep -q "inbound $CLIENT_IP:[0-9]* -> $POD_IP:8083 .* flags=DT end=drained" "$WORK/cut.log" || fail "no DT line"
pass "access log: the cut connection has flags=DT"
