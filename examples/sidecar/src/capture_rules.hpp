// The capture rules `init` writes: Istio's istio-iptables chains under a PODPROXY_ prefix, rendered as
// iptables-restore input, and the --noflush transactions that apply or remove them without touching
// anyone else's rules. Pure functions of their inputs (no I/O), so the unit tests can pin them.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar::capture {

enum class Mode { redirect, tproxy };
enum class Family { v4, v6 };

/// The sidecar's own ports (admin, outbound, inbound, metrics, health, Envoy stats): never captured inbound.
inline constexpr std::array<std::uint16_t, 6> sidecar_ports{15000, 15001, 15006, 15020, 15021, 15090};

/// Every chain init creates starts with this; `--clean` removes exactly the chains with it.
inline constexpr std::string_view chain_prefix = "PODPROXY_";

/// Marker chain: init created this table (nf_tables creates a table on first use; --clean deletes it
/// again when nothing else uses it, so the namespace is left exactly as it was).
inline constexpr std::string_view table_marker = "PODPROXY_ADDED_TABLE";

/// Istio's mark for "the proxy calling its own pod over lo" in TPROXY mode (its OutboundMark).
inline constexpr std::uint32_t own_pod_mark = 1338;

/// Istio's tunnel (HBONE) port: the default of --inbound-tunnel-port.
inline constexpr std::uint16_t istio_tunnel_port = 15008;

/// An address range of one family, as iptables prints it ("10.0.0.0/8", "fd00::/8").
struct Cidr {
  Family family = Family::v4;
  std::string text;
  /// Whether the range holds a loopback address (Istio's HasLoopBackIP: such an include range keeps
  /// the application's calls over lo captured).
  bool loopback = false;
  bool operator==(const Cidr&) const = default;
};

struct CaptureConfig {
  Mode mode = Mode::redirect;
  std::uint16_t inbound_port = 15006;
  std::uint16_t outbound_port = 15001;
  /// Ports captured inbound; std::nullopt is "*" (every port but the excluded ones).
  std::optional<std::vector<std::uint16_t>> inbound_ports;
  std::vector<std::uint16_t> exclude_inbound_ports;
  std::vector<std::uint16_t> exclude_outbound_ports;
  std::uint32_t proxy_uid = 1337;
  std::uint32_t proxy_gid = 1337;
  /// SO_MARK of the proxy's own sockets, exempted like its uid (for a proxy that does not drop to 1337).
  std::optional<std::uint32_t> proxy_mark;
  /// Whether the proxy is also told apart by proxy_uid/proxy_gid (owner rules). Without them only
  /// proxy_mark exempts it: where the proxy has no uid of its own, as in a user namespace that maps only
  /// uid 0 (the application's uid too), an owner rule would match the application or, naming an unmapped
  /// uid, be refused by the kernel.
  bool owner_rules = true;
  /// TPROXY mode: the mark TPROXY sets, the fwmark of the ip rule, and the connmark of inbound deliveries.
  std::uint32_t tproxy_mark = 1337;
  /// TPROXY mode: the routing table holding `local default dev lo` (Istio's 133).
  std::uint32_t route_table = 133;
  /// Outbound destinations captured; std::nullopt is "*". Each family's rules take its own ranges only,
  /// so an IPv4-only list captures no IPv6 destination (as Istio's includeOutboundIPRanges).
  std::optional<std::vector<Cidr>> outbound_ip_ranges;
  std::vector<Cidr> exclude_outbound_ip_ranges;
  /// Destination ports captured outbound whatever the included ranges (an excluded range still passes
  /// first: Istio's order).
  std::vector<std::uint16_t> include_outbound_ports;
  /// Interfaces whose traffic is never captured, either way.
  std::vector<std::string> exclude_interfaces;
  /// Interfaces (KubeVirt VMs) whose inbound traffic is captured as outbound.
  std::vector<std::string> kubevirt_interfaces;
  /// Outbound capture by the sending process's group: only these (std::nullopt: every group) ...
  std::optional<std::vector<std::string>> include_owner_groups;
  /// ... or every group but these (init refuses both at once).
  std::vector<std::string> exclude_owner_groups;
  /// Drop packets conntrack finds INVALID (Istio's INVALID_DROP) instead of letting them reach a socket
  /// that answers with a reset.
  bool drop_invalid = false;
  /// Istio's tunnel port: left alone inbound and by the proxy's calls to its own pod; std::nullopt: none.
  std::optional<std::uint16_t> inbound_tunnel_port = istio_tunnel_port;
};

