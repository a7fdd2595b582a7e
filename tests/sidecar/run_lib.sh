# Helpers for the tests of `run`, `wait` and the admin endpoints: a "pod" namespace and a "client"
# namespace joined by a veth pair (both ends inside the test's namespaces), pong servers, the capture rules,
# and a sidecar started inside the pod. Source it after lib.sh.
#
#   client ns  eth0 10.77.0.9/24  <--veth-->  eth0 10.77.0.5/24  pod ns (sidecar, servers)

POD_IP=10.77.0.5
CLIENT_IP=10.77.0.9
PROXY_UID=1337
WORK=$(mktemp -d)

# Processes started inside our namespaces by a shell loop (ncat servers) are not in lib.sh's pid list:
# kill what still runs in each namespace this test made, by pid, before lib.sh removes the namespaces.
run_lib_cleanup() {
  local status=$? ns pid f
  if [ "$status" -ne 0 ]; then  # show what the sidecar and the servers said
    for f in "$WORK"/*.log "$WORK"/*.err; do [ -s "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }; done
  fi
  for ns in "${_namespaces[@]:-}"; do
    [ -n "$ns" ] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  cleanup
  rm -rf "$WORK"
  return "$status"
}
trap run_lib_cleanup EXIT

# make_pod_and_client: sets POD and CLIENT (namespace names), eth0 in each, addresses above.
make_pod_and_client() {
  POD=$(make_ns pod)
  CLIENT=$(make_ns client)
  # make_ns runs in the $(...) subshell, so its record of the namespace is lost: record them here.
  _namespaces+=("$POD" "$CLIENT")
  ip -n "$POD" link add eth0 type veth peer name eth0 netns "$CLIENT"
  ip -n "$POD" addr add "$POD_IP/24" dev eth0
  ip -n "$CLIENT" addr add "$CLIENT_IP/24" dev eth0
  ip -n "$POD" link set eth0 up
  ip -n "$CLIENT" link set eth0 up
}

# make_dual_stack_pod_and_client: make_pod_and_client, plus an IPv6 address on each eth0 (POD_IP6, CLIENT_IP6).
POD_IP6=fd00:77::5
CLIENT_IP6=fd00:77::9
make_dual_stack_pod_and_client() {
  local ns
  make_pod_and_client
  for ns in "$POD" "$CLIENT"; do ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0; done
  ip -n "$POD" addr add "$POD_IP6/64" dev eth0 nodad
  ip -n "$CLIENT" addr add "$CLIENT_IP6/64" dev eth0 nodad
}

# The capture rules. With a sidecar whose `init` is implemented, `podproxy-sidecar init` writes them;
# otherwise (the branch that writes `init` not merged yet) the test installs Istio's rules itself, the same
# chains istio-iptables writes (ISTIO_* renamed PP_*), with iptables-restore.
sidecar_has_init() { "$SIDECAR" init --help 2>/dev/null | grep -q -- '--proxy-uid'; }

install_redirect_rules() {  # NS [MARK]: with MARK, connections marked MARK are exempt too
  local mark=${2:-}
  if sidecar_has_init; then
    ip netns exec "$1" "$SIDECAR" init --proxy-uid "$PROXY_UID" --proxy-gid "$PROXY_UID" \
      ${mark:+--proxy-mark "$mark"} >/dev/null
    return
  fi
  local mark_rule=""
  [ -z "$mark" ] || mark_rule="-A PP_OUTPUT -m mark --mark $mark -j RETURN"
  ip netns exec "$1" iptables-restore --noflush <<EOF
*nat
:PP_INBOUND - [0:0]
:PP_IN_REDIRECT - [0:0]
:PP_OUTPUT - [0:0]
:PP_REDIRECT - [0:0]
-A PREROUTING -p tcp -j PP_INBOUND
-A PP_INBOUND -p tcp --dport 15021 -j RETURN
-A PP_INBOUND -p tcp --dport 15090 -j RETURN
-A PP_INBOUND -p tcp --dport 15020 -j RETURN
-A PP_INBOUND -p tcp -j PP_IN_REDIRECT
-A PP_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -p tcp -j PP_OUTPUT
$mark_rule
-A PP_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A PP_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner $PROXY_UID -j PP_IN_REDIRECT
-A PP_OUTPUT -o lo -m owner ! --uid-owner $PROXY_UID -j RETURN
-A PP_OUTPUT -m owner --uid-owner $PROXY_UID -j RETURN
-A PP_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner $PROXY_UID -j PP_IN_REDIRECT
-A PP_OUTPUT -o lo -m owner ! --gid-owner $PROXY_UID -j RETURN
-A PP_OUTPUT -m owner --gid-owner $PROXY_UID -j RETURN
-A PP_OUTPUT -d 127.0.0.1/32 -j RETURN
-A PP_OUTPUT -j PP_REDIRECT
-A PP_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
EOF
}

# serve_pong NS ADDR PORT [COUNT]: answers "pong" to COUNT (default 20) connections in turn, one ncat at a
# time (the seed's server), logging ncat's "Connection from PEER" lines to $WORK/server-PORT.log. Call
# wait_listen before each client.
serve_pong() {
  local ns=$1 addr=$2 port=$3 count=${4:-20}
  spawn ip netns exec "$ns" bash -c "for i in \$(seq $count); do echo pong | timeout 60 ncat -v -l $addr $port >/dev/null; done" \
    2>>"$WORK/server-$port.log"
}

# client NS HOST PORT: what `echo ping | ncat HOST PORT` prints inside NS (stdout and stderr), bounded.
client() {
  echo ping | timeout 15 ip netns exec "$1" ncat "$2" "$3" 2>&1 || true
}

# http_status NS URL: the status code curl gets inside NS, or 000 when it cannot connect.
http_status() {
  ip netns exec "$1" curl -s -o /dev/null -m 5 -w '%{http_code}' "$2" 2>/dev/null || true
}

# start_sidecar NS OUT ARGS...: starts `podproxy-sidecar run ARGS` inside NS with stdout in OUT.log and
# stderr in OUT.err; sets SIDECAR_PID; waits until /healthz/ready answers 200.
start_sidecar() {
  local ns=$1 out=$2; shift 2
  spawn ip netns exec "$ns" "$SIDECAR" run "$@" >"$out.log" 2>"$out.err"
  SIDECAR_PID=$SPAWNED
  if ! wait_for 20 sh -c "[ \"\$(ip netns exec '$ns' curl -s -o /dev/null -m 2 -w '%{http_code}' http://127.0.0.1:15021/healthz/ready)\" = 200 ]"; then
    cat "$out.err" >&2
    fail "the sidecar in $ns did not become ready"
  fi
}

# stop_sidecar: SIGTERM, then waits; prints nothing, returns the sidecar's exit status.
stop_sidecar() {
  kill -TERM "$SIDECAR_PID"
  local status=0
  wait "$SIDECAR_PID" || status=$?
  return "$status"
}

# stat_value NS NAME LISTENER: one counter from GET /stats.
stat_value() {
  ip netns exec "$1" curl -s -m 5 http://127.0.0.1:15000/stats |
    awk -v name="podproxy_$2{listener=\"$3\"}" '$1 == name { print $2 }'
}

# expect_stat NS NAME LISTENER VALUE: the counter reaches VALUE (waiting up to 10 s: a connection's
# counters settle just after its client saw the end), and the test says so.
stat_is() { [ "$(stat_value "$1" "$2" "$3")" = "$4" ]; }
expect_stat() {
  wait_for 10 stat_is "$@" || true
  expect_eq "$3 $2" "$(stat_value "$1" "$2" "$3")" "$4"
}

expect_eq() {  # WHAT ACTUAL EXPECTED
  [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"
  pass "$1: $2"
}
