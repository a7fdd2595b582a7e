# run and wait: each bad flag or value is refused with exit status 2 and a message naming the flag. Run
# inside a namespace of its own, so that a value wrongly accepted cannot listen anywhere that matters (and
# `timeout` ends it: status 124, a failure).
source "$(dirname "$0")/lib.sh"
NS=$(make_ns flags)
_namespaces+=("$NS")  # make_ns ran in a subshell
OUT=$(mktemp)
trap 'rm -f "$OUT"; cleanup' EXIT

refused() {  # FLAG_NAMED ARGS...: podproxy-sidecar ARGS exits 2 naming FLAG_NAMED
  local named=$1; shift
  local status=0
  timeout 10 ip netns exec "$NS" ${AS_USER:-} "$SIDECAR" "$@" >"$OUT" 2>&1 || status=$?
  [ "$status" -eq 2 ] || fail "'$*': exit status $status, expected 2 ($(cat "$OUT"))"
  grep -q -- "$named" "$OUT" || fail "'$*': the message does not name $named: $(cat "$OUT")"
  pass "'$*' -> 2: $(grep -m1 -- "$named" "$OUT")"
}

refused --mode run --mode bogus
refused --inbound-policy run --inbound-policy localhost
refused --relay run --relay sendfile
refused --inbound-default-endpoint run --inbound-default-endpoint 8080
refused --inbound-default-endpoint run --inbound-default-endpoint 8080=localhost:8080
refused --inbound-default-endpoint run --inbound-default-endpoint 0=127.0.0.1:8080
refused --inbound-default-endpoint run --inbound-default-endpoint 8080=127.0.0.1:70000
refused --inbound-default-endpoint run --inbound-default-endpoint 8080=127.0.0.1:1 --inbound-default-endpoint 8080=127.0.0.1:2
refused --pod-ip run --pod-ip 10.0.0
refused --pod-ip run --pod-ip 127.0.0.1
refused --listen-address run --listen-address everywhere
refused --inbound-port run --inbound-port 0
refused --inbound-port run --inbound-port 65536
refused --inbound-port run --inbound-port
refused --outbound-port run --outbound-port http
refused --admin-port run --admin-port -1
refused --health-port run --health-port 15021x
refused --inbound-port run --inbound-port 15001
refused --connect-timeout run --connect-timeout 10
refused --connect-timeout run --connect-timeout 0
refused --idle-timeout run --idle-timeout -1s
refused --drain-timeout run --drain-timeout 1d
refused --threads run --threads 0
refused --threads run --threads 257
refused --threads run --threads two
refused --uid run --uid -1
refused --uid run --uid 4294967295
refused --gid run --gid proxy
refused --mark run --mark 0
refused --mark run --mark x
refused --mark run --mode tproxy --mark 1337
refused --tproxy-mark run --tproxy-mark 0
refused --log-level run --log-level loud
refused --inbound-proxy-protocol-send run --inbound-proxy-protocol-send v3
refused --inbound-proxy-protocol-send run --inbound-proxy-protocol-send any
refused --outbound-proxy-protocol-send run --outbound-proxy-protocol-send V1
refused --inbound-proxy-protocol-accept run --inbound-proxy-protocol-accept yes
refused --outbound-proxy-protocol-accept run --outbound-proxy-protocol-accept v1,v2
refused --proxy-protocol-timeout run --proxy-protocol-timeout 0
refused --proxy-protocol-timeout run --proxy-protocol-timeout 5
refused --no-such-flag run --no-such-flag
# Switching to the proxy user needs root: as nobody, run refuses (after binding, before serving).
AS_USER="setpriv --reuid 65534 --regid 65534 --clear-groups" refused --uid run

refused --url wait --url https://127.0.0.1:15021/healthz/ready
refused --url wait --url http://localhost:15021/healthz/ready
refused --url wait --url http://127.0.0.1/healthz/ready
refused --url wait --url 'http://127.0.0.1:15021/a b'
refused --timeout wait --timeout soon
refused --interval wait --interval 0
refused --request-timeout wait --request-timeout 1y
refused --no-such-flag wait --no-such-flag
