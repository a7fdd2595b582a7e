# Helpers for the init and check-binds tests (source after lib.sh): a two-namespace "pod + client" with
# a veth between them, bounded ncat servers, and an ncat client.

# On exit, before lib.sh's cleanup removes the namespaces: end, by pid, whatever still runs in them (a
# server loop killed between two connections can leave its last ncat behind).
init_lib_cleanup() {
  local status=$? ns pid
  for ns in "${_namespaces[@]:-}"; do
    [ -n "$ns" ] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  cleanup
  return "$status"
}
trap init_lib_cleanup EXIT

# make_pod_and_client: namespaces $POD (10.77.0.2, fd77::2 on eth0) and $CLIENT (10.77.0.1, fd77::1),
# both ends of the veth inside them. Called directly (not in $(...)) so lib.sh removes them on exit.
make_pod_and_client() {
  make_ns pod >/dev/null
  make_ns client >/dev/null
  POD="${TEST_TAG}-pod"
  CLIENT="${TEST_TAG}-client"
  ip link add eth0 netns "$POD" type veth peer name eth0 netns "$CLIENT"
  ip -n "$POD" addr add 10.77.0.2/24 dev eth0
  ip -n "$CLIENT" addr add 10.77.0.1/24 dev eth0
  ip -n "$POD" addr add fd77::2/64 dev eth0 nodad
  ip -n "$CLIENT" addr add fd77::1/64 dev eth0 nodad
  ip -n "$POD" link set eth0 up
  ip -n "$CLIENT" link set eth0 up
}

# serve NS ADDR PORT REPLY: answers up to 20 connections, one at a time, with REPLY (`echo REPLY | ncat -l`,
# the pattern that is reliable here). ADDR "any" listens on every IPv4 and IPv6 address.
# Killing the loop ends its ncat too, so nothing outlives the test.
serve() {
  local ns=$1 addr=$2 port=$3 reply=$4
  [ "$addr" = any ] && addr=""
  # setsid: the loop leads its own process group, so its TERM trap can end the loop and its ncat at once.
  spawn setsid ip netns exec "$ns" bash -c '
    trap "trap - TERM; kill -- -\$\$ 2>/dev/null; exit 0" TERM
    for _ in $(seq 20); do
      echo "$3" | ncat -l $1 "$2" >/dev/null 2>&1 &
      child=$!
      wait $child
    done' serve "$addr" "$port" "$reply"
  wait_listen "$ns" "$port" || fail "server on $ns $addr:$port did not start"
}

# ask NS HOST PORT [SERVER_NS SERVER_PORT] [PREFIX...]: what `echo ping | ncat HOST PORT` in NS prints
# (stdout and stderr), after waiting until the server (SERVER_NS:SERVER_PORT, default NS... HOST's port)
# listens again. Never fails: the output is the verdict.
ask() {
  local ns=$1 host=$2 port=$3 server_ns=${4:-} server_port=${5:-}
  shift 5 2>/dev/null || shift $#
  if [ -n "$server_ns" ]; then wait_listen "$server_ns" "$server_port" || true; fi
  echo ping | timeout 10 ip netns exec "$ns" "$@" ncat "$host" "$port" 2>&1 || true
}
