# Least privilege (examples/sidecar/README-privileges.md): `init` needs CAP_NET_ADMIN and nothing else;
# `run` needs no capability at all when started as the proxy uid, CAP_SETUID + CAP_SETGID when started as
# root to drop to it, and CAP_NET_ADMIN only for --mode tproxy or --mark. Each case started with setpriv
# holding exactly that, and shown to work (traffic through the capture) or to fail with a message.
# Then every combination of --uid (1337, 0), --mark (set or not) and --mode (redirect, tproxy), started
# as full root with inheritable and ambient capabilities besides: after the drop each keeps exactly
# CAP_NET_ADMIN (--mark or tproxy) or nothing, in every set of /proc/PID/status, with no_new_privs.
source "$(dirname "$0")/../sidecar/lib.sh"
source "$(dirname "$0")/../sidecar/run_lib.sh"
command -v setpriv >/dev/null || fail "setpriv (util-linux) is missing"

make_pod_and_client
NO_CAPS=(--inh-caps -all --bounding-set -all)
AS_PROXY=(--reuid "$PROXY_UID" --regid "$PROXY_UID" --clear-groups)

# init: nothing without CAP_NET_ADMIN; everything with it alone.
status=0
ip netns exec "$POD" setpriv "${NO_CAPS[@]}" "$SIDECAR" init 2>"$WORK/init-nocap.err" || status=$?
expect_eq "init without capabilities: exit status" "$status" 2
grep -q "CAP_NET_ADMIN" "$WORK/init-nocap.err" || fail "init without capabilities: no message naming CAP_NET_ADMIN"
expect_eq "init without capabilities: rules written" "$(ip netns exec "$POD" iptables-save -t nat | grep -c REDIRECT || true)" 0
ip netns exec "$POD" setpriv --inh-caps -all --bounding-set -all,+net_admin "$SIDECAR" init \
  --proxy-uid "$PROXY_UID" --proxy-gid "$PROXY_UID" >/dev/null || fail "init with CAP_NET_ADMIN alone failed"
[ "$(ip netns exec "$POD" iptables-save -t nat | grep -c 'REDIRECT --to-ports 15006' || true)" -ge 1 ] ||
  fail "init with CAP_NET_ADMIN alone: no inbound REDIRECT rule"
pass "init with CAP_NET_ADMIN alone writes the capture rules"

# cap_eff PID: the effective capability mask of a process; status_field PID NAME: any line of its status.
status_field() { awk -v name="$2:" '$1 == name { $1 = ""; sub(/^ /, ""); print }' "/proc/$1/status"; }
cap_eff() { status_field "$1" CapEff; }
NET_ADMIN_MASK=0000000000001000
NONE=0000000000000000
# expect_privileges LABEL PID CAPS [BOUNDING]: CAPS permitted and effective, nothing inheritable or
# ambient, no_new_privs set; with BOUNDING, that bounding set too.
expect_privileges() {
  local label=$1 pid=$2 caps=$3 bounding=${4:-}
  expect_eq "$label: CapEff" "$(status_field "$pid" CapEff)" "$caps"
  expect_eq "$label: CapPrm" "$(status_field "$pid" CapPrm)" "$caps"
  expect_eq "$label: CapInh" "$(status_field "$pid" CapInh)" "$NONE"
  expect_eq "$label: CapAmb" "$(status_field "$pid" CapAmb)" "$NONE"
  [ -z "$bounding" ] || expect_eq "$label: CapBnd" "$(status_field "$pid" CapBnd)" "$bounding"
  expect_eq "$label: NoNewPrivs" "$(status_field "$pid" NoNewPrivs)" 1
}

# start_run LABEL SETPRIV_ARGS... -- RUN_ARGS...: starts run behind setpriv; waits until ready.
start_run() {
  local label=$1; shift
  local pre=()
  while [ "$1" != -- ]; do pre+=("$1"); shift; done
  shift
  spawn ip netns exec "$POD" setpriv "${pre[@]}" "$SIDECAR" run --pod-ip "$POD_IP" "$@" >"$WORK/$label.log" 2>"$WORK/$label.err"
  SIDECAR_PID=$SPAWNED
  wait_for 20 sh -c "[ \"\$(ip netns exec '$POD' curl -s -o /dev/null -m 2 -w '%{http_code}' http://127.0.0.1:15021/healthz/ready)\" = 200 ]" ||
    fail "$label: not ready: $(cat "$WORK/$label.err")"
}
# serves LABEL PORT: a pong server on the pod IP, reached from the client pod through the capture.
serves() {
  serve_pong "$POD" "$POD_IP" "$2" 1
  wait_listen "$POD" "$2" || fail "no server on $2"
  expect_eq "$1: client pod -> $POD_IP:$2" "$(client "$CLIENT" "$POD_IP" "$2")" pong
}

# run as the proxy uid from the start, no capability at all.
start_run as-proxy-uid "${AS_PROXY[@]}" "${NO_CAPS[@]}" -- --uid "$PROXY_UID" --gid "$PROXY_UID"
expect_eq "as-proxy-uid: uid" "$(ps -o uid= -p "$SIDECAR_PID" | tr -d ' ')" "$PROXY_UID"
expect_privileges as-proxy-uid "$SIDECAR_PID" "$NONE" "$NONE"
serves as-proxy-uid 8081
stop_sidecar || fail "as-proxy-uid: exit status $?"

