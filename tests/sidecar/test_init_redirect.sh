# init's REDIRECT rules really capture: inbound connections to any pod port land on the inbound port,
# the app's outbound connections land on the outbound port, and Istio's exemptions pass (the proxy's
# uid, localhost, the app calling its own pod IP, the sidecar's own ports, the excluded ports), over
# IPv4 and IPv6. ncat listeners stand in for the proxy on 15006 and 15001.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/init_lib.sh"

make_pod_and_client
ip netns exec "$POD" "$SIDECAR" init --exclude-inbound-ports 8082 --exclude-outbound-ports 9001 >/dev/null

serve "$POD" any 15006 inbound-listener
serve "$POD" any 15001 outbound-listener
serve "$POD" any 15021 health-port
serve "$POD" any 8082 excluded-inbound
serve "$POD" 10.77.0.2 8081 app-on-pod-ip
serve "$CLIENT" any 9000 real-server-9000
serve "$CLIENT" any 9001 real-server-9001

expect() {  # expect WHAT GOT WANT
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  pass "$1: $3"
}

# Inbound (PREROUTING): every port but the exempt ones goes to 15006.
expect "client -> pod:8080 is captured inbound" "$(ask "$CLIENT" 10.77.0.2 8080 "$POD" 15006)" inbound-listener
expect "client -> [pod]:8080 is captured inbound (IPv6)" "$(ask "$CLIENT" fd77::2 8080 "$POD" 15006)" inbound-listener
expect "client -> pod:15021 (the sidecar's own port) is not captured" "$(ask "$CLIENT" 10.77.0.2 15021 "$POD" 15021)" health-port
expect "client -> pod:8082 (--exclude-inbound-ports) is not captured" "$(ask "$CLIENT" 10.77.0.2 8082 "$POD" 8082)" excluded-inbound

# Outbound (OUTPUT): the app (uid 0 here) is captured; the proxy's uid 1337 is not.
expect "app -> client:9000 is captured outbound" "$(ask "$POD" 10.77.0.1 9000 "$POD" 15001)" outbound-listener
expect "app -> [client]:9000 is captured outbound (IPv6)" "$(ask "$POD" fd77::1 9000 "$POD" 15001)" outbound-listener
expect "proxy uid 1337 -> client:9000 is not captured" \
  "$(ask "$POD" 10.77.0.1 9000 "$CLIENT" 9000 setpriv --reuid 1337 --regid 1337 --clear-groups)" real-server-9000
expect "app -> client:9001 (--exclude-outbound-ports) is not captured" "$(ask "$POD" 10.77.0.1 9001 "$CLIENT" 9001)" real-server-9001
expect "app -> 127.0.0.1:15021 is not captured" "$(ask "$POD" 127.0.0.1 15021 "$POD" 15021)" health-port
expect "app -> its own pod IP over lo is not captured (rule 3)" "$(ask "$POD" 10.77.0.2 8081 "$POD" 8081)" app-on-pod-ip
# Rule 2: the proxy calling its own pod IP goes to the inbound listener.
expect "proxy uid 1337 -> its own pod IP goes inbound (rule 2)" \
  "$(ask "$POD" 10.77.0.2 8081 "$POD" 15006 setpriv --reuid 1337 --regid 1337 --clear-groups)" inbound-listener
# Rule 1: the proxy's deliveries from 127.0.0.6 reach the app instead of looping into 15006 (uid 1337
# would otherwise match rule 2).
wait_listen "$POD" 8081
expect "proxy uid 1337 from 127.0.0.6 -> its own pod IP reaches the app (rule 1)" \
  "$(echo ping | timeout 10 ip netns exec "$POD" setpriv --reuid 1337 --regid 1337 --clear-groups \
       ncat -s 127.0.0.6 10.77.0.2 8081 2>&1 || true)" app-on-pod-ip

# --clean: nothing is captured any more.
ip netns exec "$POD" "$SIDECAR" init --clean >/dev/null
got=$(ask "$CLIENT" 10.77.0.2 8080)
grep -q "Connection refused" <<<"$got" || fail "after --clean, client -> pod:8080 still answered: $got"
pass "after --clean, client -> pod:8080 is refused (no capture)"
expect "after --clean, app -> client:9000 reaches the real server" "$(ask "$POD" 10.77.0.1 9000 "$CLIENT" 9000)" real-server-9000
