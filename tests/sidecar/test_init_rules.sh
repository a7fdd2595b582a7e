# init's rules in a namespace of the test's own: --dry-run prints Istio's rules and changes nothing;
# applying twice changes nothing; --clean leaves the tables (and the user's own rules) exactly as before.
source "$(dirname "$0")/lib.sh"

make_ns pod >/dev/null   # not in $(...): make_ns must run in this shell to be removed on exit
POD="${TEST_TAG}-pod"
in_pod() { ip netns exec "$POD" "$@"; }

# Everything init could touch, without iptables-save's timestamp comments.
snapshot() {
  in_pod sh -c 'iptables-save; ip6tables-save; ip -4 rule; ip -6 rule; ip -4 route show table all;
                ip -6 route show table all; ip addr show dev lo' | grep -v '^#'
}

# A user's own rules in IPv4's nat table: they must survive init and --clean. IPv6's nat table does not
# exist yet (nf_tables creates tables on first use): --clean must delete it again.
in_pod iptables -t nat -A OUTPUT -p tcp --dport 9999 -j RETURN
in_pod iptables -t nat -A PREROUTING -p tcp --dport 9998 -j RETURN
before=$(snapshot)

# --- dry run: the expected rules, nothing changed
dry=$(in_pod "$SIDECAR" init --dry-run)
for rule in \
  '-A PREROUTING -p tcp -j PODPROXY_INBOUND' \
  '-A OUTPUT -p tcp -j PODPROXY_OUTPUT' \
  '-A PODPROXY_INBOUND -p tcp --dport 15021 -j RETURN' \
  '-A PODPROXY_INBOUND -p tcp --dport 15090 -j RETURN' \
  '-A PODPROXY_INBOUND -p tcp -j PODPROXY_IN_REDIRECT' \
  '-A PODPROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006' \
  '-A PODPROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15001' \
  '-A PODPROXY_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN' \
  '-A PODPROXY_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j PODPROXY_IN_REDIRECT' \
  '-A PODPROXY_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN' \
  '-A PODPROXY_OUTPUT -m owner --gid-owner 1337 -j RETURN' \
  '-A PODPROXY_OUTPUT -d 127.0.0.1/32 -j RETURN' \
  '-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT' \
  '-A PODPROXY_OUTPUT -o lo -s ::6/128 -j RETURN' \
  '-A PODPROXY_OUTPUT -d ::1/128 -j RETURN' \
  '# IPv6: ip -6 addr add ::6/128 dev lo (unless present)'; do
  grep -qxF -- "$rule" <<<"$dry" || fail "dry run lacks: $rule"
done
[ "$(grep -c '^COMMIT$' <<<"$dry")" = 2 ] || fail "dry run: expected one IPv4 and one IPv6 transaction"
[ "$(snapshot)" = "$before" ] || fail "--dry-run changed the namespace"
pass "init --dry-run prints Istio's chains and rules and changes nothing"

dry=$(in_pod "$SIDECAR" init --dry-run --inbound-ports 8080,9090 --exclude-inbound-ports 22 \
  --exclude-outbound-ports 5432 --proxy-uid 2000 --proxy-gid 3000 --proxy-mark 0x10 --no-ipv6)
for rule in \
  '-A PODPROXY_INBOUND -p tcp --dport 8080 -j PODPROXY_IN_REDIRECT' \
  '-A PODPROXY_INBOUND -p tcp --dport 9090 -j PODPROXY_IN_REDIRECT' \
  '-A PODPROXY_INBOUND -p tcp --dport 22 -j RETURN' \
  '-A PODPROXY_OUTPUT -p tcp --dport 5432 -j RETURN' \
  '-A PODPROXY_OUTPUT -m owner --uid-owner 2000 -j RETURN' \
  '-A PODPROXY_OUTPUT -m owner --gid-owner 3000 -j RETURN' \
  '-A PODPROXY_OUTPUT -m mark --mark 16 -j RETURN'; do
  grep -qxF -- "$rule" <<<"$dry" || fail "dry run with flags lacks: $rule"
done
! grep -qxF -- '-A PODPROXY_INBOUND -p tcp -j PODPROXY_IN_REDIRECT' <<<"$dry" || fail "--inbound-ports still captures all"
! grep -q '::6' <<<"$dry" || fail "--no-ipv6 still writes IPv6 rules"
pass "init --dry-run follows --inbound-ports, the exclusions, uid, gid, mark and --no-ipv6"

# Istio's capture options: each chain's rules as --dry-run prints them, exactly and in order, per family.
dry=$(in_pod "$SIDECAR" init --dry-run --ip-families dual --outbound-ip-ranges 10.0.0.0/8,fd00::/8 \
  --exclude-outbound-ip-ranges 10.96.0.0/12,fd00:96::/32 --include-outbound-ports 443 --exclude-interfaces eth1 \
  --kubevirt-interfaces kv0 --exclude-outbound-owner-groups 2000 --drop-invalid)