/// One table of a rule set: chains to create, rules hooking them into built-in chains, and their rules.
struct TableRules {
  std::string name;
  std::vector<std::string> chains;  // created (or flushed, when they exist) by declaring them
  std::vector<std::string> hooks;   // "-A PREROUTING -p tcp -j PODPROXY_INBOUND", in iptables-save's spelling
  std::vector<std::string> rules;   // "-A PODPROXY_...": the contents of our chains
};

struct RuleSet {
  std::vector<TableRules> tables;
};

namespace detail {

inline std::vector<std::uint16_t> sorted_unique(std::vector<std::uint16_t> ports) {
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  return ports;
}

/// Ports never captured inbound: the sidecar's own, the configured listeners, and --exclude-inbound-ports.
inline std::vector<std::uint16_t> inbound_exempt_ports(const CaptureConfig& config) {
  std::vector<std::uint16_t> ports(sidecar_ports.begin(), sidecar_ports.end());
  ports.push_back(config.inbound_port);
  ports.push_back(config.outbound_port);
  ports.insert(ports.end(), config.exclude_inbound_ports.begin(), config.exclude_inbound_ports.end());
  return sorted_unique(std::move(ports));
}

/// Loopback destinations in `family` (IPv6's includes the IPv4-mapped 127.0.0.0/8).
inline std::vector<std::string_view> loopback_ranges(Family family) {
  if (family == Family::v6) return {"::1/128", "::ffff:127.0.0.0/104"};
  return {"127.0.0.0/8"};
}

/// The first rules of PODPROXY_INBOUND (either table): a packet from the network addressed to a loopback
/// address is left alone, so the kernel drops it as a martian as it would without a sidecar. Captured, it
/// would be rewritten before that check and reach loopback-only services (ProxyOptions::loopback_guard is
/// the proxy's own line of defence against the same).
inline void leave_loopback_alone(std::vector<std::string>& rules, Family family) {
  for (const auto range : loopback_ranges(family)) {
    rules.push_back(fmt::format("-A PODPROXY_INBOUND -p tcp ! -i lo -d {} -j RETURN", range));
  }
}

/// Whether an included outbound range of either family holds a loopback address (Istio checks both).
inline bool includes_loopback(const CaptureConfig& config) {
  return config.outbound_ip_ranges &&
         std::any_of(config.outbound_ip_ranges->begin(), config.outbound_ip_ranges->end(),
                     [](const Cidr& c) { return c.loopback; });
}

/// The start of nat's PODPROXY_INBOUND for interfaces, in the order Istio's PREROUTING ends up with:
/// what arrives on a KubeVirt interface goes to the outbound listener (only to the included ranges),
/// anything else from it is left alone, and so is all traffic of an excluded interface.
inline void interface_rules(const CaptureConfig& config, Family family, std::vector<std::string>& r) {
  for (const auto& name : config.kubevirt_interfaces) {
    if (!config.outbound_ip_ranges) {
      r.push_back(fmt::format("-A PODPROXY_INBOUND -i {} -j PODPROXY_REDIRECT", name));
      continue;
    }
    for (const auto& cidr : *config.outbound_ip_ranges) {
      if (cidr.family == family) {
        r.push_back(fmt::format("-A PODPROXY_INBOUND -i {} -d {} -j PODPROXY_REDIRECT", name, cidr.text));
      }
    }
  }
  for (const auto& name : config.kubevirt_interfaces) {
    r.push_back(fmt::format("-A PODPROXY_INBOUND -i {} -j RETURN", name));
  }
  for (const auto& name : config.exclude_interfaces) {
    r.push_back(fmt::format("-A PODPROXY_INBOUND -i {} -j RETURN", name));
  }
}

/// Outbound capture by owner group, as Istio's: an include list is one rule letting every other group
/// pass; an exclude list lets each of its groups pass.
inline void owner_group_rules(const CaptureConfig& config, std::vector<std::string>& r) {
  if (config.include_owner_groups) {
    std::string none_of;
    for (const auto& group : *config.include_owner_groups) none_of += fmt::format(" -m owner ! --gid-owner {}", group);
    r.push_back(fmt::format("-A PODPROXY_OUTPUT{} -j RETURN", none_of));
  }
  for (const auto& group : config.exclude_owner_groups) {
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -m owner --gid-owner {} -j RETURN", group));
  }
}

inline TableRules nat_table(const CaptureConfig& config, Family family) {
  const bool v6 = family == Family::v6;
  const std::string_view inbound_source = v6 ? "::6/128" : "127.0.0.6/32";
  const std::string_view loopback = v6 ? "::1/128" : "127.0.0.1/32";
  TableRules nat{.name = "nat", .chains = {}, .hooks = {}, .rules = {}};
  auto& r = nat.rules;
  const std::string not_tunnel =
      config.inbound_tunnel_port ? fmt::format(" -p tcp ! --dport {}", *config.inbound_tunnel_port) : "";

  nat.chains = {"PODPROXY_REDIRECT", "PODPROXY_IN_REDIRECT", "PODPROXY_OUTPUT"};
  r.push_back(fmt::format("-A PODPROXY_REDIRECT -p tcp -j REDIRECT --to-ports {}", config.outbound_port));
  r.push_back(fmt::format("-A PODPROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}", config.inbound_port));

  // Inbound in REDIRECT mode (TPROXY mode captures inbound in the mangle table instead, but a KubeVirt
  // interface's traffic is outbound traffic, which nat captures in both modes).
  if (config.mode == Mode::redirect || !config.kubevirt_interfaces.empty()) {
    nat.chains.insert(nat.chains.begin(), "PODPROXY_INBOUND");
    nat.hooks.push_back("-A PREROUTING -p tcp -j PODPROXY_INBOUND");
    leave_loopback_alone(r, family);
    interface_rules(config, family, r);
  }
  if (config.mode == Mode::redirect) {
    if (config.inbound_tunnel_port) {
      r.push_back(fmt::format("-A PODPROXY_INBOUND -p tcp --dport {} -j RETURN", *config.inbound_tunnel_port));
    }
    for (const auto port : inbound_exempt_ports(config)) {
      r.push_back(fmt::format("-A PODPROXY_INBOUND -p tcp --dport {} -j RETURN", port));
    }
    if (!config.inbound_ports) {
      r.push_back("-A PODPROXY_INBOUND -p tcp -j PODPROXY_IN_REDIRECT");
    } else {
      for (const auto port : sorted_unique(*config.inbound_ports)) {
        r.push_back(fmt::format("-A PODPROXY_INBOUND -p tcp --dport {} -j PODPROXY_IN_REDIRECT", port));
      }
    }
  }

  // Outbound, in Istio's order (CONTEXT.md, rules 1-6).
  nat.hooks.push_back("-A OUTPUT -p tcp -j PODPROXY_OUTPUT");
  for (const auto& name : config.exclude_interfaces) {
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -o {} -j RETURN", name));
  }
  for (const auto port : sorted_unique(config.exclude_outbound_ports)) {
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -p tcp --dport {} -j RETURN", port));
  }
  // 1: the proxy's inbound deliveries (source 127.0.0.6 / ::6) pass instead of looping into the inbound port.
  r.push_back(fmt::format("-A PODPROXY_OUTPUT -o lo -s {} -j RETURN", inbound_source));
  // TPROXY mode's deliveries leave from the client's own address, not 127.0.0.6, as the proxy's uid over
  // lo toward the pod IP: rule 2 would send them back to the inbound listener. They carry the TPROXY
  // mark (so the application's replies route back to the proxy); that mark lets them pass instead.
  if (config.mode == Mode::tproxy) {
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -o lo -m mark --mark {} -j RETURN", config.tproxy_mark));
  }
  // A marking proxy is matched before the owner rules: it may run as any uid, so rule 3 would catch it.
  if (config.proxy_mark) {
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -o lo ! -d {}{} -m mark --mark {} -j PODPROXY_IN_REDIRECT",
                            loopback, not_tunnel, *config.proxy_mark));
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -m mark --mark {} -j RETURN", *config.proxy_mark));
  }
  if (!config.owner_rules && !includes_loopback(config)) {
    // 3 without owners: the proxy's own packets (marked) have been dealt with above, so whatever else
    // leaves over lo is the application calling its own pod.
    r.push_back("-A PODPROXY_OUTPUT -o lo -j RETURN");
  }
  using Owner = std::pair<std::string_view, std::uint32_t>;
  const auto owners = config.owner_rules ? std::vector<Owner>{{"uid", config.proxy_uid}, {"gid", config.proxy_gid}}
                                         : std::vector<Owner>{};
  for (const auto& [kind, id] : owners) {
    // 2: the proxy calling its own pod over lo goes to the inbound listener, except to the tunnel port,
    // where Istio's own proxy (if one runs in the pod) listens for itself.
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -o lo ! -d {}{} -m owner --{}-owner {} -j PODPROXY_IN_REDIRECT",
                            loopback, not_tunnel, kind, id));
    // 3: the app calling its own pod IP over lo is not captured (unless an included range names loopback).
    if (!includes_loopback(config)) {
      r.push_back(fmt::format("-A PODPROXY_OUTPUT -o lo -m owner ! --{}-owner {} -j RETURN", kind, id));
    }
    // 4: the proxy's own egress is not captured again.
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -m owner --{}-owner {} -j RETURN", kind, id));
  }
  owner_group_rules(config, r);
  // 5: localhost stays local.
  r.push_back(fmt::format("-A PODPROXY_OUTPUT -d {} -j RETURN", loopback));
  // 6: excluded ranges pass, then included ports are captured whatever their range, then the included
  // ranges (all of them for "*").
  for (const auto& cidr : config.exclude_outbound_ip_ranges) {
    if (cidr.family == family) r.push_back(fmt::format("-A PODPROXY_OUTPUT -d {} -j RETURN", cidr.text));
  }
  for (const auto port : sorted_unique(config.include_outbound_ports)) {
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -p tcp --dport {} -j PODPROXY_REDIRECT", port));
  }
  if (!config.outbound_ip_ranges) {
    r.push_back("-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT");
  } else {
    for (const auto& cidr : *config.outbound_ip_ranges) {
      if (cidr.family == family) r.push_back(fmt::format("-A PODPROXY_OUTPUT -d {} -j PODPROXY_REDIRECT", cidr.text));
    }
  }
  return nat;
}

