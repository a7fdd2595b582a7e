# Istio's capture options in namespaces of the test's own, IPv4 and IPv6: an excluded outbound range
# reaches its server without the proxy while the rest is captured; an included port is captured outside
# the included ranges, but not inside an excluded range (Istio's rule order: exclusions first); an excluded interface is captured neither way; a KubeVirt interface's inbound traffic
# goes to the outbound listener; owner groups choose whose traffic is captured; Istio's tunnel port 15008
# is left to Istio's own proxy (inbound, and the proxy's calls to its own pod); every option's rules apply,
# apply again without change, and --clean leaves the namespace as it was. ncat listeners stand in for the
# proxy on 15006 and 15001, so the reply says which path a connection took; iptables' packet counters
# confirm the exclusion rules were the ones that matched.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/init_lib.sh"

make_pod_and_client   # eth0: pod 10.77.0.2 / fd77::2, client 10.77.0.1 / fd77::1
# A second range on the same link (not excluded), and a second link, eth1, to a "side" namespace.
ip -n "$POD" addr add 10.79.0.2/24 dev eth0
ip -n "$CLIENT" addr add 10.79.0.1/24 dev eth0
ip -n "$POD" addr add fd79::2/64 dev eth0 nodad
ip -n "$CLIENT" addr add fd79::1/64 dev eth0 nodad
make_ns side >/dev/null
SIDE="${TEST_TAG}-side"
ip link add eth1 netns "$POD" type veth peer name eth0 netns "$SIDE"
ip -n "$POD" addr add 10.78.0.2/24 dev eth1
ip -n "$SIDE" addr add 10.78.0.1/24 dev eth0
ip -n "$POD" addr add fd78::2/64 dev eth1 nodad
ip -n "$SIDE" addr add fd78::1/64 dev eth0 nodad
ip -n "$POD" link set eth1 up
ip -n "$SIDE" link set eth0 up
ip -n "$SIDE" route add default via 10.78.0.2
ip -n "$SIDE" -6 route add default via fd78::2

in_pod() { ip netns exec "$POD" "$@"; }
snapshot() {
  in_pod sh -c 'iptables-save; ip6tables-save; ip -4 rule; ip -6 rule; ip -4 route show table all;
                ip -6 route show table all; ip addr show dev lo' | grep -v -e '^#' -e 'fe80::'
}
before=$(snapshot)

expect() {  # expect WHAT GOT WANT
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  pass "$1: $3"
}
# packets TOOL CHAIN RULE_TEXT: the packet count of the nat rule whose iptables -S spelling contains RULE_TEXT.
packets() {
  local tool=$1 chain=$2 text=$3 n
  n=$(in_pod "$tool" -t nat -S "$chain" | grep -nF -- "$text" | head -1 | cut -d: -f1)
  [ -n "$n" ] || fail "$tool $chain has no rule '$text': $(in_pod "$tool" -t nat -S "$chain")"
  # -S lists "-N CHAIN" first: rule k is line k+1; -L -v -x lists two header lines, then rule k on line k+2.
  in_pod "$tool" -t nat -L "$chain" -v -x -n | sed -n "$((n + 1))p" | awk '{print $1}'
}

serve "$POD" any 15006 inbound-listener
serve "$POD" any 15001 outbound-listener
serve "$POD" any 15008 tunnel-port
serve "$POD" any 8080 app-8080
serve "$CLIENT" any 9000 real-server-9000
serve "$CLIENT" any 9002 real-server-9002
serve "$SIDE" any 9000 side-server-9000

# --- outbound ranges, included ports, excluded interface, and the tunnel port (the defaults)
in_pod "$SIDECAR" init --exclude-outbound-ip-ranges 10.77.0.0/24,fd77::/64 --include-outbound-ports 9002 \
  --exclude-interfaces eth1 >/dev/null
