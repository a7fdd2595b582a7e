# Shared helpers for the sidecar's shell tests. Source it; it sets `set -euo pipefail` and an EXIT trap
# that removes every namespace made with make_ns and kills every process started with spawn.
set -euo pipefail
SIDECAR=${1:?usage: test_X.sh PATH_TO_podproxy-sidecar}
SIDECAR=$(readlink -f "$SIDECAR")
TEST_TAG="pp$$"
_namespaces=()
_pids=()

cleanup() {
  local pid ns
  for pid in "${_pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  for pid in "${_pids[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
  for ns in "${_namespaces[@]:-}"; do [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true; done
  # Also every namespace named with this test's tag: make_ns called as $(make_ns ...) runs in a subshell,
  # where it cannot add to _namespaces (and $$ is this shell's pid there too).
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${TEST_TAG}-" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
# skip WHY: one part of a test cannot run on this machine; says what is missing, and the test goes on.
skip() { echo "skip: $*"; }

# make_ns SHORTNAME -> prints the full, pid-unique namespace name (lo up). Removed on exit.
make_ns() {
  local ns="${TEST_TAG}-$1"
  ip netns add "$ns"
  _namespaces+=("$ns")
  ip -n "$ns" link set lo up
  echo "$ns"
}

# spawn CMD...: starts CMD in the background, remembers its pid in SPAWNED (killed on exit).
spawn() {
  "$@" &
  SPAWNED=$!
  _pids+=("$SPAWNED")
}

# wait_for TIMEOUT_S CMD...: retries CMD every 0.1 s until it succeeds or TIMEOUT_S passes.
wait_for() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# wait_listen NS PORT [TIMEOUT_S]: waits until a TCP listener on PORT exists in NS.
wait_listen() {
  wait_for "${3:-10}" sh -c "ip netns exec '$1' ss -Htln 'sport = :$2' | grep -q LISTEN"
}