/// TPROXY mode's inbound capture, as Istio's: marked packets are routed to lo by `ip rule fwmark ->
/// table`, TPROXY hands new connections to the inbound listener, and the connmark carries the mark to
/// the application's replies so they find their way back to the proxy's transparent socket.
/// --drop-invalid: Istio's jump from mangle PREROUTING, before any capture, for every protocol. In TPROXY
/// mode Istio's excluded interfaces return before it; here their RETURN opens the drop chain instead (a
/// rule in PREROUTING itself is no hook, and --clean would not find it).
inline void add_drop_invalid(const CaptureConfig& config, TableRules& mangle) {
  mangle.chains.push_back("PODPROXY_DROP");
  mangle.hooks.insert(mangle.hooks.begin(), "-A PREROUTING -m conntrack --ctstate INVALID -j PODPROXY_DROP");
  if (config.mode == Mode::tproxy) {
    for (const auto& name : config.exclude_interfaces) {
      mangle.rules.push_back(fmt::format("-A PODPROXY_DROP -i {} -j RETURN", name));
    }
  }
  mangle.rules.push_back("-A PODPROXY_DROP -j DROP");
}

inline TableRules mangle_table(const CaptureConfig& config, Family family) {
  const bool v6 = family == Family::v6;
  const std::string_view inbound_source = v6 ? "::6/128" : "127.0.0.6/32";
  const std::string_view loopback = v6 ? "::1/128" : "127.0.0.1/32";
  const auto mark = config.tproxy_mark;
  TableRules mangle{.name = "mangle",
                    .chains = {"PODPROXY_DIVERT", "PODPROXY_TPROXY", "PODPROXY_INBOUND", "PODPROXY_PREROUTING",
                               "PODPROXY_OUTPUT"},
                    .hooks = {"-A PREROUTING -p tcp -j PODPROXY_PREROUTING", "-A OUTPUT -p tcp -j PODPROXY_OUTPUT"},
                    .rules = {}};
  auto& r = mangle.rules;
  r.push_back(fmt::format("-A PODPROXY_DIVERT -j MARK --set-mark {}", mark));
  r.push_back("-A PODPROXY_DIVERT -j ACCEPT");
  r.push_back(fmt::format("-A PODPROXY_TPROXY ! -d {} -p tcp -j TPROXY --on-port {} --tproxy-mark {}/0xffffffff",
                          loopback, config.inbound_port, mark));
  // Istio puts these in PREROUTING and OUTPUT themselves; one hook per built-in chain keeps --clean exact.
  for (const auto& name : config.exclude_interfaces) {
    r.push_back(fmt::format("-A PODPROXY_PREROUTING -i {} -j RETURN", name));
  }
  r.push_back("-A PODPROXY_PREROUTING -p tcp -j PODPROXY_INBOUND");
  r.push_back(fmt::format("-A PODPROXY_PREROUTING -p tcp -m mark --mark {} -j CONNMARK --save-mark", mark));

  leave_loopback_alone(r, family);
  r.push_back(fmt::format("-A PODPROXY_INBOUND -p tcp -m mark --mark {} -j RETURN", mark));
  r.push_back(fmt::format("-A PODPROXY_INBOUND -p tcp -s {} -i lo -j RETURN", inbound_source));
  r.push_back(fmt::format("-A PODPROXY_INBOUND -p tcp -i lo -m mark ! --mark {} -j RETURN", own_pod_mark));
  for (const auto port : inbound_exempt_ports(config)) {
    r.push_back(fmt::format("-A PODPROXY_INBOUND -p tcp --dport {} -j RETURN", port));
  }
  if (!config.inbound_ports) {
    r.push_back("-A PODPROXY_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j PODPROXY_DIVERT");
    r.push_back("-A PODPROXY_INBOUND -p tcp -j PODPROXY_TPROXY");
  } else {
    for (const auto port : sorted_unique(*config.inbound_ports)) {
      r.push_back(fmt::format(
          "-A PODPROXY_INBOUND -p tcp --dport {} -m conntrack --ctstate RELATED,ESTABLISHED -j PODPROXY_DIVERT", port));
      r.push_back(fmt::format("-A PODPROXY_INBOUND -p tcp --dport {} -j PODPROXY_TPROXY", port));
    }
  }

  for (const auto& name : config.exclude_interfaces) {
    r.push_back(fmt::format("-A PODPROXY_OUTPUT -o {} -j RETURN", name));
  }
  r.push_back(fmt::format("-A PODPROXY_OUTPUT -p tcp -o lo -m mark --mark {} -j RETURN", mark));
  if (config.proxy_mark && *config.proxy_mark != mark) {
    r.push_back(fmt::format("-A PODPROXY_OUTPUT ! -d {} -p tcp -o lo -m mark --mark {} -j MARK --set-mark {}",
                            loopback, *config.proxy_mark, own_pod_mark));
  }
  if (config.owner_rules) {
    r.push_back(fmt::format("-A PODPROXY_OUTPUT ! -d {} -p tcp -o lo -m owner --uid-owner {} -j MARK --set-mark {}",
                            loopback, config.proxy_uid, own_pod_mark));
    r.push_back(fmt::format("-A PODPROXY_OUTPUT ! -d {} -p tcp -o lo -m owner --gid-owner {} -j MARK --set-mark {}",
                            loopback, config.proxy_gid, own_pod_mark));
  }
  r.push_back(fmt::format("-A PODPROXY_OUTPUT -p tcp -m connmark --mark {} -j CONNMARK --restore-mark", mark));
  return mangle;
}

