# --ip-families, which init and run share: init captures the families asked for (and removes what it
# wrote in the others); run with a listener that does not take a captured family (the issue's
# `--listen-address 0.0.0.0`, or --ip-families ipv4) serves what it can but refuses to become ready, naming
# the fix, and check-binds reports the same mismatch (exit 1); bad values are refused with exit 2.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

make_dual_stack_pod_and_client
in_pod() { ip netns exec "$POD" "$@"; }

# refused WANT_IN_MESSAGE ARGS...: podproxy-sidecar ARGS exits 2 naming WANT_IN_MESSAGE.
refused() {
  local want=$1; shift
  local status=0 err
  err=$(in_pod "$SIDECAR" "$@" 2>&1 >/dev/null) || status=$?
  [ "$status" = 2 ] || fail "'$*': exit $status, want 2 (stderr: $err)"
  grep -qF -- "$want" <<<"$err" || fail "'$*': message does not name '$want': $err"
  pass "'$*' -> exit 2: $(head -1 <<<"$err")"
}
refused "--ip-families" run --ip-families both
refused "is not an address family choice (auto, ipv4, ipv6 or dual)" init --ip-families v6 --dry-run
refused "--listen-address" run --listen-address 0.0.0.0 --ip-families dual
refused "--listen-address" run --listen-address "$POD_IP6" --ip-families ipv4
refused "--no-ipv6" init --no-ipv6 --ip-families dual --dry-run

# init: what each choice captures (dry run, then applied).
captures() {  # ARGS... -> "v4 v6" flags of what `init --dry-run ARGS` would apply
  local dry
  dry=$(in_pod "$SIDECAR" init --dry-run "$@")
  printf '%s %s' "$(grep -c '^# IPv4: iptables-restore' <<<"$dry")" "$(grep -c '^# IPv6: ip6tables-restore' <<<"$dry")"
}
expect_eq "init --dry-run (auto, dual-stack pod) captures IPv4, IPv6" "$(captures)" "1 1"
expect_eq "init --dry-run --ip-families ipv4" "$(captures --ip-families ipv4)" "1 0"
expect_eq "init --dry-run --ip-families ipv6" "$(captures --ip-families ipv6)" "0 1"
expect_eq "init --dry-run --no-ipv6" "$(captures --no-ipv6)" "1 0"
in_pod "$SIDECAR" init --ip-families ipv6 >/dev/null
! in_pod iptables-save | grep -q PODPROXY_ && in_pod ip6tables-save | grep -q PODPROXY_ || fail "init --ip-families ipv6"
in_pod "$SIDECAR" init >"$WORK/init.out"   # auto again: both, nothing left over
in_pod iptables-save | grep -q PODPROXY_ && in_pod ip6tables-save | grep -q PODPROXY_ || fail "init (auto) after ipv6"
in_pod "$SIDECAR" init --ip-families ipv4 >"$WORK/init.out"
grep -q "IPv6 capture rules removed" "$WORK/init.out" || fail "init --ip-families ipv4 says: $(cat "$WORK/init.out")"
! in_pod ip6tables-save | grep -q PODPROXY_ || fail "init --ip-families ipv4 left the IPv6 rules of the earlier init"
pass "init --ip-families ipv4 after a dual-stack init removes the IPv6 capture"
in_pod "$SIDECAR" init >/dev/null

