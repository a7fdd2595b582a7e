# The seed demo without root (issue 21): examples/seed-demo/run.sh run by an ordinary user (nobody, uid
# 65534, no capabilities) re-runs itself in a user namespace of its own and prints the seed's table with
# every --check as the root run (demo.seed) has them; the host's rules, links, routes, namespaces and mounts
# are the same before and after, and none of the demo's namespaces or rules ever shows on the host while it
# runs. And a normal user is told, exit 2, when a package is missing or the build directory is not writable.
#   bash test_rootless.sh PATH_TO_podproxy-sidecar        (as root: it switches to uid 65534 itself)
# Exit 77 (skipped, saying why) where that user cannot create a user namespace.
set -euo pipefail
SIDECAR=$(readlink -f "${1:?usage: test_rootless.sh PATH_TO_podproxy-sidecar}")
DEMO=$(readlink -f "$(dirname "$0")/../../examples/seed-demo/run.sh")
USER_ID=65534

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
skip() { echo "skip: $*"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "run as root: the test switches to uid $USER_ID itself (it is root's build the user runs)"
for tool in setpriv unshare; do command -v "$tool" >/dev/null || skip "'$tool' is missing (Debian package: util-linux)"; done
# The user's working directory: the test's own may be under a directory the user cannot search.
cd /
as_user() { setpriv --reuid="$USER_ID" --regid="$USER_ID" --clear-groups "$@"; }
why=$(as_user unshare --user --map-root-user true 2>&1) \
  || skip "uid $USER_ID cannot create a user namespace here (unshare --user --map-root-user said: ${why:-nothing})"

tmp=$(mktemp -d /tmp/pprootless.XXXXXX)
demo_pid=
cleanup() {
  [ -z "$demo_pid" ] || kill "$demo_pid" 2>/dev/null || true
  [ -z "$demo_pid" ] || wait "$demo_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 0755 "$tmp"

# The user must be able to read the script and execute the sidecar; a clone under /root is not searchable
# by it: then both are copied to a directory of the test's own.
sidecar=$SIDECAR
demo=$DEMO
if ! as_user test -x "$SIDECAR" || ! as_user test -r "$DEMO"; then
  mkdir -p "$tmp/copy/examples/seed-demo"
  install -m 0755 "$SIDECAR" "$tmp/copy/podproxy-sidecar"
  install -m 0644 "$DEMO" "$tmp/copy/examples/seed-demo/run.sh"
  sidecar=$tmp/copy/podproxy-sidecar
  demo=$tmp/copy/examples/seed-demo/run.sh
  echo "note: uid $USER_ID cannot reach the build or the clone: running copies in $tmp/copy"
fi

# What the demo must leave alone on the host: rules (no counters), links, addresses, rules and routes of the
# root network namespace.
host_state() {
  { iptables-save; ip6tables-save; } 2>&1 | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
  ip -o link | awk '{print $2}'
  ip -o addr | awk '{print $2, $4}'
  ip rule; ip -6 rule
  ip route show table all
}
# Things of the demo's own that must never be on the host: its namespaces (named after its pid), its
# tmpfs (source "ppdemo"), its nat chains (KUBE-SERVICES, PODPROXY_*).
demo_on_host() {
  local tag=$1
  ip netns list 2>/dev/null | awk '{print $1}' | grep "^$tag-" || true
  grep -w ppdemo /proc/self/mountinfo || true
  { iptables-save -t nat; ip6tables-save -t nat; } 2>/dev/null | grep -E 'KUBE-SERVICES|PODPROXY_' || true
}
before=$(host_state)
[ -z "$(demo_on_host ppdemo-none)" ] || fail "the host already has KUBE-SERVICES/PODPROXY_ nat chains or a ppdemo mount: cannot tell the demo's apart"

# --- the demo, as uid 65534 ---------------------------------------------------------------------------------------
# setpriv, bash and unshare each exec the next, so the demo's shell keeps this pid, which names its namespaces
# (setpriv itself, not as_user: a function in the background would be a subshell with a pid of its own).
setpriv --reuid="$USER_ID" --regid="$USER_ID" --clear-groups bash "$demo" --check --no-install --sidecar "$sidecar" \
  >"$tmp/out" 2>&1 &
demo_pid=$!
tag=ppdemo$demo_pid
host_userns=$(readlink /proc/self/ns/user)
host_netns=$(readlink /proc/self/ns/net)
namespaced=0
deadline=$((SECONDS + 240))
while kill -0 "$demo_pid" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the demo did not finish in 240 s: $(tail -n 20 "$tmp/out")"
  seen=$(demo_on_host "$tag")
  [ -z "$seen" ] || fail "while the demo runs, the host shows: $seen"
  # once it has re-run itself, the demo's shell is in a user and a network namespace of its own
  if userns=$(readlink "/proc/$demo_pid/ns/user" 2>/dev/null) && netns=$(readlink "/proc/$demo_pid/ns/net" 2>/dev/null) &&
     [ "$userns" != "$host_userns" ] && [ "$netns" != "$host_netns" ] &&
     [ "$(awk '/^Uid:/ {print $2}' "/proc/$demo_pid/status" 2>/dev/null)" = "$USER_ID" ]; then
    namespaced=1
  fi
  sleep 0.2
done
status=0
wait "$demo_pid" || status=$?
demo_pid=
out=$(cat "$tmp/out")
[ "$status" -eq 0 ] || fail "the demo as uid $USER_ID exited $status:
$out"
[ "$namespaced" -eq 1 ] || fail "the demo's shell was never seen in a user and network namespace of its own as uid $USER_ID"
grep -q "^== topology: namespaces $tag-" <<<"$out" || fail "the demo's namespaces are not named $tag-*: the host checks watched the wrong names"
grep -q '^== not root: running inside a user namespace' <<<"$out" || fail "the demo did not say it ran in a user namespace"
pass "the demo ran as uid $USER_ID, in a user and network namespace of its own (exit 0)"

# The seed's table, as the root run prints it: lo answers under 1.9 (loopback) and resets under 1.10
# (pod-ip); eth0 the other way round.
reset='Ncat: Connection reset by peer\.'
grep -Eq "^Istio 1\.9  \(--inbound-policy loopback\) +pong +$reset *$" <<<"$out" || fail "the 1.9 row differs from the seed:
$out"
grep -Eq "^Istio 1\.10 \(--inbound-policy pod-ip\) +$reset +pong *$" <<<"$out" || fail "the 1.10 row differs from the seed:
$out"
pass "the seed's table: 1.9 lo=pong eth0=reset, 1.10 lo=reset eth0=pong"
# Every check demo.seed makes: 12 cells, a UF access-log line for each of the 4 resets, and per pod the
# prediction of check-binds and the two counters.
ok=$(grep -c '^CHECK .* ok ' <<<"$out" || true)
! grep -q '^CHECK .* FAIL ' <<<"$out" || fail "a check failed: $(grep '^CHECK .* FAIL ' <<<"$out")"
[ "$ok" -eq 28 ] || fail "expected 28 CHECK ok lines, got $ok:
$out"
pass "all 28 checks of the root run hold (cells, UF lines, check-binds predictions, counters)"

after=$(host_state)
[ "$after" = "$before" ] || fail "the host changed: $(diff <(echo "$before") <(echo "$after") || true)"
[ -z "$(demo_on_host "$tag")" ] || fail "after the demo, the host shows: $(demo_on_host "$tag")"
pass "the host's rules, links, addresses, ip rules and routes are as before; none of $tag-* ever showed on it"

# --- what a normal user is told ------------------------------------------------------------------------------
# refused WORD CMD...: exit 2 and WORD in the message.
refused() {
  local want=$1; shift
  local rc=0 err
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" -eq 2 ] || fail "'$*': exit $rc, want 2 ($err)"
  grep -qF -- "$want" <<<"$err" || fail "'$*': the message does not say '$want': $err"
  pass "refused (exit 2): $(tail -n 1 <<<"$err")"
}
# A package missing (dpkg-query, first in PATH, says ncat is not installed): named, and apt is not tried.
mkdir "$tmp/bin"
cat >"$tmp/bin/dpkg-query" <<'EOF'
#!/bin/sh
for last; do :; done
[ "$last" = ncat ] && exit 1
exec /usr/bin/dpkg-query "$@"
EOF
chmod 0755 "$tmp/bin" "$tmp/bin/dpkg-query"
refused "missing packages: ncat" as_user env PATH="$tmp/bin:$PATH" bash "$demo" --sidecar "$sidecar"
# Without --sidecar it builds in the clone's build/seed-demo, here a directory the user cannot write.
mkdir -p "$tmp/clone/examples/seed-demo"
install -m 0644 "$DEMO" "$tmp/clone/examples/seed-demo/run.sh"
chmod 0755 "$tmp/clone" "$tmp/clone/examples" "$tmp/clone/examples/seed-demo"
refused "not writable" as_user bash "$tmp/clone/examples/seed-demo/run.sh" --no-install