inline bool is_ours(std::string_view chain) { return chain.substr(0, chain_prefix.size()) == chain_prefix; }

}  // namespace detail

/// The rules of one address family for `config`.
inline RuleSet capture_rules(const CaptureConfig& config, Family family) {
  RuleSet set;
  if (config.mode == Mode::tproxy) {
    set.tables.push_back(detail::mangle_table(config, family));
  } else if (config.drop_invalid) {
    set.tables.push_back(TableRules{.name = "mangle", .chains = {}, .hooks = {}, .rules = {}});
  }
  if (config.drop_invalid) detail::add_drop_invalid(config, set.tables.front());
  set.tables.push_back(detail::nat_table(config, family));
  return set;
}

/// Adds an empty chain to `table` of `set`: how init remembers, inside the namespace itself, that it
/// added something that is not a rule (the ::6 address, the ip rule, the local route), so that `--clean`
/// removes it and nothing it found already there.
inline void add_marker(RuleSet& set, std::string_view table, std::string marker) {
  for (auto& t : set.tables) {
    if (t.name == table) {
      t.chains.push_back(std::move(marker));
      return;
    }
  }
  set.tables.push_back(TableRules{.name = std::string(table), .chains = {std::move(marker)}, .hooks = {}, .rules = {}});
}

/// The rule set as iptables-restore input (what --dry-run prints; with --noflush it would apply it).
inline std::string restore_text(const RuleSet& set) {
  std::string out;
  for (const auto& table : set.tables) {
    out += fmt::format("*{}\n", table.name);
    for (const auto& chain : table.chains) out += fmt::format(":{} - [0:0]\n", chain);
    for (const auto& hook : table.hooks) out += hook + "\n";
    for (const auto& rule : table.rules) out += rule + "\n";
    out += "COMMIT\n";
  }
  return out;
}

