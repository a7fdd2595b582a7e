# init --mode tproxy: Istio's mangle chains, the fwmark rule and the local route table are applied (IPv4
# and IPv6), applying twice changes nothing, a connection really reaches a transparent listener with the
# client's own address, and --clean leaves the namespace exactly as it was.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/init_lib.sh"

make_pod_and_client
in_pod() { ip netns exec "$POD" "$@"; }
# (eth0's IPv6 link-local address and route appear whenever the kernel gets to them: not init's business.)
snapshot() {
  in_pod sh -c 'iptables-save; ip6tables-save; ip -4 rule; ip -6 rule; ip -4 route show table all;
                ip -6 route show table all; ip addr show dev lo' | grep -v -e '^#' -e 'fe80::'
}
# The user's own rules in IPv4's tables; IPv6's tables are created by init (and deleted by --clean).
in_pod iptables -t mangle -A PREROUTING -p tcp --dport 9999 -j RETURN
in_pod iptables -t nat -A OUTPUT -p tcp --dport 9999 -j RETURN
before=$(snapshot)

dry=$(in_pod "$SIDECAR" init --mode tproxy --dry-run)
for line in \
  '*mangle' \
  '-A PODPROXY_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --on-port 15006 --tproxy-mark 1337/0xffffffff' \
  '-A PODPROXY_TPROXY ! -d ::1/128 -p tcp -j TPROXY --on-port 15006 --tproxy-mark 1337/0xffffffff' \
  '# IPv4: ip -4 rule add fwmark 1337 lookup 133 (unless present)' \
  '# IPv4: ip -4 route add local default dev lo table 133 (unless present)' \
  '# IPv6: ip -6 rule add fwmark 1337 lookup 133 (unless present)'; do
  grep -qxF -- "$line" <<<"$dry" || fail "tproxy dry run lacks: $line"
done
[ "$(snapshot)" = "$before" ] || fail "--dry-run changed the namespace"
pass "init --mode tproxy --dry-run prints the mangle rules, ip rule and route, and changes nothing"

in_pod "$SIDECAR" init --mode tproxy >/dev/null
for t in iptables ip6tables; do
  saved=$(in_pod $t-save -t mangle)
  grep -q -- '-A PREROUTING -p tcp -j PODPROXY_PREROUTING' <<<"$saved" || fail "$t: no mangle PREROUTING hook"
  grep -q -- '-j TPROXY --on-port 15006 .*--tproxy-mark 0x539/0xffffffff' <<<"$saved" || fail "$t: no TPROXY rule"
  grep -q -- 'CONNMARK --save-mark' <<<"$saved" || fail "$t: no connmark save"
  grep -q -- '-A OUTPUT -p tcp -j PODPROXY_OUTPUT' <<<"$(in_pod $t-save -t nat)" || fail "$t: no outbound capture"
  grep -qx -- '-A PODPROXY_OUTPUT -o lo -m mark --mark 0x539 -j RETURN' <<<"$(in_pod $t-save -t nat)" ||
    fail "$t: TPROXY-marked deliveries are not exempt from the own-pod rule"
  ! grep -q -- '-A PREROUTING -p tcp -j PODPROXY_INBOUND' <<<"$(in_pod $t-save -t nat)" || fail "$t: nat inbound in tproxy mode"
done
for f in -4 -6; do
  grep -q 'fwmark 0x539 lookup 133' <<<"$(in_pod ip $f rule)" || fail "ip $f rule: no fwmark 0x539 lookup 133"
  grep -q '^local default dev lo' <<<"$(in_pod ip $f route show table 133)" || fail "ip $f: no local default route in 133"
done
pass "TPROXY mode applied: mangle chains (IPv4, IPv6), ip rule fwmark 0x539 lookup 133, local route in table 133"

first=$(snapshot)
in_pod "$SIDECAR" init --mode tproxy >/dev/null
[ "$(snapshot)" = "$first" ] || { diff <(echo "$first") <(snapshot) >&2; fail "applying tproxy twice changed something"; }
pass "applying TPROXY mode twice changes nothing (no duplicate ip rule either)"

# A transparent listener on 15006 (what `run --mode tproxy` does) sees the client's own address and the
# original destination as its local address. Python stands in for the proxy: ncat cannot set IP_TRANSPARENT.
spawn ip netns exec "$POD" timeout 30 /usr/bin/python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 15006)); s.listen(4)
c, peer = s.accept(); c.recv(64)
c.sendall(("peer=%s local=%s:%d\n" % (peer[0], *c.getsockname())).encode()); c.close()'
wait_listen "$POD" 15006 || fail "transparent listener did not start"
got=$(ask "$CLIENT" 10.77.0.2 8080)
[ "$got" = "peer=10.77.0.1 local=10.77.0.2:8080" ] || fail "TPROXY delivery: got '$got'"
pass "client -> pod:8080 reaches the transparent listener as $got"

in_pod "$SIDECAR" init --clean >/dev/null
[ "$(snapshot)" = "$before" ] || { diff <(echo "$before") <(snapshot) >&2; fail "--clean did not restore the namespace"; }
pass "init --clean removes the mangle chains, the ip rules and the routes, and keeps the user's rules"

# Switching modes removes the other mode's pieces.
in_pod "$SIDECAR" init --mode tproxy >/dev/null
in_pod "$SIDECAR" init --mode redirect >/dev/null
! grep -q 'lookup 133' <<<"$(in_pod ip -4 rule)" || fail "redirect after tproxy left the ip rule"
! grep -q PODPROXY_ <<<"$(in_pod iptables-save -t mangle)" || fail "redirect after tproxy left mangle chains"
in_pod "$SIDECAR" init --clean >/dev/null
[ "$(snapshot)" = "$before" ] || fail "--clean after a mode switch did not restore the namespace"
pass "init --mode redirect after tproxy removes TPROXY's rule, route and chains; --clean restores all"
