# run --threads 3: each thread has an inbound and an outbound listener of its own on the same port
# (SO_REUSEPORT), the kernel spreads connections over them, /stats counts them all in one figure per
# listener, and a SIGTERM drains every thread.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

THREADS=3
HELD=24
make_pod_and_client
install_redirect_rules "$POD"
# A server that keeps every connection open and only reads.
spawn ip netns exec "$POD" timeout 120 ncat -l -k --recv-only "$POD_IP" 8083 >/dev/null 2>&1
wait_listen "$POD" 8083 || fail "no server on 8083"

start_sidecar "$POD" "$WORK/threads" --threads "$THREADS"
[ "$(cat "/proc/$SIDECAR_PID/comm")" = podproxy-sideca ] || fail "pid $SIDECAR_PID is not the sidecar"
for port in 15006 15001; do
  expect_eq "listening sockets on $port" "$(ip netns exec "$POD" ss -Htln "sport = :$port" | grep -c LISTEN)" "$THREADS"
done

# tfds PID: for each epoll descriptor of PID, "FD COUNT" (how many descriptors its set watches). Every
# proxy has a set of its own, and each connection adds its two sockets to the set of the proxy that
# accepted it; nothing else changes while connections open.
tfds() {
  local fd
  for fd in /proc/"$1"/fd/*; do
    [ "$(readlink "$fd")" = "anon_inode:[eventpoll]" ] || continue
    echo "${fd##*/} $(grep -c '^tfd:' "/proc/$1/fdinfo/${fd##*/}")"
  done
}
tfds "$SIDECAR_PID" | sort >"$WORK/tfds.before"

# $HELD clients, held open by one shell in the client namespace (bash's /dev/tcp: one process, no children).
mkfifo "$WORK/release"
spawn ip netns exec "$CLIENT" timeout 120 bash -c "
  for i in \$(seq $HELD); do exec {fd}<>/dev/tcp/$POD_IP/8083 || exit 1; done
  echo opened >'$WORK/opened'
  read -r _ <'$WORK/release'"
HOLDER=$SPAWNED
wait_for 20 test -s "$WORK/opened" || fail "the clients could not connect"
expect_stat "$POD" downstream_cx_active inbound "$HELD"
expect_stat "$POD" upstream_cx_total inbound "$HELD"

tfds "$SIDECAR_PID" | sort >"$WORK/tfds.after"
# Sets whose watch count grew, and by how much in all: 2 per held connection.
read -r sets added < <(join "$WORK/tfds.before" "$WORK/tfds.after" |
  awk '$3 > $2 { sets++; added += $3 - $2 } END { print sets + 0, added + 0 }')
expect_eq "sockets added to the proxies' epoll sets" "$added" $((2 * HELD))
[ "$sets" -ge 2 ] || fail "all $HELD connections went to one thread's proxy (sets that grew: $sets)"
pass "$HELD connections spread over $sets of the $THREADS threads' inbound proxies"

echo >"$WORK/release"
wait "$HOLDER" || fail "the client holder failed"
expect_stat "$POD" downstream_cx_active inbound 0
expect_stat "$POD" downstream_cx_total inbound "$HELD"
expect_stat "$POD" downstream_cx_destroy inbound "$HELD"

# One more connection after them, then the drain: every thread's proxies stop and the process exits 0.
serve_pong "$POD" "$POD_IP" 8081 1
wait_listen "$POD" 8081 || fail "no server on 8081"
expect_eq "inbound after the held ones" "$(client "$CLIENT" "$POD_IP" 8081)" pong
expect_stat "$POD" downstream_cx_total inbound $((HELD + 1))
stop_sidecar || fail "exit status $?"
grep -q "drained: every connection is done; exiting" "$WORK/threads.err" || { cat "$WORK/threads.err"; fail "no drain line"; }
pass "drained all $THREADS threads"
