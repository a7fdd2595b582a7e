# Bad input: every flag that takes a value, of every command, given a value that is not one (garbage, and
# empty where empty means nothing), given no value at all, and every unknown flag: exit 2 and a message
# naming the flag. Run inside a namespace of the test's own, under a timeout, so that a value wrongly
# accepted can do no harm (no rule written in the root namespace, no sidecar left running).
source "$(dirname "$0")/../sidecar/lib.sh"
NS=$(make_ns flags)
_namespaces+=("$NS")

# The value-taking flags of each command, from its --help, so a flag added later is covered too.
flags_of() {
  "$SIDECAR" "$1" --help | sed -n 's/^ *\(--[a-z0-9-]*\) [A-Z].*/\1/p' | sort -u
}

tried=0
# try COMMAND EXPECTED_WORD ARGS...: exit status 2 and EXPECTED_WORD in stderr.
try() {
  local command=$1 word=$2; shift 2
  local status=0
  timeout 20 ip netns exec "$NS" "$SIDECAR" "$command" "$@" >/dev/null 2>"$TMPDIR_FLAGS/err" || status=$?
  [ "$status" = 2 ] || fail "$command $*: exit status $status, expected 2 ($(head -c 300 "$TMPDIR_FLAGS/err"))"
  grep -qF -- "$word" "$TMPDIR_FLAGS/err" || fail "$command $*: the message does not name $word: $(head -c 300 "$TMPDIR_FLAGS/err")"
  tried=$((tried + 1))
}
TMPDIR_FLAGS=$(mktemp -d)
trap 'rm -rf "$TMPDIR_FLAGS"; cleanup' EXIT

# Values that are not valid for any value-taking flag of the sidecar.
BAD_VALUES=("x!" "-5" "99999999999999999999" "1.5" " 1" "0x" "[::1" "1=2=3" "http" "%00")
# Interface names are almost free-form (the kernel refuses only these): no name a kernel could have.
BAD_INTERFACES=("abcdefghijklmnop" "a/b" "a:b" " 1" "a b" "." ".." "99999999999999999999" "[::1" "eth0,,eth1" "eth0,")
for command in init run wait check-binds; do
  flags=$(flags_of "$command")
  [ -n "$flags" ] || fail "$command: no flag found in --help"
  for flag in $flags; do
    values=("${BAD_VALUES[@]}")
    case "$command $flag" in
      "init --exclude-interfaces" | "init --kubevirt-interfaces") values=("${BAD_INTERFACES[@]}") ;;
    esac
    for value in "${values[@]}"; do
      try "$command" "$flag" "$flag" "$value"
      try "$command" "$flag" "$flag=$value"
    done
    try "$command" "$flag" "$flag"  # no value at all
  done
  try "$command" "--no-such-flag" --no-such-flag
  pass "$command: every value-taking flag ($(echo $flags | tr ' ' ',')) refuses bad values with exit 2 naming it"
done
# Empty values, for the flags where empty is not a value ("" is a valid empty port list for
# --inbound-ports and the exclusions, and means "no mark" for --mark).
for command in init run wait check-binds; do
  for flag in $(flags_of "$command"); do
    case "$command $flag" in
      "init --inbound-ports" | "init --exclude-inbound-ports" | "init --exclude-outbound-ports" | "init --proxy-mark" | "run --mark") continue ;;
      # Istio's lists, where "" is the empty list (no range, port, interface or group), and "" turns the
      # tunnel port off.
      "init --outbound-ip-ranges" | "init --exclude-outbound-ip-ranges" | "init --include-outbound-ports") continue ;;
      "init --exclude-interfaces" | "init --kubevirt-interfaces" | "init --inbound-tunnel-port") continue ;;
      "init --include-outbound-owner-groups" | "init --exclude-outbound-owner-groups") continue ;;
    esac
    try "$command" "$flag" "$flag" ""
  done
done
pass "empty values refused where empty means nothing"
# Values right at the edges.
try run --inbound-port --inbound-port 65536
try run --inbound-port --inbound-port 0
try run --threads --threads 257
try run --threads --threads 0
try run --uid --uid 4294967295
try run --connect-timeout --connect-timeout 0
try run --idle-timeout --idle-timeout 366d
try run --drain-timeout --drain-timeout 8761h
try run --mark --mark 0
try run --mark --mark 0x100000000
try run --inbound-default-endpoint --inbound-default-endpoint "80=127.0.0.1:0"
try run --inbound-default-endpoint --inbound-default-endpoint "0=127.0.0.1:80"
try run --inbound-default-endpoint --inbound-default-endpoint "80=::1:80"
try run --pod-ip --pod-ip 127.0.0.1
try run --inbound-proxy-protocol-send --inbound-proxy-protocol-send v3
try run --outbound-proxy-protocol-accept --outbound-proxy-protocol-accept both
try run --proxy-protocol-timeout --proxy-protocol-timeout 0
try run --pod-ip --pod-ip 224.0.0.1
try run --admin-port --inbound-port 15000
try run --metrics-port --metrics-port 15000
try run --pod-labels-file --pod-labels-file /nonexistent/labels
try wait --url --url "https://127.0.0.1:15021/healthz/ready"
try wait --url --url "http://localhost:15021/healthz/ready"
try init --inbound-ports --inbound-ports "80,,81"
try init --proxy-uid --proxy-uid 4294967295
try init --include-outbound-ports --include-outbound-ports "80,,81"
try init --exclude-outbound-ip-ranges --exclude-outbound-ip-ranges "10.0.0.0/8,,fd00::/8"
try init --outbound-ip-ranges --outbound-ip-ranges "10.0.0.0/33"
try init --exclude-outbound-ip-ranges --exclude-outbound-ip-ranges "fd00::/129"
try init --exclude-interfaces --exclude-interfaces "abcdefghijklmnop"
try init --exclude-outbound-owner-groups --exclude-outbound-owner-groups "4294967295"
pass "edge values refused"
echo "bad inputs tried: $tried"
