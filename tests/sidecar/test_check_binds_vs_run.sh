# check-binds predicts what the sidecar does: with init's rules and `run` under each inbound policy, a
# client in another namespace gets the server's reply exactly on the ports check-binds calls reachable
# under that policy, and a reset on the others (the seed experiment, 1.9 vs 1.10, in one namespace).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/init_lib.sh"

make_pod_and_client
ip -n "$POD" addr del fd77::2/64 dev eth0   # IPv4 only, as in the seed
serve "$POD" 127.0.0.1 8080 netcat-lo
serve "$POD" 10.77.0.2 8081 netcat-eth0
serve "$POD" 0.0.0.0 8082 netcat-any
ip netns exec "$POD" "$SIDECAR" init >/dev/null
json=$(ip netns exec "$POD" "$SIDECAR" check-binds --json)

declare -A reply=([8080]=netcat-lo [8081]=netcat-eth0 [8082]=netcat-any)
for policy in loopback pod-ip; do
  key=${policy/-/_}
  spawn ip netns exec "$POD" "$SIDECAR" run --inbound-policy "$policy" --no-access-log --log-level warn
  sidecar=$SPAWNED
  wait_listen "$POD" 15006 || fail "run --inbound-policy $policy did not listen"
  for port in 8080 8081 8082; do
    predicted=$(jq -r ".ports[] | select(.port == $port) | .$key.reachable" <<<"$json")
    got=$(ask "$CLIENT" 10.77.0.2 "$port" "$POD" "$port")
    if [ "$predicted" = true ]; then
      [ "$got" = "${reply[$port]}" ] || fail "$policy: check-binds says $port is reachable, the client got '$got'"
    else
      [ "$predicted" = false ] || fail "no verdict for $port: $json"
      grep -q 'reset by peer' <<<"$got" || fail "$policy: check-binds says $port is unreachable, the client got '$got'"
    fi
    pass "$policy: port $port reachable=$predicted, and the client got: $got"
  done
  kill -TERM "$sidecar"
  wait "$sidecar" || fail "run --inbound-policy $policy did not exit 0 on SIGTERM"
  wait_for 10 sh -c "! ip netns exec '$POD' ss -Htln 'sport = :15006' | grep -q LISTEN" || fail "15006 still open"
done
