#!/usr/bin/env bash
# The seed experiment (Istio 1.9 vs 1.10: which interface the sidecar delivers inbound traffic to), rebuilt on
# one machine: network namespaces instead of a Kubernetes cluster, podproxy-sidecar instead of istio-proxy.
#
#   examples/seed-demo/run.sh                      builds the sidecar and runs the demo, as a normal user: in a
#                                                  user namespace of its own (needs the packages installed)
#   sudo examples/seed-demo/run.sh                 as root: also installs what is missing, with apt-get
#   examples/seed-demo/run.sh --sidecar PATH       uses an already built podproxy-sidecar (PODPROXY_SIDECAR=PATH)
#   examples/seed-demo/run.sh --build-dir DIR      builds in DIR instead of build/seed-demo in the repository
#   examples/seed-demo/run.sh --check ...          also prints CHECK lines and exits 1 when a cell differs from
#                                                  the seed (the ctest tests demo.seed and demo.rootless do)
#
# Exit status: 0 done (and, with --check, every cell as expected), 1 a cell or a counter differs or a step
# failed, 2 cannot run here (no user namespaces for a normal user, no network namespaces, no iptables, a
# package missing that it cannot install, a build directory it cannot write).
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

sidecar=${PODPROXY_SIDECAR:-}
build_dir=
check=0
install=1
args=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    --sidecar) sidecar=${2:?--sidecar needs a path}; shift 2 ;;
    --sidecar=*) sidecar=${1#*=}; shift ;;
    --build-dir) build_dir=${2:?--build-dir needs a directory}; shift 2 ;;
    --build-dir=*) build_dir=${1#*=}; shift ;;
    --check) check=1; shift ;;
    --no-install) install=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

refuse() { echo "run.sh: cannot run the demo here: $*" >&2; exit 2; }
say() { printf '%s\n' "$*"; }

repo=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
[ -n "$build_dir" ] || build_dir="$repo/build/seed-demo"

# --- 0. a normal user: the same demo, inside a user namespace of its own -----------------------------------------
# As root of a new user namespace that owns a new network namespace and a private mount namespace, the demo
# may make network namespaces, veths and nat rules there; they all go when its last process exits, and the
# host's namespaces, rules and mounts never see them. Only the caller's own uid is mapped (to 0) there:
# see docs/design.md, "The seed demo without root".
in_userns=0
if [ "$(id -u)" -ne 0 ]; then
  command -v unshare >/dev/null || refuse "not root, and 'unshare' is missing (Debian package: util-linux)"
  why=$(unshare --user --map-root-user true 2>&1) \
    || refuse "not root, and this machine gives a normal user no user namespace ('unshare --user --map-root-user' said: ${why:-nothing}); run it as root instead: sudo $0"
  PODPROXY_SEED_DEMO_USERNS=$(id -u) exec unshare --user --map-root-user --net --mount -- \
    bash "$(readlink -f "$0")" "${args[@]}"
fi
if [ -n "${PODPROXY_SEED_DEMO_USERNS:-}" ]; then
  read -r _ _ mapped </proc/self/uid_map
  # (only trusted when this is really a user namespace: the initial one maps all 4294967295 ids)
  if [ "$mapped" != 4294967295 ]; then
    in_userns=1
    install=0
    user_uid=$PODPROXY_SEED_DEMO_USERNS
  fi
fi
unset PODPROXY_SEED_DEMO_USERNS