for family in 4 6; do
  if [ $family = 4 ]; then excluded=10.77.0.1 other=10.79.0.1 pod=10.77.0.2 side=10.78.0.1 podside=10.78.0.2 tool=iptables
  else excluded=fd77::1 other=fd79::1 pod=fd77::2 side=fd78::1 podside=fd78::2 tool=ip6tables; fi
  range=$([ $family = 4 ] && echo 10.77.0.0/24 || echo fd77::/64)
  was=$(packets $tool PODPROXY_OUTPUT "-d $range -j RETURN")
  expect "IPv$family: app -> excluded range:9000 reaches its server without the proxy" \
    "$(ask "$POD" "$excluded" 9000 "$CLIENT" 9000)" real-server-9000
  now=$(packets $tool PODPROXY_OUTPUT "-d $range -j RETURN")
  [ "$now" -gt "$was" ] || fail "IPv$family: the exclusion rule for $range counted no packet ($was -> $now)"
  pass "IPv$family: the exclusion rule for $range matched it ($was -> $now packets)"
  expect "IPv$family: app -> excluded range:9002 (--include-outbound-ports) is not captured: the exclusion comes first, as in Istio" \
    "$(ask "$POD" "$excluded" 9002 "$CLIENT" 9002)" real-server-9002
  expect "IPv$family: app -> a range not excluded is captured" "$(ask "$POD" "$other" 9000 "$POD" 15001)" outbound-listener
  expect "IPv$family: app -> eth1 (--exclude-interfaces) is not captured" "$(ask "$POD" "$side" 9000 "$SIDE" 9000)" side-server-9000
  expect "IPv$family: eth1 -> pod:8080 (--exclude-interfaces) is not captured" "$(ask "$SIDE" "$podside" 8080 "$POD" 8080)" app-8080
  expect "IPv$family: client -> pod:8080 over eth0 is captured" "$(ask "$CLIENT" "$pod" 8080 "$POD" 15006)" inbound-listener
  expect "IPv$family: client -> pod:15008 (Istio's tunnel port) is not captured" "$(ask "$CLIENT" "$pod" 15008 "$POD" 15008)" tunnel-port
  expect "IPv$family: the proxy (uid 1337) -> its own pod:15008 reaches the tunnel port, not 15006" \
    "$(ask "$POD" "$pod" 15008 "$POD" 15008 setpriv --reuid 1337 --regid 1337 --clear-groups)" tunnel-port
  expect "IPv$family: the proxy (uid 1337) -> its own pod:8080 still goes inbound (rule 2)" \
    "$(ask "$POD" "$pod" 8080 "$POD" 15006 setpriv --reuid 1337 --regid 1337 --clear-groups)" inbound-listener
done

# --- --inbound-tunnel-port '': 15008 is captured like any port (what init did before).
in_pod "$SIDECAR" init --inbound-tunnel-port '' >/dev/null
expect "--inbound-tunnel-port '': client -> pod:15008 is captured" "$(ask "$CLIENT" 10.77.0.2 15008 "$POD" 15006)" inbound-listener
expect "--inbound-tunnel-port '': the proxy -> its own pod:15008 goes to 15006" \
  "$(ask "$POD" 10.77.0.2 15008 "$POD" 15006 setpriv --reuid 1337 --regid 1337 --clear-groups)" inbound-listener

# --- an include list of ranges: only those are captured, each family its own, and the included ports
# whatever their destination.
in_pod "$SIDECAR" init --outbound-ip-ranges 10.79.0.0/24,fd79::/64 --include-outbound-ports 9002 >/dev/null
for case in "10.79.0.1 9000 outbound-listener 15001 $POD" "10.77.0.1 9000 real-server-9000 9000 $CLIENT" \
            "fd79::1 9000 outbound-listener 15001 $POD" "fd77::1 9000 real-server-9000 9000 $CLIENT" \
            "10.77.0.1 9002 outbound-listener 15001 $POD" "fd77::1 9002 outbound-listener 15001 $POD"; do
  read -r dst port want server_port ns <<<"$case"
  expect "--outbound-ip-ranges 10.79.0.0/24,fd79::/64 --include-outbound-ports 9002: app -> $dst:$port" \
    "$(ask "$POD" "$dst" "$port" "$ns" "$server_port")" "$want"