# chain FAMILY TABLE CHAIN: that chain's rules in the family's transaction.
chain() {
  awk -v fam="# $1:" -v table="*$2" -v chain="-A $3 " '
    index($0, "# ") == 1 { in_fam = index($0, fam) == 1 } $0 == table { in_table = 1 } $0 == "COMMIT" { in_table = 0 }
    in_fam && in_table && index($0, chain) == 1' <<<"$dry"
}
want_output() {  # FAMILY SOURCE LOOPBACK EXCLUDED INCLUDED
  printf '%s\n' "-A PODPROXY_OUTPUT -o eth1 -j RETURN" "-A PODPROXY_OUTPUT -o lo -s $2 -j RETURN"
  for kind in uid gid; do
    printf '%s\n' "-A PODPROXY_OUTPUT -o lo ! -d $3 -p tcp ! --dport 15008 -m owner --$kind-owner 1337 -j PODPROXY_IN_REDIRECT" \
      "-A PODPROXY_OUTPUT -o lo -m owner ! --$kind-owner 1337 -j RETURN" "-A PODPROXY_OUTPUT -m owner --$kind-owner 1337 -j RETURN"
  done
  printf '%s\n' "-A PODPROXY_OUTPUT -m owner --gid-owner 2000 -j RETURN" "-A PODPROXY_OUTPUT -d $3 -j RETURN" \
    "-A PODPROXY_OUTPUT -d $4 -j RETURN" "-A PODPROXY_OUTPUT -p tcp --dport 443 -j PODPROXY_REDIRECT" \
    "-A PODPROXY_OUTPUT -d $5 -j PODPROXY_REDIRECT"
}
[ "$(chain IPv4 nat PODPROXY_OUTPUT)" = "$(want_output IPv4 127.0.0.6/32 127.0.0.1/32 10.96.0.0/12 10.0.0.0/8)" ] ||
  fail "IPv4 PODPROXY_OUTPUT: $(diff <(want_output IPv4 127.0.0.6/32 127.0.0.1/32 10.96.0.0/12 10.0.0.0/8) <(chain IPv4 nat PODPROXY_OUTPUT))"
[ "$(chain IPv6 nat PODPROXY_OUTPUT)" = "$(want_output IPv6 ::6/128 ::1/128 fd00:96::/32 fd00::/8)" ] ||
  fail "IPv6 PODPROXY_OUTPUT: $(diff <(want_output IPv6 ::6/128 ::1/128 fd00:96::/32 fd00::/8) <(chain IPv6 nat PODPROXY_OUTPUT))"
want_inbound=$(printf '%s\n' "-A PODPROXY_INBOUND -p tcp ! -i lo -d 127.0.0.0/8 -j RETURN" \
  "-A PODPROXY_INBOUND -i kv0 -d 10.0.0.0/8 -j PODPROXY_REDIRECT" "-A PODPROXY_INBOUND -i kv0 -j RETURN" \
  "-A PODPROXY_INBOUND -i eth1 -j RETURN" "-A PODPROXY_INBOUND -p tcp --dport 15008 -j RETURN")
[ "$(chain IPv4 nat PODPROXY_INBOUND | head -5)" = "$want_inbound" ] ||
  fail "IPv4 PODPROXY_INBOUND starts: $(chain IPv4 nat PODPROXY_INBOUND | head -5)"
[ "$(chain IPv6 mangle PODPROXY_DROP)" = "-A PODPROXY_DROP -j DROP" ] || fail "IPv6 PODPROXY_DROP: $(chain IPv6 mangle PODPROXY_DROP)"
[ "$(grep -c -x -- '-A PREROUTING -m conntrack --ctstate INVALID -j PODPROXY_DROP' <<<"$dry")" = 2 ] ||
  fail "--drop-invalid: no hook in each family"
[ "$(snapshot)" = "$before" ] || fail "--dry-run changed the namespace"
pass "init --dry-run prints Istio's capture options' rules per chain, in Istio's order, each family its own ranges"

# --- apply, twice
in_pod "$SIDECAR" init >/dev/null
first=$(snapshot)
[ "$first" != "$before" ] || fail "init changed nothing"
grep -qx -- '-A PODPROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006' <<<"$(in_pod iptables-save -t nat)" ||
  fail "applied rules lack the inbound redirect"
grep -qx -- '-A PODPROXY_OUTPUT -s ::6/128 -o lo -j RETURN' <<<"$(in_pod ip6tables-save -t nat)" || fail "no IPv6 rules"
grep -q 'inet6 ::6/128' <<<"$(in_pod ip -6 addr show dev lo)" || fail "::6 not added to lo"
# The user's rules keep their place in front of ours.
grep -A1 -x -- '-A OUTPUT -p tcp -m tcp --dport 9999 -j RETURN' <<<"$(in_pod iptables-save -t nat)" |
  grep -qx -- '-A OUTPUT -p tcp -j PODPROXY_OUTPUT' || fail "the user's OUTPUT rule moved"