/// What iptables-save shows of our rules: per table, our chains and the rules of other chains that jump
/// to ours (the hooks), each in iptables-save's spelling.
struct SavedState {
  /// Every table iptables-save showed (with the nf_tables backend, only the tables that exist).
  std::set<std::string> existing_tables;
  /// Whether the rules live in nf_tables (iptables-nft), where a table is created on first use.
  bool nf_tables = false;
  struct Table {
    std::vector<std::string> chains;
    std::vector<std::string> hooks;  // "-A PREROUTING -p tcp -j PODPROXY_INBOUND"
    std::vector<std::string> rules;  // the contents of our chains, "-A PODPROXY_..."
  };
  std::map<std::string, Table> tables;

  [[nodiscard]] bool has_chain(std::string_view table, std::string_view chain) const {
    const auto it = tables.find(std::string(table));
    return it != tables.end() &&
           std::find(it->second.chains.begin(), it->second.chains.end(), chain) != it->second.chains.end();
  }
  [[nodiscard]] bool empty() const {
    return std::all_of(tables.begin(), tables.end(),
                       [](const auto& t) { return t.second.chains.empty() && t.second.hooks.empty(); });
  }
};

/// Parses iptables-save output, keeping only what concerns PODPROXY_ chains.
inline SavedState parse_saved(std::string_view saved) {
  SavedState state;
  std::string table;
  while (!saved.empty()) {
    const auto eol = saved.find('\n');
    std::string_view line = saved.substr(0, eol);
    saved.remove_prefix(eol == std::string_view::npos ? saved.size() : eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && line.front() == '#') {
      if (line.find("(nf_tables)") != std::string_view::npos) state.nf_tables = true;
      continue;
    }
    if (line.empty()) continue;
    if (line.front() == '*') {
      table = std::string(line.substr(1));
      state.existing_tables.insert(table);
      continue;
    }
    if (line.front() == ':') {
      const auto name = line.substr(1, line.find(' ') - 1);
      if (detail::is_ours(name)) state.tables[table].chains.emplace_back(name);
      continue;
    }
    if (line.substr(0, 3) != "-A ") continue;
    const auto rest = line.substr(3);
    const auto chain = rest.substr(0, rest.find(' '));
    if (detail::is_ours(chain)) {
      state.tables[table].rules.emplace_back(line);
      continue;
    }
    // A jump (-j) or goto (-g) to one of our chains, from a built-in chain or a user's chain.
    for (const std::string_view verb : {" -j ", " -g "}) {
      const auto at = line.find(verb);
      if (at != std::string_view::npos && detail::is_ours(line.substr(at + verb.size()))) {
        state.tables[table].hooks.emplace_back(line);
        break;
      }
    }
  }
  return state;
}

