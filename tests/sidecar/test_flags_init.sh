# init and check-binds refuse every bad flag or value with exit 2 and a message naming the flag; init
# refuses to run without CAP_NET_ADMIN or without its tools (exit 2, a clear message) and changes nothing.
source "$(dirname "$0")/lib.sh"

make_ns pod >/dev/null
POD="${TEST_TAG}-pod"
in_pod() { ip netns exec "$POD" "$@"; }
snapshot() { in_pod sh -c 'iptables-save; ip6tables-save; ip -4 rule; ip -6 rule; ip addr' | grep -v '^#'; }
before=$(snapshot)

# refused WANT_IN_MESSAGE CMD...: CMD exits 2 and its stderr names WANT_IN_MESSAGE.
refused() {
  local want=$1; shift
  local status=0 err
  err=$(in_pod "$@" 2>&1 >/dev/null) || status=$?
  [ "$status" = 2 ] || fail "'$*': exit $status, want 2 (stderr: $err)"
  grep -qF -- "$want" <<<"$err" || fail "'$*': message does not name '$want': $err"
  pass "'${*//"$SIDECAR"/podproxy-sidecar}' -> exit 2: $(head -1 <<<"$err")"
}

refused --mode "$SIDECAR" init --mode nat
refused --inbound-port "$SIDECAR" init --inbound-port 0
refused --inbound-port "$SIDECAR" init --inbound-port http
refused --outbound-port "$SIDECAR" init --outbound-port 70000
refused --outbound-port "$SIDECAR" init --outbound-port 15006
refused --inbound-ports "$SIDECAR" init --inbound-ports '8080,*'
refused --inbound-ports "$SIDECAR" init --inbound-ports 8080,
refused --exclude-inbound-ports "$SIDECAR" init --exclude-inbound-ports 22,ssh
refused --exclude-outbound-ports "$SIDECAR" init --exclude-outbound-ports 0
refused --proxy-uid "$SIDECAR" init --proxy-uid -1
refused --proxy-gid "$SIDECAR" init --proxy-gid 4294967295
refused --proxy-mark "$SIDECAR" init --proxy-mark 0
refused --proxy-mark "$SIDECAR" init --proxy-mark 0xZZ
refused --proxy-mark "$SIDECAR" init --mode tproxy --proxy-mark 1338
refused --outbound-ip-ranges "$SIDECAR" init --outbound-ip-ranges 10.0.0.0
refused --outbound-ip-ranges "$SIDECAR" init --outbound-ip-ranges '10.0.0.0/8,*'
refused --exclude-outbound-ip-ranges "$SIDECAR" init --exclude-outbound-ip-ranges 10.0.0.0/8,fd00::/129
refused --exclude-outbound-ip-ranges "$SIDECAR" init --exclude-outbound-ip-ranges '*'
refused --exclude-outbound-ip-ranges "$SIDECAR" init --exclude-outbound-ip-ranges 10.0.0.0/8,,fd00::/8
refused --include-outbound-ports "$SIDECAR" init --include-outbound-ports 80,,81
refused --exclude-interfaces "$SIDECAR" init --exclude-interfaces eth0,abcdefghijklmnop
refused --exclude-interfaces "$SIDECAR" init --exclude-interfaces net/1
refused --kubevirt-interfaces "$SIDECAR" init --kubevirt-interfaces 'kv 0'
refused --kubevirt-interfaces "$SIDECAR" init --kubevirt-interfaces kv0:1
refused --include-outbound-owner-groups "$SIDECAR" init --include-outbound-owner-groups no-such-group-here
refused --exclude-outbound-owner-groups "$SIDECAR" init --exclude-outbound-owner-groups 1000,-5
refused --exclude-outbound-owner-groups "$SIDECAR" init --include-outbound-owner-groups 1000 --exclude-outbound-owner-groups 2000
refused --inbound-tunnel-port "$SIDECAR" init --inbound-tunnel-port 0
refused --include-outbound-owner-groups "$SIDECAR" init --include-outbound-owner-groups "$(seq -s, 1000 1064)"
refused --proxy-mark-only "$SIDECAR" init --proxy-mark-only
refused --proxy-mark-only "$SIDECAR" init --proxy-mark 5 --proxy-mark-only --proxy-uid 0
refused --proxy-mark-only "$SIDECAR" init --proxy-mark 5 --proxy-mark-only --proxy-gid 1337
refused --bogus "$SIDECAR" init --bogus
refused --pid "$SIDECAR" check-binds --pid abc
refused --pid "$SIDECAR" check-binds --pid 0
refused --pid "$SIDECAR" check-binds --pid 4294967294
refused --pod-ip "$SIDECAR" check-binds --pod-ip 10.0.0.300
refused --pod-ip "$SIDECAR" check-binds --pod-ip 127.0.0.1
refused --policy "$SIDECAR" check-binds --policy localhost
refused --jsn "$SIDECAR" check-binds --jsn
# A namespace with only lo has no pod IP to judge by.
refused "pass --pod-ip" "$SIDECAR" check-binds
[ "$(snapshot)" = "$before" ] || fail "a refused command changed the namespace"

# Without privileges: the nobody user (setpriv drops every capability with the uid change).
refused "CAP_NET_ADMIN" setpriv --reuid 65534 --regid 65534 --clear-groups "$SIDECAR" init
refused "CAP_NET_ADMIN" setpriv --reuid 65534 --regid 65534 --clear-groups "$SIDECAR" init --clean
# Root in name only: a user namespace's root has no CAP_NET_ADMIN over this network namespace. Only where
# user namespaces can be made at all (not in a chroot, a default container, or with them disabled).
if userns_err=$(in_pod unshare --user --map-root-user true 2>&1); then
  refused "not permitted" unshare --user --map-root-user "$SIDECAR" init
else
  skip "init as a user namespace's root: this machine cannot create user namespaces (unshare --user: ${userns_err:-failed})"
fi
# Without its tools.
refused "'iptables-save' not found in PATH" env PATH=/nonexistent "$SIDECAR" init
[ "$(snapshot)" = "$before" ] || fail "a refused init changed the namespace"

# The values next to those refused are taken (so the refusals above are about the values, not the flags).
in_pod "$SIDECAR" init --dry-run --outbound-ip-ranges 10.0.0.0/8,fd00::/8 --exclude-outbound-ip-ranges 10.1.0.0/16 \
  --include-outbound-ports 80,81 --exclude-interfaces eth0,abcdefghijklmno --kubevirt-interfaces kv0 \
  --include-outbound-owner-groups 1000,root --inbound-tunnel-port 15009 --drop-invalid >/dev/null ||
  fail "init --dry-run refused valid values of Istio's capture options"
in_pod "$SIDECAR" init --dry-run --outbound-ip-ranges '' --exclude-outbound-owner-groups 2000 --inbound-tunnel-port '' \
  >/dev/null || fail "init --dry-run refused the empty values of Istio's capture options"
pass "init takes valid and empty values of Istio's capture options"

# --dry-run needs neither privileges nor a namespace change.
out=$(in_pod setpriv --reuid 65534 --regid 65534 --clear-groups "$SIDECAR" init --dry-run) || fail "dry run as nobody failed"
grep -q -- '-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT' <<<"$out" || fail "dry run as nobody printed no rules"
pass "init --dry-run works unprivileged"

grep -q -- '--exclude-outbound-ports' <<<"$(in_pod "$SIDECAR" init --help)" || fail "init --help lacks its flags"
grep -q -- '--policy' <<<"$(in_pod "$SIDECAR" check-binds --help)" || fail "check-binds --help lacks its flags"
pass "init --help and check-binds --help list their flags"