in_pod "$SIDECAR" init >/dev/null
[ "$(snapshot)" = "$first" ] || { diff <(echo "$first") <(snapshot) >&2; fail "applying twice changed the tables"; }
pass "init applied; applying it again changes nothing (iptables-save, ip6tables-save, rules, routes identical)"

# --- clean
in_pod "$SIDECAR" init --clean >/dev/null
[ "$(snapshot)" = "$before" ] || { diff <(echo "$before") <(snapshot) >&2; fail "--clean did not restore the namespace"; }
grep -qx -- '-A OUTPUT -p tcp -m tcp --dport 9999 -j RETURN' <<<"$(in_pod iptables-save -t nat)" || fail "user rule lost"
[ -z "$(in_pod ip6tables-save)" ] || fail "--clean left the IPv6 nat table init had created"
in_pod "$SIDECAR" init --clean >/dev/null   # nothing left to remove: still succeeds
[ "$(snapshot)" = "$before" ] || fail "a second --clean changed something"
pass "init --clean leaves the tables exactly as before: the user's rules kept, the table init created deleted"

# --- without nft(8) --clean cannot delete the IPv6 table init created: it says so, keeps the table's marker
# chain (and nothing else of init's), and a later --clean with nft deletes the table
NO_NFT=$(mktemp -d)
trap 'rm -rf "$NO_NFT"; cleanup' EXIT
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore ip; do
  ln -s "$(command -v "$t")" "$NO_NFT/$t"
done
in_pod "$SIDECAR" init >/dev/null
err=$(in_pod env PATH="$NO_NFT" "$SIDECAR" init --clean 2>&1 >/dev/null) || fail "--clean without nft failed: $err"
grep -q "'nft' not found in PATH" <<<"$err" && grep -q 'IPv6 nat table' <<<"$err" ||
  fail "--clean without nft did not say which table it left: $err"
left=$(in_pod ip6tables-save -t nat)
grep -qx ':PODPROXY_ADDED_TABLE - \[0:0\]' <<<"$left" || fail "--clean without nft dropped the table's marker: $left"
[ "$(grep -c 'PODPROXY_' <<<"$left")" -eq 1 ] || fail "--clean without nft left more than the marker: $left"
grep -qx -- '-A OUTPUT -p tcp -m tcp --dport 9999 -j RETURN' <<<"$(in_pod iptables-save -t nat)" || fail "user rule lost"
in_pod "$SIDECAR" init --clean >/dev/null
[ "$(snapshot)" = "$before" ] || { diff <(echo "$before") <(snapshot) >&2; fail "--clean with nft left the table"; }
rm -rf "$NO_NFT"
trap cleanup EXIT
pass "without nft, --clean says it leaves the IPv6 table with its marker; --clean with nft then deletes it"

# --- an address init did not add is not init's to remove
in_pod ip -6 addr add ::6/128 dev lo
before=$(snapshot)
in_pod "$SIDECAR" init >/dev/null
in_pod "$SIDECAR" init --clean >/dev/null
[ "$(snapshot)" = "$before" ] || fail "--clean removed a ::6 that was there before init"
pass "--clean keeps a ::6 address that existed before init"

# --- a family that fails after the other was applied: init rolls the first back and fails
FAKE_BIN=$(mktemp -d)
trap 'rm -rf "$FAKE_BIN"; cleanup' EXIT
printf '#!/bin/sh\ncat >/dev/null\necho "ip6tables-restore: simulated failure" >&2\nexit 1\n' >"$FAKE_BIN/ip6tables-restore"
chmod +x "$FAKE_BIN/ip6tables-restore"
in_pod ip -6 addr del ::6/128 dev lo
before=$(snapshot)
status=0; err=$(in_pod env PATH="$FAKE_BIN:$PATH" "$SIDECAR" init 2>&1 >/dev/null) || status=$?
[ "$status" = 1 ] || fail "init with a failing ip6tables-restore: exit $status, want 1"
grep -q 'simulated failure' <<<"$err" || fail "the tool's error is not shown: $err"
grep -q 'IPv4 rules rolled back' <<<"$err" || fail "no rollback reported: $err"
[ "$(snapshot)" = "$before" ] || { diff <(echo "$before") <(snapshot) >&2; fail "IPv4 rules not rolled back"; }
# The same over an existing init: the previous (redirect) rules come back exactly.
in_pod "$SIDECAR" init >/dev/null
applied=$(snapshot)
status=0; in_pod env PATH="$FAKE_BIN:$PATH" "$SIDECAR" init --mode tproxy --inbound-ports 8080 2>/dev/null || status=$?
[ "$status" = 1 ] || fail "tproxy init with a failing ip6tables-restore: exit $status, want 1"
[ "$(snapshot)" = "$applied" ] || { diff <(echo "$applied") <(snapshot) >&2; fail "previous rules not restored"; }
in_pod "$SIDECAR" init --clean >/dev/null
[ "$(snapshot)" = "$before" ] || fail "--clean after a rolled-back init did not restore the namespace"
pass "when IPv6 fails after IPv4 was applied, init rolls IPv4 back (fresh, and over earlier rules) and exits 1"
