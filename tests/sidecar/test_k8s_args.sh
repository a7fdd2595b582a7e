# The Kubernetes manifests' arguments (examples/sidecar/k8s/*.yaml) in a dual-stack pod: every `init` and
# `run` argument list the manifests pass, taken from the files themselves ($(POD_IP) as the kubelet
# expands it: the pod's first, IPv4, address), `run` as the manifests run it (uid 1337, no capability, so
# it cannot read the capture rules), and the postStart `wait`. A pod's Istio capture annotations match its
# init args. Clients over IPv4 and IPv6 reach a server
# on every address through each policy, and the loopback-only or pod-IP-only server as the policy says.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/run_lib.sh"

K8S_DIR="$(dirname "$0")/../../examples/sidecar/k8s"
make_dual_stack_pod_and_client

# The argument lists, one JSON array a line, as the manifests write them.
args_of() {  # FIRST_ARG: the distinct `args: [...]` lists starting with FIRST_ARG
  grep -h '^ *args: \[' "$K8S_DIR"/*.yaml | sed 's/^ *args: //' | jq -c "select(.[0] == \"$1\")" | sort -u
}
mapfile -t init_lists < <(args_of init)
mapfile -t run_lists < <(args_of run)
[ "${#init_lists[@]}" -ge 1 ] && [ "${#run_lists[@]}" -ge 1 ] || fail "no init or run args found in $K8S_DIR"
grep -q 'runAsUser: 1337' "$K8S_DIR"/10-loopback.yaml || fail "the manifests no longer run the sidecar as 1337: update this test"
wait_cmd=$(grep -h 'command: \["podproxy-sidecar", "wait"' "$K8S_DIR"/*.yaml | sort -u | sed 's/^ *command: //')
[ -n "$wait_cmd" ] || fail "no postStart wait command found in $K8S_DIR"

# The Prometheus scrape annotations every pod with a sidecar carries (Istio's injector adds the same): one set.
mapfile -t scrape < <(python3 -c '
import sys, yaml
seen = set()
for f in sys.argv[1:]:
    for d in yaml.safe_load_all(open(f)):
        spec = d["spec"] if d and d["kind"] == "Pod" else {}
        if any(c["name"] == "podproxy" for c in spec.get("containers", []) + spec.get("initContainers", [])):
            a = d["metadata"].get("annotations", {})
            seen.add((a.get("prometheus.io/scrape"), a.get("prometheus.io/port"), a.get("prometheus.io/path")))
for s in sorted(seen, key=str):
    print(*s)' "$K8S_DIR"/*.yaml)
expect_eq "the pods' prometheus.io annotations" "${scrape[*]}" "true 15020 /stats/prometheus"
read -r _ SCRAPE_PORT SCRAPE_PATH <<<"${scrape[0]}"

# expand JSON_ARRAY: the arguments, one a line, with $(POD_IP) expanded.
expand() { jq -r '.[]' <<<"$1" | sed "s/\$(POD_IP)/$POD_IP/g"; }

serve_pong "$POD" 127.0.0.1 8080 40
serve_pong "$POD" ::1 8090 40
serve_pong "$POD" "$POD_IP" 8081 40
serve_pong "$POD" "$POD_IP6" 8091 40
serve_pong "$POD" "" 8082 80
RESET="Ncat: Connection reset by peer."
check() {  # LABEL ADDRESS PORT EXPECTED
  wait_listen "$POD" "$3" || fail "no server on $3"
  expect_eq "$1: client -> $2 port $3" "$(client "$CLIENT" "$2" "$3")" "$4"
}

# A pod's Istio capture annotations and its podproxy-init args agree (the README's table, for the
# annotations the manifests use), and at least one pod shows one.
python3 - "$K8S_DIR" <<'PY' || fail "a manifest's capture annotation and its init args disagree"
import pathlib, sys, yaml
flags = {
    "traffic.sidecar.istio.io/includeInboundPorts": "--inbound-ports",
    "traffic.sidecar.istio.io/excludeInboundPorts": "--exclude-inbound-ports",
    "traffic.sidecar.istio.io/includeOutboundIPRanges": "--outbound-ip-ranges",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": "--exclude-outbound-ip-ranges",
    "traffic.sidecar.istio.io/includeOutboundPorts": "--include-outbound-ports",
    "traffic.sidecar.istio.io/excludeOutboundPorts": "--exclude-outbound-ports",
    "traffic.sidecar.istio.io/excludeInterfaces": "--exclude-interfaces",
    "traffic.sidecar.istio.io/kubevirtInterfaces": "--kubevirt-interfaces",
}
shown = 0
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "Pod":
            continue
        annotations = doc["metadata"].get("annotations") or {}
        init = [c for c in doc["spec"].get("initContainers", []) if c["name"] == "podproxy-init"]
        args = init[0]["args"] if init else []
        for key, value in annotations.items():
            if key not in flags:
                continue
            flag = flags[key]
            if flag not in args or args[args.index(flag) + 1] != value:
                print(f"FAIL: {path.name} {doc['metadata']['name']}: {key}={value!r} but init args {args}", file=sys.stderr)
                sys.exit(1)
            shown += 1
            print(f"ok: {path.name} {doc['metadata']['name']}: {key} -> {flag} {value}")
if shown == 0:
    print("FAIL: no manifest shows a capture annotation", file=sys.stderr)
    sys.exit(1)
PY

for init_json in "${init_lists[@]}"; do
  mapfile -t init_args < <(expand "$init_json")
  ip netns exec "$POD" "$SIDECAR" "${init_args[@]}" >"$WORK/init.out" || fail "init ${init_args[*]} failed"
  grep -q "IPv6 capture rules applied" "$WORK/init.out" || fail "init ${init_args[*]}: $(cat "$WORK/init.out")"
  pass "manifest init args (${init_args[*]}): both families captured"
  for run_json in "${run_lists[@]}"; do
    mapfile -t run_args < <(expand "$run_json")
    LABEL="${run_args[*]}"
    # As the manifests' securityContext runs it: uid and gid 1337, every capability dropped.
    spawn ip netns exec "$POD" setpriv --reuid=1337 --regid=1337 --clear-groups --inh-caps=-all --bounding-set=-all \
      "$SIDECAR" "${run_args[@]}" >"$WORK/run.log" 2>"$WORK/run.err"
    SIDECAR_PID=$SPAWNED
    mapfile -t wait_args < <(jq -r '.[1:][]' <<<"$wait_cmd")
    ip netns exec "$POD" "$SIDECAR" "${wait_args[@]}" >/dev/null 2>&1 || fail "$LABEL: the postStart wait failed: $(cat "$WORK/run.err")"
    expect_eq "$LABEL: /healthz/ready over IPv6 (the pod IP)" "$(http_status "$CLIENT" "http://[$POD_IP6]:15021/healthz/ready")" 200
    grep -q "cannot read the IPv6 capture rules" "$WORK/run.err" || fail "$LABEL: does not say it could not check the rules"
    # What Prometheus scrapes, from another pod, where the annotations say.
    ip netns exec "$CLIENT" curl -s -m 5 "http://$POD_IP:$SCRAPE_PORT$SCRAPE_PATH" >"$WORK/scrape.txt" || true
    grep -qx "# TYPE istio_tcp_connections_opened_total counter" "$WORK/scrape.txt" \
      || fail "$LABEL: no Istio metrics at :$SCRAPE_PORT$SCRAPE_PATH: $(head -c 300 "$WORK/scrape.txt")"
    pass "$LABEL: Istio's metrics at the annotations' :$SCRAPE_PORT$SCRAPE_PATH"
    check "$LABEL, IPv4" "$POD_IP" 8082 pong
    check "$LABEL, IPv6" "$POD_IP6" 8082 pong
    if grep -q -- "--inbound-policy loopback" <<<"$LABEL"; then
      check "$LABEL, IPv4" "$POD_IP" 8080 pong
      check "$LABEL, IPv6" "$POD_IP6" 8090 pong
      check "$LABEL, IPv6" "$POD_IP6" 8091 "$RESET"
    else
      check "$LABEL, IPv4" "$POD_IP" 8081 pong
      check "$LABEL, IPv6" "$POD_IP6" 8091 pong
      check "$LABEL, IPv6" "$POD_IP6" 8090 "$RESET"
    fi
    stop_sidecar || fail "$LABEL: exit status $?"
  done
done
