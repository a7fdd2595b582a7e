#!/usr/bin/env bash
# The Kubernetes manifests, unchanged, under `podman kube play` on one host: builds the images with the
# Dockerfile (bases made from Debian's archive when missing), starts the seed's pods and the client, and
# prints the seed's table from the client pod. Then `podman kube down` and the network's removal leave no
# pod, container or network behind (images and podman's build cache stay, to be reused).
#
#   sudo examples/sidecar/k8s/podman/play.sh            the table (installs nothing: see the k8s README)
#   examples/sidecar/k8s/podman/play.sh --check         also CHECK lines; exit 1 when one fails (ctest k8s.podman)
#   examples/sidecar/k8s/podman/play.sh --no-build      use podproxy-sidecar:0.1.0 and podproxy-netcat:0.1.0 as they are
#
# Pod IPs stand in for the Services, which podman does not implement. podman runs with the settings of
# containers.conf beside this script (runc, lower ulimits) through CONTAINERS_CONF, never /etc/containers.
# Exit status: 0 done (with --check: every check passed), 1 a check or a step failed, 2 cannot run here
# (not root, podman/runc/debootstrap missing, containers cannot start on this host), 2 also for a bad flag.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
refuse() { echo "play.sh: cannot run here: $*" >&2; exit 2; }
say() { printf '%s\n' "$*"; }

check=0
build=1
while [ $# -gt 0 ]; do
  case $1 in
    --check) check=1; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "play.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
k8s=$(dirname "$here")
repo=$(cd "$k8s/../../.." && pwd)
[ "$(id -u)" -eq 0 ] || refuse "it must run as root (podman's pod networks and the capture rules)"
for tool in podman runc; do
  command -v "$tool" >/dev/null || refuse "'$tool' is missing (Debian packages: podman buildah runc debootstrap catatonit)"
done
export CONTAINERS_CONF=$here/containers.conf

