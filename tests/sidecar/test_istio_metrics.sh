# run: Istio's standard TCP metrics on the merged-metrics endpoint (:15020/stats/prometheus). With the
# environment Istio's injector passes (POD_NAMESPACE, ISTIO_META_WORKLOAD_NAME, ISTIO_META_CLUSTER_ID) and
# a downward-API labels file: inbound series say reporter="destination" with the pod as destination,
# outbound ones reporter="source" with the pod as source; bytes are what was sent each way; opened counts
# a connection while it is open, closed once it ends; a refused upstream is response_flags="UF,URX". Many
# connections from many client ports make no more series. The podproxy_ counters are served there too.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

unset POD_NAMESPACE ISTIO_META_WORKLOAD_NAME ISTIO_META_CLUSTER_ID  # only what this test passes
make_pod_and_client
install_redirect_rules "$POD"
cat >"$WORK/labels" <<'EOF'
app="reviews"
pod-template-hash="5d8f"
security.istio.io/tlsMode="istio"
service.istio.io/canonical-name="reviews"
service.istio.io/canonical-revision="v2"
version="v2"
EOF
chmod 644 "$WORK/labels"; chmod 755 "$WORK"

POD_NAMESPACE=shop ISTIO_META_WORKLOAD_NAME=reviews-v2 ISTIO_META_CLUSTER_ID=Kubernetes \
  start_sidecar "$POD" "$WORK/sidecar" --pod-labels-file "$WORK/labels"

METRICS="$WORK/metrics.txt"
scrape() { ip netns exec "$POD" curl -s -m 5 -D "$WORK/headers" "http://$POD_IP:15020/stats/prometheus" >"$METRICS"; }
# series NAME REPORTER FLAGS: the value of the one series with these labels ("" when there is none).
series() {
  scrape
  grep "^$1{reporter=\"$2\"," "$METRICS" | grep "response_flags=\"$3\"" | awk '{ print $NF }'
}
series_is() { [ "$(series "$1" "$2" "$3")" = "$4" ]; }
expect_series() {  # NAME REPORTER FLAGS VALUE (waits up to 10 s: counters settle just after the client is done)
  wait_for 10 series_is "$@" || true
  expect_eq "$1{reporter=$2,response_flags=$3}" "$(series "$1" "$2" "$3")" "$4"
}

scrape
grep -qi '^Content-Type: text/plain; version=0.0.4' "$WORK/headers" || fail "/stats/prometheus content type"
for name in istio_tcp_connections_opened_total istio_tcp_connections_closed_total istio_tcp_sent_bytes_total \
            istio_tcp_received_bytes_total; do
  grep -qx "# TYPE $name counter" "$METRICS" || fail "no TYPE line for $name"
done
grep -q '^podproxy_downstream_cx_total{listener="inbound"} 0$' "$METRICS" || fail "the podproxy_ counters are not merged in"
[ -z "$(grep '^istio_' "$METRICS" || true)" ] || fail "series before any connection: $(grep '^istio_' "$METRICS")"
pass "/stats/prometheus on the pod IP: the four families, the podproxy_ counters, no series yet"

# Inbound: the client sends 5 bytes (ping\n) and the server 11 (hello-pong\n); the client keeps its side
# open until a go file appears, so that the connection is seen open first.
spawn ip netns exec "$POD" bash -c "echo hello-pong | timeout 60 ncat -l $POD_IP 8081 >/dev/null"
wait_listen "$POD" 8081
( (echo ping; for _ in $(seq 300); do [ -e "$WORK/go" ] && break; sleep 0.1; done) | timeout 30 ip netns exec "$CLIENT" ncat "$POD_IP" 8081 >"$WORK/in.out" 2>&1) &
CLIENT_JOB=$!
expect_series istio_tcp_connections_opened_total destination - 1
expect_eq "closed while the connection is open" "$(series istio_tcp_connections_closed_total destination -)" ""
touch "$WORK/go"
wait "$CLIENT_JOB" || true
expect_eq "the inbound client's answer" "$(cat "$WORK/in.out")" hello-pong
expect_series istio_tcp_connections_closed_total destination - 1
expect_series istio_tcp_received_bytes_total destination - 5
expect_series istio_tcp_sent_bytes_total destination - 11

line=$(grep '^istio_tcp_connections_closed_total{reporter="destination"' "$METRICS")
want='istio_tcp_connections_closed_total{reporter="destination",source_workload="unknown",source_canonical_service="unknown",source_canonical_revision="latest",source_workload_namespace="unknown",source_principal="unknown",source_app="unknown",source_version="unknown",source_cluster="unknown",destination_workload="reviews-v2",destination_workload_namespace="shop",destination_principal="unknown",destination_app="reviews",destination_version="v2",destination_service="unknown",destination_canonical_service="reviews",destination_canonical_revision="v2",destination_service_name="unknown",destination_service_namespace="unknown",destination_cluster="Kubernetes",request_protocol="tcp",response_flags="-",connection_security_policy="none"} 1'
expect_eq "the inbound series, every label" "$line" "$want"