/// The iptables-restore --noflush input that turns `current` into `desired` touching only our chains and
/// the rules that jump to them: our chains are (re)declared, which flushes them; hooks that already exist
/// stay where they are (so applying twice changes nothing); hooks and chains no longer wanted go.
/// Empty when there is nothing to do for a clean.
inline std::string apply_transaction(const RuleSet& desired, const SavedState& current) {
  std::set<std::string> table_names;
  for (const auto& t : desired.tables) table_names.insert(t.name);
  for (const auto& [name, t] : current.tables) {
    if (!t.chains.empty() || !t.hooks.empty()) table_names.insert(name);
  }
  std::string out;
  for (const auto& name : table_names) {
    static const TableRules none{};
    const auto want_it = std::find_if(desired.tables.begin(), desired.tables.end(),
                                      [&](const auto& t) { return t.name == name; });
    const TableRules& want = want_it == desired.tables.end() ? none : *want_it;
    const auto have_it = current.tables.find(name);
    const SavedState::Table have = have_it == current.tables.end() ? SavedState::Table{} : have_it->second;

    out += fmt::format("*{}\n", name);
    for (const auto& chain : want.chains) out += fmt::format(":{} - [0:0]\n", chain);
    std::vector<std::string> missing_hooks = want.hooks;
    for (const auto& hook : have.hooks) {
      const auto keep = std::find(missing_hooks.begin(), missing_hooks.end(), hook);
      if (keep != missing_hooks.end()) {
        missing_hooks.erase(keep);
      } else {
        out += "-D " + hook.substr(3) + "\n";
      }
    }
    for (const auto& hook : missing_hooks) out += hook + "\n";
    for (const auto& rule : want.rules) out += rule + "\n";
    // Chains no longer wanted: empty them first (they may jump to each other), then delete them.
    std::vector<std::string> unwanted;
    for (const auto& chain : have.chains) {
      if (std::find(want.chains.begin(), want.chains.end(), chain) == want.chains.end()) unwanted.push_back(chain);
    }
    for (const auto& chain : unwanted) out += fmt::format("-F {}\n", chain);
    for (const auto& chain : unwanted) out += fmt::format("-X {}\n", chain);
    out += "COMMIT\n";
  }
  return out;
}

/// What `state` holds of ours, as a rule set: applying it puts our rules back as they were (init's
/// rollback when the second address family fails after the first was applied).
inline RuleSet saved_rules(const SavedState& state) {
  RuleSet set;
  for (const auto& [name, t] : state.tables) {
    if (t.chains.empty() && t.hooks.empty()) continue;
    set.tables.push_back(TableRules{.name = name, .chains = t.chains, .hooks = t.hooks, .rules = t.rules});
  }
  return set;
}

/// The transaction that removes every PODPROXY_ chain and every rule jumping to one; empty if none.
inline std::string clean_transaction(const SavedState& current) {
  return current.empty() ? std::string{} : apply_transaction(RuleSet{}, current);
}

}  // namespace sidecar::capture