# run as root holding only CAP_SETUID and CAP_SETGID: binds, drops to the proxy uid, keeps nothing.
start_run root-setuid --bounding-set -all,+setuid,+setgid -- --uid "$PROXY_UID" --gid "$PROXY_UID"
expect_eq "root-setuid: uid after the drop" "$(ps -o uid= -p "$SIDECAR_PID" | tr -d ' ')" "$PROXY_UID"
# Without CAP_SETPCAP the bounding set cannot shrink: it stays the two that setpriv left.
expect_privileges root-setuid "$SIDECAR_PID" "$NONE" 00000000000000c0
serves root-setuid 8082
stop_sidecar || fail "root-setuid: exit status $?"

# run as root without CAP_SETGID/CAP_SETUID cannot become the proxy uid: exit 2, a message.
status=0
timeout 20 ip netns exec "$POD" setpriv "${NO_CAPS[@]}" "$SIDECAR" run --pod-ip "$POD_IP" 2>"$WORK/nocap.err" || status=$?
expect_eq "root without capabilities: exit status" "$status" 2
grep -q "not permitted" "$WORK/nocap.err" || fail "root without capabilities: no message"
pass "root without capabilities: $(grep -o 'setgroups.*' "$WORK/nocap.err")"

# --mark needs CAP_NET_ADMIN, kept across the drop and nothing else; refused without it.
status=0
timeout 20 ip netns exec "$POD" setpriv "${AS_PROXY[@]}" "${NO_CAPS[@]}" "$SIDECAR" run --pod-ip "$POD_IP" --mark 0x539 \
  2>"$WORK/mark-nocap.err" || status=$?
expect_eq "--mark without CAP_NET_ADMIN: exit status" "$status" 2
grep -q -- "--mark needs CAP_NET_ADMIN" "$WORK/mark-nocap.err" || fail "--mark without CAP_NET_ADMIN: no message"
pass "--mark without CAP_NET_ADMIN: $(grep -o -- '--mark needs.*' "$WORK/mark-nocap.err")"
start_run root-mark --bounding-set -all,+setuid,+setgid,+net_admin -- --uid "$PROXY_UID" --gid "$PROXY_UID" --mark 0x539
expect_eq "root-mark: uid after the drop" "$(ps -o uid= -p "$SIDECAR_PID" | tr -d ' ')" "$PROXY_UID"
expect_privileges "root-mark (CAP_NET_ADMIN only)" "$SIDECAR_PID" "$NET_ADMIN_MASK" 00000000000010c0
serves root-mark 8083
stop_sidecar || fail "root-mark: exit status $?"

# --mode tproxy: the transparent listener needs CAP_NET_ADMIN at bind time: exit 1, a message naming it.
status=0
timeout 20 ip netns exec "$POD" setpriv --bounding-set -all,+setuid,+setgid "$SIDECAR" run --pod-ip "$POD_IP" \
  --mode tproxy 2>"$WORK/tproxy-nocap.err" || status=$?
expect_eq "--mode tproxy without CAP_NET_ADMIN: exit status" "$status" 1
grep -q "tproxy needs CAP_NET_ADMIN" "$WORK/tproxy-nocap.err" || fail "--mode tproxy without CAP_NET_ADMIN: no message"
pass "--mode tproxy without CAP_NET_ADMIN: $(grep -o 'listen on.*' "$WORK/tproxy-nocap.err")"
start_run root-tproxy --bounding-set -all,+setuid,+setgid,+net_admin -- --uid "$PROXY_UID" --gid "$PROXY_UID" --mode tproxy
expect_privileges "root-tproxy (CAP_NET_ADMIN only)" "$SIDECAR_PID" "$NET_ADMIN_MASK" 00000000000010c0
stop_sidecar || fail "root-tproxy: exit status $?"

# Every combination of --uid, --mark and --mode, started as root with every capability, and inheritable
# and ambient ones besides (a runtime could pass them): each keeps exactly what its mode needs, and with
# CAP_SETPCAP at hand the bounding set is cut to the same. The capture rules exempt the mark too, and every
# redirect case delivers through them (SO_MARK on the delivery needs the CAP_NET_ADMIN it kept).
MARK=4242
ip netns exec "$POD" "$SIDECAR" init --proxy-uid "$PROXY_UID" --proxy-gid "$PROXY_UID" --proxy-mark "$MARK" >/dev/null ||
  fail "init --proxy-mark $MARK failed"
EXTRA_CAPS=(--inh-caps +net_raw,+sys_admin --ambient-caps +net_raw,+sys_admin)
port=8090
for uid in "$PROXY_UID" 0; do
  for mark in "" "$MARK"; do
    for mode in redirect tproxy; do
      label="uid $uid${mark:+ --mark $mark} --mode $mode"
      start_run "matrix-$uid-${mark:-nomark}-$mode" "${EXTRA_CAPS[@]}" -- \
        --uid "$uid" --gid "$uid" ${mark:+--mark "$mark"} --mode "$mode"
      expect_eq "$label: uid" "$(status_field "$SIDECAR_PID" Uid)" "$uid $uid $uid $uid"
      expect_eq "$label: groups" "$(status_field "$SIDECAR_PID" Groups | tr -d ' \t')" "$uid"
      if [ -n "$mark" ] || [ "$mode" = tproxy ]; then
        expect_privileges "$label" "$SIDECAR_PID" "$NET_ADMIN_MASK" "$NET_ADMIN_MASK"
      else
        expect_privileges "$label" "$SIDECAR_PID" "$NONE" "$NONE"
      fi
      if [ "$mode" = redirect ]; then
        port=$((port + 1))
        serves "$label" "$port"
      fi
      stop_sidecar || fail "$label: exit status $?"
    done
  done
done