# --- 1. what the demo needs --------------------------------------------------------------------------------
runtime_packages=(ncat iptables iproute2)
# make: cmake's generator needs it, and apt only brings it along as a recommendation of cmake
build_packages=(cmake make g++ libasio-dev libcli11-dev libspdlog-dev libfmt-dev catch2)
wanted=("${runtime_packages[@]}")
[ -n "$sidecar" ] || wanted+=("${build_packages[@]}")
missing=()
for pkg in "${wanted[@]}"; do
  # (dpkg -s alone also succeeds for a removed package whose config files remain)
  # (no `| grep -q` under pipefail: an early exit of grep can SIGPIPE the writer and fail the pipeline)
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$in_userns" -eq 0 ] || refuse "missing packages: ${missing[*]}, which a normal user cannot install: install them" \
    "as root (sudo apt-get install ${missing[*]}, or sudo bash tests/install-deps.sh), or run the demo as root, which does"
  [ "$install" -eq 1 ] || refuse "missing packages: ${missing[*]} (and --no-install was given)"
  say "== installing: ${missing[*]} (apt-get's output goes to /tmp/ppdemo-apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update && apt-get install -y "${missing[@]}"; } >/tmp/ppdemo-apt.log 2>&1 \
    || { tail -n 20 /tmp/ppdemo-apt.log >&2; refuse "apt-get could not install ${missing[*]}"; }
fi

if [ -z "$sidecar" ]; then
  # the nearest part of the build directory that exists must be writable: say so now, not after the probe
  existing=$build_dir
  while [ ! -e "$existing" ]; do existing=$(dirname "$existing"); done
  if [ ! -d "$existing" ] || [ ! -w "$existing" ] || [ ! -x "$existing" ]; then
    refuse "the build directory $build_dir is not writable by $([ "$in_userns" -eq 1 ] && echo "uid $user_uid" || echo root)" \
      "($existing is not a writable directory): pass --build-dir DIR, or --sidecar PATH to a built podproxy-sidecar"
  fi
fi