serve_pong "$POD" "" 8082 40
ready_status() { http_status "$POD" http://127.0.0.1:15021/healthz/ready; }

# run that does not listen for IPv6 while IPv6 is captured: serves IPv4, never ready, says why.
for args in "--listen-address 0.0.0.0" "--ip-families ipv4"; do
  LABEL="run $args with IPv6 captured"
  # shellcheck disable=SC2086
  spawn ip netns exec "$POD" "$SIDECAR" run $args >"$WORK/mismatch.log" 2>"$WORK/mismatch.err"
  SIDECAR_PID=$SPAWNED
  wait_for 10 grep -q "NOT ready" "$WORK/mismatch.err" || fail "$LABEL: no 'NOT ready' in the log: $(cat "$WORK/mismatch.err")"
  wait_listen "$POD" 8082 || fail "no server"
  expect_eq "$LABEL: IPv4 still served" "$(client "$CLIENT" "$POD_IP" 8082)" pong
  expect_eq "$LABEL: /healthz/ready" "$(ready_status)" 503
  body=$(ip netns exec "$POD" curl -s -m 5 http://127.0.0.1:15021/healthz/ready)
  grep -q "NOT_READY: IPv6 connections are captured .* --ip-families dual" <<<"$body" || fail "$LABEL: body: $body"
  expect_eq "$LABEL: admin /ready" "$(http_status "$POD" http://127.0.0.1:15000/ready)" 503
  grep -q "\[error\] IPv6 connections are captured (ip6tables has PODPROXY_ rules, inbound to port 15006) but this sidecar listens on 0.0.0.0:15006 (IPv4 only)" "$WORK/mismatch.err" \
    || fail "$LABEL: no error naming the problem: $(cat "$WORK/mismatch.err")"
  status=0; in_pod "$SIDECAR" wait --timeout 2s >/dev/null 2>&1 || status=$?
  [ "$status" != 0 ] || fail "$LABEL: wait succeeded"
  status=0; in_pod "$SIDECAR" check-binds >"$WORK/cb.out" || status=$?
  expect_eq "$LABEL: check-binds exit status" "$status" 1
  grep -q "capture IPv6: MISMATCH: captured to port 15006, but the listener there does not take IPv6" "$WORK/cb.out" \
    || fail "$LABEL: check-binds says: $(cat "$WORK/cb.out")"
  # From outside the pod, as from the node: the rules are read inside the sidecar's namespace.
  status=0; "$SIDECAR" check-binds --pid "$SIDECAR_PID" >"$WORK/cb-pid.out" || status=$?
  expect_eq "$LABEL: check-binds --pid exit status" "$status" 1
  grep -q "capture IPv6: MISMATCH" "$WORK/cb-pid.out" || fail "$LABEL: check-binds --pid says: $(cat "$WORK/cb-pid.out")"
  status=0; json=$(in_pod "$SIDECAR" check-binds --json) || status=$?
  expect_eq "$LABEL: check-binds --json capture_mismatch" "$(jq -c '.capture_mismatch' <<<"$json")" '["ipv6"]'
  expect_eq "$LABEL: check-binds --json capture.ipv4" "$(jq -c '.capture.ipv4' <<<"$json")" \
    '{"captured":true,"inbound_port":15006,"served":true}'
  stop_sidecar || fail "$LABEL: exit status $?"
done

# The same namespace, defaults: ready, no mismatch.
start_sidecar "$POD" "$WORK/dual"
status=0; in_pod "$SIDECAR" check-binds --json >"$WORK/cb.json" || status=$?
expect_eq "run (defaults): check-binds exit status" "$status" 0
expect_eq "run (defaults): check-binds capture" "$(jq -c '[.capture.ipv4.served, .capture.ipv6.served, .capture_mismatch]' "$WORK/cb.json")" \
  '[true,true,[]]'
expect_eq "run (defaults): IPv6 client" "$(client "$CLIENT" "$POD_IP6" 8082)" pong
stop_sidecar || fail "exit status $?"

# IPv6 only, both sides: init --ip-families ipv6 and run --ip-families ipv6 agree (ready).
in_pod "$SIDECAR" init --ip-families ipv6 >/dev/null
start_sidecar "$POD" "$WORK/v6" --ip-families ipv6
expect_eq "ipv6 only: IPv6 client" "$(client "$CLIENT" "$POD_IP6" 8082)" pong
expect_eq "ipv6 only: IPv4 is not captured, the server answers directly" "$(client "$CLIENT" "$POD_IP" 8082)" pong
stop_sidecar || fail "exit status $?"
grep -q "inbound \[$CLIENT_IP6\]:[0-9]* -> \[$POD_IP6\]:8082 upstream=\[$POD_IP6\]:8082 src=\[::6\]" "$WORK/v6.log" \
  || fail "ipv6 only: no IPv6 access-log line"
! grep -q "inbound $CLIENT_IP:" "$WORK/v6.log" || fail "ipv6 only: an IPv4 connection went through the sidecar"
pass "ipv6 only: IPv6 through the sidecar, IPv4 straight to the server"