done

# --- KubeVirt: what arrives on eth1 is captured as outbound, whatever its destination.
in_pod "$SIDECAR" init --kubevirt-interfaces eth1 >/dev/null
expect "--kubevirt-interfaces eth1: side -> 10.79.0.1:9000 through the pod goes to the outbound listener" \
  "$(ask "$SIDE" 10.79.0.1 9000 "$POD" 15001)" outbound-listener
expect "--kubevirt-interfaces eth1: side -> [fd79::1]:9000 through the pod goes to the outbound listener" \
  "$(ask "$SIDE" fd79::1 9000 "$POD" 15001)" outbound-listener
expect "--kubevirt-interfaces eth1: client -> pod:8080 over eth0 is still captured inbound" \
  "$(ask "$CLIENT" 10.77.0.2 8080 "$POD" 15006)" inbound-listener

# --- owner groups: exclude one group, then include only one.
in_pod "$SIDECAR" init --exclude-outbound-owner-groups 2000 >/dev/null
as_gid() { echo "setpriv --reuid 0 --regid $1 --clear-groups"; }
# shellcheck disable=SC2046
expect "--exclude-outbound-owner-groups 2000: gid 2000 -> client:9000 is not captured" \
  "$(ask "$POD" 10.77.0.1 9000 "$CLIENT" 9000 $(as_gid 2000))" real-server-9000
# shellcheck disable=SC2046
expect "--exclude-outbound-owner-groups 2000: gid 3000 -> [client]:9000 is captured" \
  "$(ask "$POD" fd77::1 9000 "$POD" 15001 $(as_gid 3000))" outbound-listener
in_pod "$SIDECAR" init --include-outbound-owner-groups 2000 >/dev/null
# shellcheck disable=SC2046
expect "--include-outbound-owner-groups 2000: gid 2000 -> [client]:9000 is captured" \
  "$(ask "$POD" fd77::1 9000 "$POD" 15001 $(as_gid 2000))" outbound-listener
# shellcheck disable=SC2046
expect "--include-outbound-owner-groups 2000: gid 3000 -> client:9000 is not captured" \
  "$(ask "$POD" 10.77.0.1 9000 "$CLIENT" 9000 $(as_gid 3000))" real-server-9000

# --- every option at once, in both modes: iptables takes the rules, a second init changes nothing, and
# --clean puts the namespace back as it was.
for mode in redirect tproxy; do
  args=(--mode "$mode" --outbound-ip-ranges 10.0.0.0/8,fd00::/8 --exclude-outbound-ip-ranges 10.77.0.0/24,fd77::/64
        --include-outbound-ports 9002,443 --exclude-interfaces eth1 --kubevirt-interfaces kv0
        --exclude-outbound-owner-groups 2000,3000 --drop-invalid)
  in_pod "$SIDECAR" init "${args[@]}" >/dev/null || fail "init ${args[*]} failed"
  once=$(snapshot)
  grep -qxF -- '-A PREROUTING -m conntrack --ctstate INVALID -j PODPROXY_DROP' <<<"$once" ||
    fail "$mode: iptables-save shows no INVALID drop hook: $(grep INVALID <<<"$once")"
  in_pod "$SIDECAR" init "${args[@]}" >/dev/null
  [ "$(snapshot)" = "$once" ] || fail "$mode: a second init changed the rules: $(diff <(echo "$once") <(snapshot))"
  pass "$mode: every option applied, and applying again changed nothing"
done
in_pod "$SIDECAR" init --clean >/dev/null
[ "$(snapshot)" = "$before" ] || fail "--clean left: $(diff <(echo "$before") <(snapshot))"
pass "--clean leaves the namespace as it was"