tag="ppk8s$$"
network=$tag
work=$(mktemp -d "/tmp/$tag.XXXXXX")
manifests=("$k8s/10-loopback.yaml" "$k8s/20-pod-ip.yaml" "$k8s/30-client.yaml")
played=()
network_made=0
cleanup() {
  trap - EXIT INT TERM
  local f
  for f in "${played[@]:-}"; do
    [ -n "$f" ] && podman kube down "$f" >/dev/null 2>&1 || true
  done
  [ "$network_made" -eq 1 ] && { podman network rm -f "$network" >/dev/null 2>&1 || true; }
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bad=0
check_line() {  # check_line NAME OK GOT WANT
  [ "$2" -eq 1 ] || bad=1
  [ "$check" -eq 1 ] && printf 'CHECK %-34s %-4s got=%s want=%s\n' "$1" "$([ "$2" -eq 1 ] && echo ok || echo FAIL)" "$3" "$4"
  return 0
}

# --- 1. the images ------------------------------------------------------------------------------------------------
t0=$SECONDS
if [ "$build" -eq 1 ]; then
  command -v debootstrap >/dev/null || refuse "'debootstrap' is missing (it makes the debian:12 bases)"
  bash "$here/make-base-images.sh"
  # Can a container start here at all? (crun in hybrid cgroups, ulimits, a kernel without namespaces...)
  why=$(podman run --rm --network none docker.io/library/debian:12-slim /bin/true 2>&1) \
    || refuse "podman cannot start a container here (it said: $why)"
  for target in sidecar netcat; do
    say "== podman build --target $target (log: $work/build-$target.log)"
    if ! podman build --pull=never -f "$repo/examples/sidecar/Dockerfile" --target "$target" \
        -t "podproxy-$target:0.1.0" "$repo" >"$work/build-$target.log" 2>&1; then
      tail -n 30 "$work/build-$target.log" >&2
      echo "play.sh: podman build --target $target failed" >&2; exit 1
    fi
  done
fi
for image in podproxy-sidecar:0.1.0 podproxy-netcat:0.1.0; do
  podman image exists "$image" || refuse "no image $image (run without --no-build)"
done
say "== images ($((SECONDS - t0)) s):"
podman images --format '   {{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'podproxy-|library/debian' | sort
# The runtime image carries no compiler: what the build stage installed stays there.
compiler=$(podman run --rm --network none --entrypoint /bin/sh podproxy-sidecar:0.1.0 -c \
  'ls /usr/bin/g++* /usr/bin/cc /usr/bin/cmake 2>/dev/null | head -n 1' || true)
check_line "image:no-compiler" "$([ -z "$compiler" ] && echo 1 || echo 0)" "${compiler:-none}" none

# --- 2. the pods --------------------------------------------------------------------------------------------------
# A network of the test's own, so pod IPs are on a bridge nobody else uses, removed at exit.
podman network create "$network" >/dev/null
network_made=1
# --start=false first: the containers exist but have not run, so the init containers (which podman removes
# once they have run) can be inspected, then each pod starts: init containers first, as a kubelet runs them.
for f in "${manifests[@]}"; do
  played+=("$f")
  if ! podman kube play --start=false --network "$network" "$f" >"$work/play.log" 2>&1; then
    cat "$work/play.log" >&2; echo "play.sh: podman kube play $f failed" >&2; exit 1
  fi
done
seed_pods=(loopback-netcat-lo loopback-netcat-eth0 pod-ip-netcat-lo pod-ip-netcat-eth0)
pods=("${seed_pods[@]}" pod-ip-netcat-lo-default-endpoint)
for pod in "${pods[@]}"; do
  init=$(podman inspect --format '{{.Config.User}} {{.EffectiveCaps}}' "$pod-podproxy-init" 2>&1 || true)
  check_line "init:$pod" "$([ "$init" = "0:0 [CAP_NET_ADMIN CAP_NET_RAW]" ] && echo 1 || echo 0)" "$init" \
    "0:0 [CAP_NET_ADMIN CAP_NET_RAW]"
done
for pod in "${pods[@]}" client; do
  if ! podman pod start "$pod" >"$work/start.log" 2>&1; then
    cat "$work/start.log" >&2; echo "play.sh: podman pod start $pod failed" >&2; exit 1
  fi
done
say "== pods:"
podman pod ps --filter "network=$network" --format '   {{.Name}} {{.Status}}, {{.NumberOfContainers}} containers' | sort

declare -A ip_of
for pod in "${pods[@]}" client; do
  infra=$(podman pod inspect --format '{{.InfraContainerID}}' "$pod")
  ip_of[$pod]=$(podman inspect --format "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$infra")
done

# in_client CMD: runs CMD in the client pod (no sidecar), bounded.
in_client() { podman exec client-client timeout 15 sh -c "$1" 2>&1 || true; }
http_get() {  # http_get IP PORT PATH (from the client pod): the status line
  in_client "printf 'GET $3 HTTP/1.0\r\nHost: $1\r\n\r\n' | ncat $1 $2" | head -n 1 | tr -d '\r'
}
# /healthz/ready from outside each pod (the client pod), which is also what says the sidecar is up.
for pod in "${pods[@]}"; do
  deadline=$((SECONDS + 60))
  until [[ $(http_get "${ip_of[$pod]}" 15021 /healthz/ready) == *" 200 "* ]]; do
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.5
  done
  status=$(http_get "${ip_of[$pod]}" 15021 /healthz/ready)
  check_line "healthz-from-client:$pod" "$([[ $status == *" 200 "* ]] && echo 1 || echo 0)" "$status" "HTTP/1.x 200"
done

# The init containers' work: the capture rules in each pod's network namespace (read from the host).
for pod in "${pods[@]}"; do
  pid=$(podman inspect --format '{{.State.Pid}}' "$(podman pod inspect --format '{{.InfraContainerID}}' "$pod")")
  n=$(nsenter -t "$pid" -n iptables-save -t nat 2>/dev/null | grep -c -- '-j PODPROXY_' || true)
  check_line "capture-rules:$pod" "$([ "$n" -gt 0 ] && echo 1 || echo 0)" "jumps-to-PODPROXY=$n" ">0"
  gone=$(podman container exists "$pod-podproxy-init" && echo present || echo removed)
  check_line "init-ran-once:$pod" "$([ "$gone" = removed ] && echo 1 || echo 0)" "$gone" removed
done

# The sidecars: uid/gid 1337, no capability in any set, no_new_privs, read-only root.
for pod in "${pods[@]}"; do
  status=$(podman exec "$pod-podproxy" cat /proc/1/status 2>&1 || true)
  facts=$(printf '%s\n' "$status" | awk '
    /^Uid:/ { u = $2 "/" $3 } /^Gid:/ { g = $2 "/" $3 }
    /^Cap(Inh|Prm|Eff|Bnd|Amb):/ { if ($2 != "0000000000000000") c = c " " $1 $2 }
    /^NoNewPrivs:/ { n = $2 }
    END { printf "uid=%s gid=%s caps=%s nnp=%s", u, g, (c == "" ? "none" : c), n }')
  want="uid=1337/1337 gid=1337/1337 caps=none nnp=1"
  check_line "sidecar:$pod" "$([ "$facts" = "$want" ] && echo 1 || echo 0)" "$facts" "$want"
  ro=$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$pod-podproxy")
  check_line "sidecar-ro-root:$pod" "$([ "$ro" = true ] && echo 1 || echo 0)" "$ro" true
done

# --- 3. the seed's table, from the client pod ------------------------------------------------------------------------
# dial POD: `echo ping | ncat POD_IP 8080` in the client pod, once the pod's server listens again (each ncat
# answers one connection, then the loop starts the next).
listening() {  # listening POD: its netcat listens on 8080 (read from the host, in the pod's namespace)
  local pid
  pid=$(podman inspect --format '{{.State.Pid}}' "$1-netcat")
  [[ $(nsenter -t "$pid" -n ss -Htln 'sport = :8080') == *LISTEN* ]]
}
declare -A got
dial() {
  local deadline=$((SECONDS + 20))
  until listening "$1"; do [ "$SECONDS" -lt "$deadline" ] || break; sleep 0.2; done
  got[$1]=$(in_client "echo ping | ncat ${ip_of[$1]} 8080" | head -n 1)
  [ -n "${got[$1]}" ] || got[$1]="(nothing)"
}
for pod in "${pods[@]}"; do dial "$pod"; done

say ""
say "== the seed's table: the client pod (no sidecar) runs: echo ping | ncat <pod IP> 8080"
say ""
cell() { printf '%-34s' "${got[$1]}"; }
printf '%-40s %-34s %-34s\n' "" "server on lo (127.0.0.1:8080)" "server on eth0 (pod IP:8080)"
printf '%-40s %s %s\n' "Istio 1.9  (--inbound-policy loopback)" "$(cell loopback-netcat-lo)" "$(cell loopback-netcat-eth0)"
printf '%-40s %s %s\n' "Istio 1.10 (--inbound-policy pod-ip)" "$(cell pod-ip-netcat-lo)" "$(cell pod-ip-netcat-eth0)"
say ""
say "   pod-ip-netcat-lo-default-endpoint (pod-ip, --inbound-default-endpoint 8080=127.0.0.1:8080): ${got[pod-ip-netcat-lo-default-endpoint]}"
say "   pod IPs: $(for p in "${pods[@]}" client; do printf '%s=%s ' "$p" "${ip_of[$p]}"; done)"

reset='Ncat: Connection reset by peer.'
declare -A want=(
  [loopback-netcat-lo]=pong [loopback-netcat-eth0]=$reset [pod-ip-netcat-lo]=$reset [pod-ip-netcat-eth0]=pong
  [pod-ip-netcat-lo-default-endpoint]=pong
)
[ "$check" -eq 1 ] && say ""
for pod in "${pods[@]}"; do
  check_line "table:$pod" "$([ "${got[$pod]}" = "${want[$pod]}" ] && echo 1 || echo 0)" "${got[$pod]}" "${want[$pod]}"
done

# /stats from inside each pod (the admin port listens on the pod's 127.0.0.1 only): one inbound connection
# per pod, and a connect failure for each reset cell.
say ""
say "== each sidecar's inbound counters (/stats on 127.0.0.1:15000, read from the pod's netcat container)"
for pod in "${pods[@]}"; do
  podman exec "$pod-netcat" timeout 5 sh -c \
    "printf 'GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' | ncat 127.0.0.1 15000" >"$work/$pod.stats" 2>&1 || true
  counter() { grep -E "^[a-z_]*$1[{ ]" "$work/$pod.stats" | grep -i inbound | awk '{s += $NF} END {print s + 0}'; }
  total=$(counter downstream_cx_total)
  fails=$(counter upstream_cx_connect_fail)
  say "   $pod: downstream_cx_total=$total upstream_cx_connect_fail=$fails"
  check_line "stats-inside:$pod" "$([ "$total" -eq 1 ] && echo 1 || echo 0)" "downstream_cx_total=$total" 1
  n=0; [ "${want[$pod]}" = "$reset" ] && n=1
  check_line "stats-fail:$pod" "$([ "$fails" -eq "$n" ] && echo 1 || echo 0)" "upstream_cx_connect_fail=$fails" "$n"
  # /stats is not served outside the pod
  outside=$(http_get "${ip_of[$pod]}" 15000 /stats)
  check_line "stats-not-outside:$pod" "$([[ $outside != *" 200 "* ]] && echo 1 || echo 0)" "${outside:-no answer}" "no 200"
done
say ""
say "== the sidecar's access-log lines for the resets (podman logs)"
for pod in loopback-netcat-eth0 pod-ip-netcat-lo; do
  line=$(podman logs "$pod-podproxy" 2>&1 | grep 'flags=UF' | tail -n 1 || true)
  say "   $pod: ${line:-(none)}"
  check_line "uf-log:$pod" "$([ -n "$line" ] && echo 1 || echo 0)" "$([ -n "$line" ] && echo UF-line || echo none)" UF-line
done

# --- 4. podman kube down leaves nothing -----------------------------------------------------------------------------
for f in "${manifests[@]}"; do podman kube down "$f" >/dev/null; done
played=()
podman network rm "$network" >/dev/null
network_made=0
left=$(for pod in "${pods[@]}" client; do
         podman pod exists "$pod" && echo "pod $pod"
         podman ps -a --format '{{.Names}}' | grep "^$pod-" | sed 's/^/container /'
       done
       podman network exists "$network" && echo "network $network"; true)
say "== after podman kube down: ${left:-nothing left}"
check_line "down-leaves-nothing" "$([ -z "$left" ] && echo 1 || echo 0)" "${left:-nothing}" nothing
say ""
say "== done in $((SECONDS - t0)) s"
if [ "$bad" -ne 0 ]; then
  say "== SOME CHECKS FAILED (see CHECK lines)"
  [ "$check" -eq 1 ] && exit 1
fi
exit 0
