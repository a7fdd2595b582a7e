# wait and /healthz/ready: refused before the sidecar listens (wait gives up with 1), 200 once every
# listener accepts (a wait started before the sidecar returns 0), reachable from another pod (the health
# port is not captured); --url pointing at the admin /ready works the same.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

make_pod_and_client
install_redirect_rules "$POD"

expect_eq "/healthz/ready before the sidecar runs" "$(http_status "$POD" http://127.0.0.1:15021/healthz/ready)" 000
status=0
ip netns exec "$POD" "$SIDECAR" wait --timeout 1500ms 2>"$WORK/wait1.err" || status=$?
expect_eq "wait with nothing listening: exit status" "$status" 1
grep -q "not ready after 1500 ms (last: Connection refused)" "$WORK/wait1.err" || fail "wait's message: $(cat "$WORK/wait1.err")"

# A wait started first (as a postStart hook would be) returns 0 once the sidecar is ready.
spawn ip netns exec "$POD" "$SIDECAR" wait --timeout 30s 2>"$WORK/wait-first.err"
WAIT_PID=$SPAWNED
wait_for 20 grep -q "not ready yet (Connection refused)" "$WORK/wait-first.err" || fail "wait did not try first"
start_sidecar "$POD" "$WORK/sidecar"
status=0
wait "$WAIT_PID" || status=$?
expect_eq "wait started before the sidecar: exit status" "$status" 0
grep -q "is ready (200 after" "$WORK/wait-first.err" || fail "wait's message: $(cat "$WORK/wait-first.err")"

expect_eq "/healthz/ready once listening" "$(http_status "$POD" http://127.0.0.1:15021/healthz/ready)" 200
expect_eq "/healthz/ready from the client namespace" "$(http_status "$CLIENT" "http://$POD_IP:15021/healthz/ready")" 200
expect_eq "the health port serves nothing else" "$(http_status "$POD" http://127.0.0.1:15021/stats)" 404
status=0
ip netns exec "$POD" "$SIDECAR" wait --url http://127.0.0.1:15000/ready --timeout 5s --quiet 2>"$WORK/wait-admin.err" || status=$?
expect_eq "wait --url admin /ready: exit status" "$status" 0
status=0
ip netns exec "$POD" "$SIDECAR" wait --url http://127.0.0.1:15000/nope --timeout 1s 2>"$WORK/wait2.err" || status=$?
expect_eq "wait on a URL that answers 404: exit status" "$status" 1
grep -q "(last: status 404)" "$WORK/wait2.err" || fail "wait's message: $(cat "$WORK/wait2.err")"
stop_sidecar || fail "exit status $?"