# --- cleanup: every namespace and process this run makes goes away on every exit path ---------------------------
tag="ppdemo$$"
workdir=$(mktemp -d "/tmp/$tag.XXXXXX")
namespaces=()
groups=()   # process-group ids (servers and sidecars start with setsid, so a group is exactly what we started)
cleanup() {
  trap - EXIT INT TERM
  local g ns i
  for g in "${groups[@]:-}"; do [ -n "$g" ] && kill -TERM -- "-$g" 2>/dev/null || true; done
  for i in $(seq 30); do  # up to 3 s for a graceful stop, then SIGKILL
    local alive=0
    for g in "${groups[@]:-}"; do [ -n "$g" ] && kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for g in "${groups[@]:-}"; do [ -n "$g" ] && kill -KILL -- "-$g" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${namespaces[@]:-}"; do [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_group OUT ERR CMD...: runs CMD in its own process group, in the background, remembered for cleanup.
# (A background job of a non-interactive shell is not a group leader, so setsid does not fork: $! is the new
# group's id.)
start_group() {
  local out=$1 err=$2; shift 2
  setsid "$@" >"$out" 2>"$err" </dev/null &
  groups+=("$!")
}

# --- 1b. inside the user namespace: what differs ----------------------------------------------------------------
# How the sidecar's own traffic is told apart from the app's: by its uid 1337, as Istio does; in the user
# namespace, where 0 is the only uid (the app's too), by the mark its sockets carry.
proxy_mark=0x539   # 1337, as a mark
init_exempt=()
run_as=(--uid 1337 --gid 1337)
probe_exempt=(-m owner --uid-owner 1337)
if [ "$in_userns" -eq 1 ]; then
  init_exempt=(--proxy-mark "$proxy_mark" --proxy-mark-only)
  run_as=(--uid 0 --gid 0 --mark "$proxy_mark")
  probe_exempt=(-m mark --mark "$proxy_mark")
  # 'ip netns add' keeps its namespaces under /run/netns, which only the host's root may write: a tmpfs
  # over it in this private mount namespace holds ours (over /run itself where /run/netns does not exist).
  if [ -d /run/netns ]; then
    why=$(mount -t tmpfs -o mode=0755 ppdemo /run/netns 2>&1) || refuse "cannot mount a tmpfs on /run/netns in the user namespace: $why"
  else
    why=$(mount -t tmpfs -o mode=0755 ppdemo /run 2>&1 && mkdir /run/netns) \
      || refuse "cannot mount a tmpfs on /run in the user namespace: $why"
  fi
  # iptables-legacy cannot list its tables here (/proc/net/ip_tables_names belongs to the host's root), so
  # `init`, which reads the rules back with iptables-save, needs the nf_tables variants.
  if [[ $(iptables --version 2>&1) == *legacy* ]]; then
    mkdir "$workdir/nft-bin"
    for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
      nft_tool=${t%%-*}-nft${t#"${t%%-*}"}   # iptables-save -> iptables-nft-save
      nft_path=$(command -v "$nft_tool") || refuse "iptables is iptables-legacy here, which cannot read its rules" \
        "back in a user namespace, and $nft_tool is missing"
      ln -s "$nft_path" "$workdir/nft-bin/$t"
    done
    PATH="$workdir/nft-bin:$PATH"
  fi
  say "== not root: running inside a user namespace (uid $user_uid is its root; network namespaces under a private /run/netns)"
fi

# --- 2. can this machine do it? (probe in a namespace of our own, before spending time on a build) -------------
probe="$tag-probe"
why=$(ip netns add "$probe" 2>&1) || refuse "network namespaces are unavailable ('ip netns add' said: $why)"
namespaces+=("$probe")
probe_error=
why=$(ip netns exec "$probe" true 2>&1) || probe_error="cannot enter a network namespace ('ip netns exec' said: $why)"
if [ -z "$probe_error" ]; then
  why=$(ip netns exec "$probe" iptables -w -t nat -A OUTPUT -p tcp --dport 9 -j REDIRECT --to-ports 15001 2>&1 \
    && ip netns exec "$probe" iptables -w -t nat -A OUTPUT -p tcp "${probe_exempt[@]}" -j RETURN 2>&1) \
    || probe_error="iptables cannot write nat REDIRECT/${probe_exempt[1]} rules in a network namespace (it said: $why)"
fi
ip netns del "$probe"
[ -z "$probe_error" ] || refuse "$probe_error"

# --- 3. the sidecar --------------------------------------------------------------------------------------------
if [ -z "$sidecar" ]; then
  say "== building podproxy-sidecar in $build_dir (a few minutes the first time)"
  mkdir -p "$build_dir"
  build_log="$build_dir/seed-demo-build.log"
  build_failed() { tail -n 30 "$build_log" >&2; echo "run.sh: building podproxy-sidecar failed (log: $build_log)" >&2; exit 1; }
  if [ ! -f "$build_dir/CMakeCache.txt" ]; then
    cmake -S "$repo" --preset release -B "$build_dir" \
      -DPODPROXY_BUILD_TESTS=OFF -DPODPROXY_BUILD_BENCH=OFF >"$build_log" 2>&1 || build_failed
  fi
  cmake --build "$build_dir" -j2 --target podproxy-sidecar >>"$build_log" 2>&1 || build_failed
  sidecar="$build_dir/examples/sidecar/podproxy-sidecar"
fi
# (readlink -f fails where a directory above cannot be searched: the test below then says so)
sidecar=$(readlink -f "$sidecar" 2>/dev/null || printf '%s' "$sidecar")
if [ ! -f "$sidecar" ] || [ ! -x "$sidecar" ]; then
  refuse "no podproxy-sidecar that $([ "$in_userns" -eq 1 ] && echo "uid $user_uid" || echo root) can execute at" \
    "'$sidecar' (it must exist, be executable, and every directory above it searchable: see namei -l '$sidecar')"
fi

# wait_for SECONDS CMD...: retries CMD every 0.1 s until it succeeds; fails after SECONDS.
wait_for() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
listening() { [[ $(ip netns exec "$1" ss -Htln "src $2:$3") == *LISTEN* ]]; }

# --- 4. the "cluster" -----------------------------------------------------------------------------------------
# One L2 segment (a bridge in the node namespace), as a single-node cluster's pod network. Every veth is made
# inside the node namespace with its other end moved straight into its pod: the root namespace sees nothing.
pod_cidr_prefix=10.244.0
client_ip=$pod_cidr_prefix.2
service_cidr=10.96.0.0/16
node="$tag-node"
client="$tag-client"

make_ns() { ip netns add "$1"; namespaces+=("$1"); ip -n "$1" link set lo up; }

make_ns "$node"
ip -n "$node" link add br0 type bridge
ip -n "$node" link set br0 up

# attach NS IP VETH: gives NS an eth0 holding IP/24, its peer VETH on the node's bridge.
attach() {
  ip -n "$node" link add "$3" type veth peer name eth0 netns "$1"
  ip -n "$node" link set "$3" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
}

make_ns "$client"
attach "$client" "$client_ip" vclient
ip -n "$client" route add "$service_cidr" dev eth0   # ClusterIPs are virtual: routed to eth0, DNATed in OUTPUT
ip netns exec "$client" iptables -w -t nat -N KUBE-SERVICES
ip netns exec "$client" iptables -w -t nat -A OUTPUT -j KUBE-SERVICES

# The pods, as in the seed: namespace rev-1-9 (sidecar from Istio 1.9, policy loopback) and rev-1-10 (Istio
# 1.10, policy pod-ip), each with netcat-lo (server on 127.0.0.1) and netcat-eth0 (server on the pod IP).
# key  revision  policy    pod           bind  pod IP           ClusterIP of its Service
pods=(
  "r19-lo    1-9  loopback netcat-lo     lo    $pod_cidr_prefix.11 10.96.9.1"
  "r19-eth0  1-9  loopback netcat-eth0   eth0  $pod_cidr_prefix.12 10.96.9.2"
  "r110-lo   1-10 pod-ip   netcat-lo     lo    $pod_cidr_prefix.21 10.96.10.1"
  "r110-eth0 1-10 pod-ip   netcat-eth0   eth0  $pod_cidr_prefix.22 10.96.10.2"
)
declare -A ns_of rev_of policy_of name_of bind_of ip_of vip_of addr_of
keys=()
for row in "${pods[@]}"; do
  read -r key rev policy name bind ip vip <<<"$row"
  keys+=("$key")
  ns_of[$key]="$tag-$key"; rev_of[$key]=$rev; policy_of[$key]=$policy; name_of[$key]=$name
  bind_of[$key]=$bind; ip_of[$key]=$ip; vip_of[$key]=$vip
  if [ "$bind" = lo ]; then addr_of[$key]=127.0.0.1; else addr_of[$key]=$ip; fi
done

say "== topology: namespaces $tag-{node,client,r19-lo,r19-eth0,r110-lo,r110-eth0}, bridge br0 in $node"
for key in "${keys[@]}"; do
  ns=${ns_of[$key]}
  make_ns "$ns"
  attach "$ns" "${ip_of[$key]}" "v$key"
  # istio-init: the pod's capture rules
  ip netns exec "$ns" "$sidecar" init "${init_exempt[@]}" >"$workdir/$key.init.log" 2>&1 \
    || { cat "$workdir/$key.init.log" >&2; echo "run.sh: 'podproxy-sidecar init' failed in $ns" >&2; exit 1; }
  # kube-proxy: Service <name>.rev-<rev> = ClusterIP:8080 -> pod IP:8080, DNAT in the client's OUTPUT
  ip netns exec "$client" iptables -w -t nat -A KUBE-SERVICES -d "${vip_of[$key]}/32" -p tcp --dport 8080 \
    -m comment --comment "rev-${rev_of[$key]}/${bind_of[$key]}" -j DNAT --to-destination "${ip_of[$key]}:8080"
  # istio-proxy: the sidecar, before the app
  start_group "$workdir/$key.sidecar.log" "$workdir/$key.sidecar.err" ip netns exec "$ns" "$sidecar" run \
    --inbound-policy "${policy_of[$key]}" --pod-ip "${ip_of[$key]}" "${run_as[@]}"
done
for key in "${keys[@]}"; do
  ns=${ns_of[$key]}
  # holdApplicationUntilProxyStarts: the app starts only once the sidecar answers /healthz/ready
  if ! ip netns exec "$ns" "$sidecar" wait --timeout 20s >"$workdir/$key.wait.log" 2>&1; then
    cat "$workdir/$key.wait.log" "$workdir/$key.sidecar.err" >&2
    echo "run.sh: the sidecar in $ns never became ready" >&2; exit 1
  fi
  # the app, as the seed's pods run it: one `echo pong | ncat -l ADDR 8080` per connection, in a bounded loop
  start_group "$workdir/$key.app.log" "$workdir/$key.app.log" ip netns exec "$ns" bash -c \
    "for i in \$(seq 1 20); do echo pong | ncat -l ${addr_of[$key]} 8080; sleep 0.05; done"
done
for key in "${keys[@]}"; do
  wait_for 10 listening "${ns_of[$key]}" "${addr_of[$key]}" 8080 \
    || { echo "run.sh: ncat never listened on ${addr_of[$key]}:8080 in ${ns_of[$key]}" >&2; exit 1; }
done

# --- 5. the prediction: check-binds in each pod, before any traffic -------------------------------------------
say ""
say "== check-binds in each pod (what each inbound policy can reach), before any traffic"
declare -A predicted   # check-binds --policy P: 0 every port reachable under P, 1 some port unreachable
for key in "${keys[@]}"; do
  say "-- ${name_of[$key]}.rev-${rev_of[$key]} (pod IP ${ip_of[$key]}, sidecar --inbound-policy ${policy_of[$key]}):"
  predicted[$key]=0
  ip netns exec "${ns_of[$key]}" "$sidecar" check-binds --pod-ip "${ip_of[$key]}" --policy "${policy_of[$key]}" \
    >"$workdir/$key.binds" 2>&1 || predicted[$key]=$?
  sed 's/^/   /' "$workdir/$key.binds"
done

# --- 6. the traffic ---------------------------------------------------------------------------------------------
# dial CELL NS HOST KEY: `echo ping | ncat HOST 8080` from NS; records what ncat printed and the sidecar's
# new access-log lines for that connection.
declare -A got log_of
dial() {
  local cell=$1 ns=$2 host=$3 key=$4 before out
  wait_for 10 listening "${ns_of[$key]}" "${addr_of[$key]}" 8080 || true   # the next ncat of the loop is up
  before=$(wc -l <"$workdir/$key.sidecar.log")
  out=$(ip netns exec "$ns" timeout 15 bash -c "echo ping | ncat $host 8080" 2>&1) || true
  got[$cell]=$(printf '%s' "$out" | head -n 1)
  [ -n "${got[$cell]}" ] || got[$cell]="(nothing)"
  if [ "${got[$cell]}" != pong ]; then   # a failure: give the sidecar a moment to write its access-log line
    wait_for 3 sh -c "tail -n +$((before + 1)) '$workdir/$key.sidecar.log' | grep -q flags=UF" || true
  fi
  log_of[$cell]=$(tail -n +$((before + 1)) "$workdir/$key.sidecar.log" | grep 'flags=UF' || true)
}

for key in "${keys[@]}"; do dial "svc:$key" "$client" "${vip_of[$key]}" "$key"; done
for key in "${keys[@]}"; do dial "direct:$key" "$client" "${ip_of[$key]}" "$key"; done
for key in "${keys[@]}"; do dial "self:$key" "${ns_of[$key]}" "${ip_of[$key]}" "$key"; done

# --- 7. the table -----------------------------------------------------------------------------------------------
cell() { printf '%-34s' "${got[$1]}"; }
say ""
say "== the seed's table: client (no sidecar) runs: echo ping | ncat <Service ClusterIP> 8080"
say ""
printf '%-40s %-34s %-34s\n' "" "server on lo (127.0.0.1:8080)" "server on eth0 (pod IP:8080)"
printf '%-40s %s %s\n' "Istio 1.9  (--inbound-policy loopback)" "$(cell svc:r19-lo)" "$(cell svc:r19-eth0)"
printf '%-40s %s %s\n' "Istio 1.10 (--inbound-policy pod-ip)" "$(cell svc:r110-lo)" "$(cell svc:r110-eth0)"
say ""
say "   Services: lo.rev-1-9=${vip_of[r19-lo]} eth0.rev-1-9=${vip_of[r19-eth0]} lo.rev-1-10=${vip_of[r110-lo]} eth0.rev-1-10=${vip_of[r110-eth0]}"
say "   (kube-proxy style DNAT in the client's nat OUTPUT to the pod IPs; the pod's PREROUTING REDIRECT then hands"
say "   the connection to its sidecar on 15006, which dials 127.0.0.1:8080 (1.9) or podIP:8080 from 127.0.0.6 (1.10))"
say ""
say "== the blogger's open question: dialing the pod IP instead of the Service"
say ""
printf '%-40s %-34s %-34s\n' "" "server on lo (127.0.0.1:8080)" "server on eth0 (pod IP:8080)"
printf '%-40s %s %s\n' "1.9,  client -> pod IP:8080" "$(cell direct:r19-lo)" "$(cell direct:r19-eth0)"
printf '%-40s %s %s\n' "1.10, client -> pod IP:8080" "$(cell direct:r110-lo)" "$(cell direct:r110-eth0)"
printf '%-40s %s %s\n' "1.9,  same pod -> its own pod IP:8080" "$(cell self:r19-lo)" "$(cell self:r19-eth0)"
printf '%-40s %s %s\n' "1.10, same pod -> its own pod IP:8080" "$(cell self:r110-lo)" "$(cell self:r110-eth0)"
say ""
say "   client -> pod IP: the pod's PREROUTING captures every inbound TCP port except the sidecar's own, so this"
say "     is the Service path without the DNAT: the same answers as the Services. (In Istio only ports that a"
say "     Service declares get 1.9's 127.0.0.1 delivery; any other port goes to the passthrough cluster, which"
say "     dials the pod IP in both versions, so there only eth0 servers answer, whatever the version.)"
if [ "$in_userns" -eq 0 ]; then
  say "   same pod -> own pod IP: the app is not uid 1337, so OUTPUT rule 3 (-o lo -m owner ! --uid-owner 1337"
  say "     -j RETURN) skips the sidecar; the kernel connects only to a socket bound to the address dialed"
else
  say "   same pod -> own pod IP: the app's packets lack the sidecar's mark, so OUTPUT rule 3 (here -o lo -j RETURN,"
  say "     after the mark rules) skips the sidecar; the kernel connects only to a socket bound to the address dialed"
fi
say "     (the pod IP or 0.0.0.0): eth0 answers, lo is refused, whatever the sidecar's policy."
say "   Either path makes only eth0-bound servers answer on the pod IP in both versions: the blogger's open question."
say ""
say "== the sidecar's access-log line for each failing cell (flag UF: upstream connection failure)"
for cell in svc:r19-lo svc:r19-eth0 svc:r110-lo svc:r110-eth0 direct:r19-lo direct:r19-eth0 direct:r110-lo direct:r110-eth0; do
  [ "${got[$cell]}" = pong ] && continue
  key=${cell#*:}
  say "-- ${cell%%:*} ${name_of[$key]}.rev-${rev_of[$key]}: ${log_of[$cell]:-(no UF line in the sidecar log)}"
done

# /stats of each sidecar: the connect failures behind the resets
stats_of() {
  printf 'GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' | ip netns exec "${ns_of[$1]}" timeout 5 ncat 127.0.0.1 15000 2>/dev/null || true
}
say ""
say "== upstream_cx_connect_fail in each sidecar's /stats (127.0.0.1:15000 inside the pod)"
declare -A fails accepted
# inbound_counter KEY NAME: the inbound listener's value of counter NAME in that sidecar's /stats
inbound_counter() {
  grep -E "^[a-z_]*$2[{ ]" "$workdir/$1.stats" | grep -i inbound | awk '{s += $NF} END {print s + 0}'
}
for key in "${keys[@]}"; do
  stats_of "$key" >"$workdir/$key.stats"
  fails[$key]=$(inbound_counter "$key" upstream_cx_connect_fail)
  accepted[$key]=$(inbound_counter "$key" downstream_cx_total)
  say "-- ${name_of[$key]}.rev-${rev_of[$key]}: $(grep -E '^[a-z_]*upstream_cx_connect_fail[{ ]' "$workdir/$key.stats" | tr '\n' ' ')"
done

# --- 8. the verdict ----------------------------------------------------------------------------------------------
# What the seed (and CONTEXT.md's "paths" table) says each cell must print.
reset='Ncat: Connection reset by peer.'
refused='Ncat: Connection refused.'
declare -A want=(
  [svc:r19-lo]=pong [svc:r19-eth0]=$reset [svc:r110-lo]=$reset [svc:r110-eth0]=pong
  [direct:r19-lo]=pong [direct:r19-eth0]=$reset [direct:r110-lo]=$reset [direct:r110-eth0]=pong
  [self:r19-lo]=$refused [self:r19-eth0]=pong [self:r110-lo]=$refused [self:r110-eth0]=pong
)
bad=0
check_line() {  # check_line NAME OK GOT WANT
  [ "$2" -eq 1 ] || bad=1
  [ "$check" -eq 1 ] && printf 'CHECK %-22s %-4s got=%s want=%s\n' "$1" "$([ "$2" -eq 1 ] && echo ok || echo FAIL)" "$3" "$4"
  return 0
}
[ "$check" -eq 1 ] && say "" && say "== checks"
for cell in svc:r19-lo svc:r19-eth0 svc:r110-lo svc:r110-eth0 direct:r19-lo direct:r19-eth0 direct:r110-lo direct:r110-eth0 self:r19-lo self:r19-eth0 self:r110-lo self:r110-eth0; do
  ok=0; [ "${got[$cell]}" = "${want[$cell]}" ] && ok=1
  check_line "$cell" "$ok" "${got[$cell]}" "${want[$cell]}"
  # a reset through the sidecar must be its upstream connect failure, logged with UF
  if [ "${want[$cell]}" = "$reset" ]; then
    ok=0; [ -n "${log_of[$cell]}" ] && ok=1
    check_line "log:$cell" "$ok" "$([ "$ok" -eq 1 ] && echo UF-line || echo none)" "UF-line"
  fi
done
for key in "${keys[@]}"; do
  # check-binds' verdict, made before any traffic, foretold what the Service dial really printed
  seen=0; [ "${got[svc:$key]}" = pong ] || seen=1
  ok=0; [ "${predicted[$key]}" -eq "$seen" ] && ok=1
  check_line "predicted:$key" "$ok" "check-binds=${predicted[$key]}" "$seen"
  n=0
  for cell in "svc:$key" "direct:$key"; do [ "${want[$cell]}" = "$reset" ] && n=$((n + 1)); done
  # each failing cell is one inbound connect failure; a pong cell is none
  ok=0; [ "${fails[$key]}" -eq "$n" ] && ok=1
  check_line "stats:$key" "$ok" "upstream_cx_connect_fail=${fails[$key]}" "$n"
  # the client's two dials (Service, pod IP) went through the inbound listener; the same-pod dial did not
  ok=0; [ "${accepted[$key]}" -eq 2 ] && ok=1
  check_line "captured:$key" "$ok" "downstream_cx_total=${accepted[$key]}" 2
done
say ""
if [ "$bad" -eq 0 ]; then
  say "== every cell matches the seed's table and the paths explained above"
else
  say "== MISMATCH: some cells differ from the seed (see above); logs: sidecars print one access-log line per connection"
  for key in "${keys[@]}"; do
    say "-- $key sidecar access log and stderr:"
    sed 's/^/   /' "$workdir/$key.sidecar.log" "$workdir/$key.sidecar.err"
  done
fi
[ "$check" -eq 1 ] && [ "$bad" -ne 0 ] && exit 1
exit 0