# Inbound to a port nobody listens on: reset, counted opened and closed with Envoy's UF,URX.
expect_eq "inbound to a closed port" "$(client "$CLIENT" "$POD_IP" 8099)" "Ncat: Connection reset by peer."
expect_series istio_tcp_connections_opened_total destination UF,URX 1
expect_series istio_tcp_connections_closed_total destination UF,URX 1
grep -q "flags=UF,URX end=upstream_connect_failed" "$WORK/sidecar.log" || fail "the access log has no UF,URX line"
pass "access log: flags=UF,URX end=upstream_connect_failed"

# Outbound: the app (not uid 1337) dials the client namespace's server; its 5 bytes out, 5 (pong\n) back.
serve_pong "$CLIENT" "$CLIENT_IP" 9000 60
wait_listen "$CLIENT" 9000
expect_eq "outbound" "$(client "$POD" "$CLIENT_IP" 9000)" pong
expect_series istio_tcp_connections_opened_total source - 1
expect_series istio_tcp_connections_closed_total source - 1
expect_series istio_tcp_received_bytes_total source - 5
expect_series istio_tcp_sent_bytes_total source - 5
line=$(grep '^istio_tcp_sent_bytes_total{reporter="source"' "$METRICS")
want='istio_tcp_sent_bytes_total{reporter="source",source_workload="reviews-v2",source_canonical_service="reviews",source_canonical_revision="v2",source_workload_namespace="shop",source_principal="unknown",source_app="reviews",source_version="v2",source_cluster="Kubernetes",destination_workload="unknown",destination_workload_namespace="unknown",destination_principal="unknown",destination_app="unknown",destination_version="unknown",destination_service="unknown",destination_canonical_service="unknown",destination_canonical_revision="latest",destination_service_name="unknown",destination_service_namespace="unknown",destination_cluster="unknown",request_protocol="tcp",response_flags="-",connection_security_policy="unknown"} 5'
expect_eq "the outbound series, every label" "$line" "$want"

# Cardinality: 40 more outbound connections, each from a client port of its own, add no series.
before=$(grep -c '^istio_' "$METRICS")
ports_before=$(grep -c "outbound $POD_IP:" "$WORK/sidecar.log")
for i in $(seq 40); do
  wait_listen "$CLIENT" 9000 || fail "the pong server is gone after $i connections"
  [ "$(client "$POD" "$CLIENT_IP" 9000)" = pong ] || fail "outbound connection $i"
done
expect_series istio_tcp_connections_closed_total source - 41
expect_series istio_tcp_received_bytes_total source - 205
ports=$(grep "outbound $POD_IP:" "$WORK/sidecar.log" | sed -n "$((ports_before + 1)),\$p" | awk '{ print $3 }' | sort -u | wc -l)
[ "$ports" -ge 40 ] || fail "expected 40 client ports in the access log, got $ports"
expect_eq "istio_ series after 40 connections from $ports client ports" "$(grep -c '^istio_' "$METRICS")" "$before"
grep '^istio_' "$METRICS" | grep -q "$POD_IP\|:[0-9]\{4,5\}\"" && fail "a series names an address or port"
pass "no series names an address or a port"

# pilot-agent's /quitquitquit on this port is for the pod itself only; other paths and methods.
expect_eq "POST /quitquitquit on 15020 from the client" \
  "$(ip netns exec "$CLIENT" curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST "http://$POD_IP:15020/quitquitquit")" 403
expect_eq "POST /stats/prometheus" \
  "$(ip netns exec "$POD" curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST "http://$POD_IP:15020/stats/prometheus")" 405
expect_eq "/nope on 15020" "$(http_status "$POD" "http://127.0.0.1:15020/nope")" 404
kill -0 "$SIDECAR_PID" || fail "the sidecar exited"
stop_sidecar || fail "exit status $?"

# Without the injector's environment or labels, the pod's labels are "unknown" as Istio writes them.
start_sidecar "$POD" "$WORK/bare" --pod-labels-file /dev/null
scrape
expect_eq "outbound, no identity" "$(client "$POD" "$CLIENT_IP" 9000)" pong
wait_for 10 sh -c "ip netns exec '$POD' curl -s -m 5 http://127.0.0.1:15020/stats/prometheus | grep -q '^istio_tcp_connections_closed_total{reporter=\"source\"'"
scrape
grep -q '^istio_tcp_connections_closed_total{reporter="source",source_workload="unknown",source_canonical_service="unknown",source_canonical_revision="latest",source_workload_namespace="unknown",' "$METRICS" \
  || fail "no identity: $(grep '^istio_tcp_connections_closed_total' "$METRICS")"
pass "no identity: unknown, canonical revision latest"
stop_sidecar || fail "exit status $?"

# A port taken by another flag, and a labels file that cannot be read, are refused naming the flag.
status=0; out=$("$SIDECAR" run --metrics-port 15021 2>&1) || status=$?
expect_eq "--metrics-port 15021: exit status" "$status" 2
grep -q -- "--metrics-port" <<<"$out" || fail "the message does not name --metrics-port: $out"
status=0; out=$("$SIDECAR" run --metrics-port 0 2>&1) || status=$?
expect_eq "--metrics-port 0: exit status" "$status" 2
status=0; out=$("$SIDECAR" run --pod-labels-file "$WORK/none" 2>&1) || status=$?
expect_eq "--pod-labels-file missing: exit status" "$status" 2
grep -q -- "--pod-labels-file" <<<"$out" || fail "the message does not name --pod-labels-file: $out"
