# check-binds against real ncat servers in a pod namespace with a veth pod IP (the seed's netcat-lo and
# netcat-eth0, plus a server on every address): the table, --json, --pid, and --policy's exit status.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/init_lib.sh"

make_pod_and_client
ip -n "$POD" addr del fd77::2/64 dev eth0   # an IPv4-only pod, as in the seed's cluster

serve "$POD" 127.0.0.1 8080 netcat-lo
LO_SERVER=$SPAWNED        # the server loop's shell: it lives in the pod's namespace
serve "$POD" 10.77.0.2 8081 netcat-eth0
ETH0_SERVER=$SPAWNED
serve "$POD" 0.0.0.0 8082 netcat-any
serve "$POD" :: 8083 netcat-v6only            # ncat sets IPV6_V6ONLY on an explicit [::]
V6ONLY_SERVER=$SPAWNED
serve "$POD" 127.0.0.1 15021 sidecar-health   # the sidecar's own port: not listed

table=$(ip netns exec "$POD" "$SIDECAR" check-binds)
echo "$table"
row() { grep -E "^$1 " <<<"$table" || fail "no row for port $1"; }
grep -q 'pod IP 10.77.0.2' <<<"$table" || fail "pod IP not detected from eth0"
! grep -qE '^15021 ' <<<"$table" || fail "the sidecar's own port 15021 is listed"
[[ "$(row 8080)" =~ ^8080\ +127\.0\.0\.1\ +yes\ +no\ +bound\ to\ 127\.0\.0\.1\ \(loopback\ only\) ]] ||
  fail "8080 row: $(row 8080)"
grep -qF 'the pod-ip policy dials 10.77.0.2:8080' <<<"$(row 8080)" || fail "8080: reason does not say what pod-ip dials"
[[ "$(row 8081)" =~ ^8081\ +10\.77\.0\.2\ +no\ +yes\ +bound\ to\ 10\.77\.0\.2\ \(the\ pod\ IP\ only\) ]] ||
  fail "8081 row: $(row 8081)"
grep -qF 'the loopback policy dials 127.0.0.1:8081' <<<"$(row 8081)" || fail "8081: reason does not say what loopback dials"
[[ "$(row 8082)" =~ ^8082\ +0\.0\.0\.0\ +yes\ +yes\ +.*both\ policies\ reach\ it ]] || fail "8082 row: $(row 8082)"
[[ "$(row 8083)" =~ ^8083\ +\[::\]\ +no\ +no\ +.*IPV6_V6ONLY\ keeps\ IPv4\ out ]] || fail "8083 row: $(row 8083)"
pass "table: 127.0.0.1 -> loopback only, pod IP -> pod-ip only, 0.0.0.0 -> both, v6-only [::] -> neither, with reasons"

# The verdicts are the truth: what each policy's dial gets from the real servers.
got=$(ask "$POD" 127.0.0.1 8080 "$POD" 8080); [ "$got" = netcat-lo ] || fail "127.0.0.1:8080 answered '$got'"
got=$(ask "$POD" 10.77.0.2 8080); grep -q refused <<<"$got" || fail "10.77.0.2:8080 answered '$got'"
got=$(ask "$POD" 127.0.0.1 8081); grep -q refused <<<"$got" || fail "127.0.0.1:8081 answered '$got'"
got=$(ask "$POD" 10.77.0.2 8081 "$POD" 8081); [ "$got" = netcat-eth0 ] || fail "10.77.0.2:8081 answered '$got'"
got=$(ask "$POD" 127.0.0.1 8083); grep -q refused <<<"$got" || fail "127.0.0.1:8083 answered '$got'"
got=$(ask "$POD" 10.77.0.2 8083); grep -q refused <<<"$got" || fail "10.77.0.2:8083 answered '$got'"
pass "the real servers answer exactly the dials the verdicts say they do"

json=$(ip netns exec "$POD" "$SIDECAR" check-binds --json)
jq -e '.schema == 1 and .pid == null and .pod_ips == ["10.77.0.2"] and .policy == null and .unreachable == []' \
  <<<"$json" >/dev/null || fail "json header: $json"
jq -e '[.ports[].port] == [8080, 8081, 8082, 8083]' <<<"$json" >/dev/null || fail "json ports: $json"
jq -e '.ports[0].listeners[0].address == "127.0.0.1" and .ports[0].loopback.reachable and
       (.ports[0].pod_ip.reachable | not) and .ports[0].pod_ip.ipv4 == false and .ports[0].pod_ip.ipv6 == null' \
  <<<"$json" >/dev/null || fail "json 8080: $json"
jq -e '(.ports[1].loopback.reachable | not) and .ports[1].pod_ip.reachable and
       .ports[2].loopback.summary == "yes" and .ports[2].pod_ip.summary == "yes" and
       .ports[3].listeners[0].v6_only == true and .ports[3].pod_ip.summary == "no"' <<<"$json" >/dev/null ||
  fail "json 8081/8082: $json"
pass "--json: schema 1, pod_ips, one object per port with both policies' reachability"

status=0; out=$(ip netns exec "$POD" "$SIDECAR" check-binds --policy pod-ip) || status=$?
[ "$status" = 1 ] || fail "--policy pod-ip with a 127.0.0.1 server: exit $status, want 1"
grep -q 'policy pod-ip: 2 listening port(s) unreachable through the sidecar: 8080, 8083' <<<"$out" || fail "$out"
status=0; ip netns exec "$POD" "$SIDECAR" check-binds --policy loopback --json >/tmp/"$TEST_TAG".json || status=$?
[ "$status" = 1 ] || fail "--policy loopback with a pod-IP server: exit $status, want 1"
jq -e '.policy == "loopback" and .unreachable == [8081, 8083]' /tmp/"$TEST_TAG".json >/dev/null || fail "json unreachable"
rm -f /tmp/"$TEST_TAG".json
pass "--policy exits 1 and names the unreachable ports: pod-ip -> 8080, 8083; loopback -> 8081, 8083"

# --pid from outside the namespace: the same verdicts, read through /proc/PID/net and setns.
from_outside=$("$SIDECAR" check-binds --pid "$LO_SERVER")
grep -q "namespace of pid $LO_SERVER (pod IP 10.77.0.2)" <<<"$from_outside" || fail "--pid header: $from_outside"
[ "$(grep -E '^80' <<<"$from_outside")" = "$(grep -E '^80' <<<"$table")" ] || fail "--pid verdicts differ: $from_outside"
pass "--pid $LO_SERVER reads the pod's listeners and pod IP from outside, same verdicts"

# Only servers every policy reaches: --policy passes.
kill "$LO_SERVER" "$ETH0_SERVER" "$V6ONLY_SERVER"
wait_for 10 sh -c "! ip netns exec '$POD' ss -Htln | grep -qE ':(8080|8081|8083) '" || fail "servers did not stop"
ip netns exec "$POD" "$SIDECAR" check-binds --policy pod-ip >/dev/null || fail "--policy pod-ip failed with only 0.0.0.0"
ip netns exec "$POD" "$SIDECAR" check-binds --policy loopback >/dev/null || fail "--policy loopback failed with only 0.0.0.0"
pass "with only a 0.0.0.0 server, --policy pod-ip and --policy loopback exit 0"
