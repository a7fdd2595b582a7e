// `init`: writes the capture rules into the current network namespace, as istio-iptables does, and
// removes exactly them again with --clean.
#include "capture_rules.hpp"
#include "cli_util.hpp"
#include "commands.hpp"
#include "host_tools.hpp"
#include "init_flags.hpp"
#include "ip_families.hpp"
#include "netns_addresses.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

namespace sidecar {
namespace {

using capture::Family;

struct InitFlags {
  std::string mode = "redirect";
  std::string inbound_port = "15006";
  std::string outbound_port = "15001";
  std::string inbound_ports = "*";
  std::string exclude_inbound_ports;
  std::string exclude_outbound_ports;
  std::string proxy_uid = "1337";
  std::string proxy_gid = "1337";
  std::string proxy_mark;
  std::string outbound_ip_ranges = "*";
  std::string exclude_outbound_ip_ranges;
  std::string include_outbound_ports;
  std::string exclude_interfaces;
  std::string kubevirt_interfaces;
  std::string include_owner_groups = "*";
  std::string exclude_owner_groups;
  std::string inbound_tunnel_port = "15008";
  bool drop_invalid = false;
  bool proxy_mark_only = false;
  bool proxy_ids_given = false;  // --proxy-uid or --proxy-gid on the command line
  std::string ip_families = "auto";
  bool no_ipv6 = false;
  bool dry_run = false;
  bool clean = false;
};

// Empty chains in the nat table that record what init added besides rules (see capture::add_marker).
constexpr const char* marker_lo6 = "PODPROXY_ADDED_LO6";
constexpr const char* marker_rule = "PODPROXY_ADDED_RULE";
constexpr const char* marker_route = "PODPROXY_ADDED_ROUTE";

capture::CaptureConfig to_config(const InitFlags& flags) {
  capture::CaptureConfig config;
  if (flags.mode == "redirect") {
    config.mode = capture::Mode::redirect;
  } else if (flags.mode == "tproxy") {
    config.mode = capture::Mode::tproxy;
  } else {
    throw CLI::ValidationError("--mode", "'" + flags.mode + "' is not a mode (redirect or tproxy)");
  }
  config.inbound_port = parse_port("--inbound-port", flags.inbound_port);
  config.outbound_port = parse_port("--outbound-port", flags.outbound_port);
  if (config.inbound_port == config.outbound_port) {
    throw CLI::ValidationError("--outbound-port", "must differ from --inbound-port");
  }
  config.inbound_ports = parse_port_selection("--inbound-ports", flags.inbound_ports);
  config.exclude_inbound_ports = parse_port_list("--exclude-inbound-ports", flags.exclude_inbound_ports);
  config.exclude_outbound_ports = parse_port_list("--exclude-outbound-ports", flags.exclude_outbound_ports);
  config.proxy_uid = parse_id("--proxy-uid", flags.proxy_uid);
  config.proxy_gid = parse_id("--proxy-gid", flags.proxy_gid);
  if (!flags.proxy_mark.empty()) {
    config.proxy_mark = parse_mark("--proxy-mark", flags.proxy_mark);
    if (config.mode == capture::Mode::tproxy && *config.proxy_mark == capture::own_pod_mark) {
      throw CLI::ValidationError("--proxy-mark", fmt::format("{} is the mark TPROXY mode gives the proxy's calls "
                                                             "to its own pod; choose another",
                                                             capture::own_pod_mark));
    }
  }
  config.outbound_ip_ranges = parse_cidr_selection("--outbound-ip-ranges", flags.outbound_ip_ranges);
  if (flags.exclude_outbound_ip_ranges == "*") {
    throw CLI::ValidationError("--exclude-outbound-ip-ranges", "'*' would capture nothing: use --outbound-ip-ranges ''");
  }
  config.exclude_outbound_ip_ranges = parse_cidr_list("--exclude-outbound-ip-ranges", flags.exclude_outbound_ip_ranges);
  config.include_outbound_ports = parse_port_list("--include-outbound-ports", flags.include_outbound_ports);
  config.exclude_interfaces = parse_interface_list("--exclude-interfaces", flags.exclude_interfaces);
  config.kubevirt_interfaces = parse_interface_list("--kubevirt-interfaces", flags.kubevirt_interfaces);
  if (flags.include_owner_groups != "*") {
    if (!flags.exclude_owner_groups.empty()) {
      throw CLI::ValidationError("--exclude-outbound-owner-groups",
                                 "cannot be combined with --include-outbound-owner-groups (other than '*')");
    }
    config.include_owner_groups = parse_group_list("--include-outbound-owner-groups", flags.include_owner_groups);
    // They make one rule of `-m owner ! --gid-owner G` matches; Istio caps them at 64 to keep it loadable.
    if (config.include_owner_groups->size() > 64) {
      throw CLI::ValidationError("--include-outbound-owner-groups", "at most 64 groups (Istio's limit)");
    }
  }
  config.exclude_owner_groups = parse_group_list("--exclude-outbound-owner-groups", flags.exclude_owner_groups);
  config.inbound_tunnel_port = flags.inbound_tunnel_port.empty()
                                   ? std::nullopt
                                   : std::optional(parse_port("--inbound-tunnel-port", flags.inbound_tunnel_port));
  config.drop_invalid = flags.drop_invalid;
  if (flags.proxy_mark_only && !config.proxy_mark) {
    throw CLI::ValidationError("--proxy-mark-only", "needs --proxy-mark: without owner rules the mark is all that "
                                                    "tells the proxy's traffic apart");
  }
  if (flags.proxy_mark_only && flags.proxy_ids_given) {
    throw CLI::ValidationError("--proxy-mark-only", "writes no owner rules: --proxy-uid and --proxy-gid do not apply");
  }
  config.owner_rules = !flags.proxy_mark_only;
  return config;
}

[[noreturn]] void fail(int status, const std::string& message) {
  fmt::print(stderr, "podproxy-sidecar init: {}\n", message);
  throw CLI::RuntimeError(status);
}

std::string tool(Family family, const char* v4_name) {
  return std::string(family == Family::v6 ? "ip6" : "ip") + v4_name;
}

std::vector<std::string> ip_args(Family family, std::vector<std::string> rest) {
  rest.insert(rest.begin(), family == Family::v6 ? "-6" : "-4");
  rest.insert(rest.begin(), "ip");
  return rest;
}

std::string join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

/// Ends init after a tool failed: exit 2 when it was about privileges, 1 otherwise.
[[noreturn]] void tool_failed(const std::vector<std::string>& argv, const host::ToolResult& result) {
  if (host::looks_like_permission_error(result.err)) {
    // Capabilities held in a user namespace do not reach a network namespace it does not own.
    fail(usage_exit, fmt::format("not permitted: '{}' needs CAP_NET_ADMIN over this network namespace: {}",
                                 join(argv), result.err));
  }
  fail(1, fmt::format("'{}' failed (exit {}): {}", join(argv), result.status, result.err));
}

/// Runs a tool; a failure ends init (tool_failed).
std::string must_run(const std::vector<std::string>& argv, std::string_view input = {}) {
  auto result = host::run_tool(argv, input);
  if (result.status != 0) tool_failed(argv, result);
  return result.out;
}

// The three things besides rules that init may add, each with its marker and its add/remove commands.
struct HostItem {
  const char* marker;
  std::vector<std::string> add;
  std::vector<std::string> remove;
  std::vector<std::string> show;  // prints something when the item exists
  std::string shown;              // ...containing this
};

std::vector<HostItem> host_items(const capture::CaptureConfig& config, Family family, bool wanted_only) {
  std::vector<HostItem> items;
  const auto mark = std::to_string(config.tproxy_mark);
  const auto table = std::to_string(config.route_table);
  if (!wanted_only || config.mode == capture::Mode::tproxy) {
    items.push_back({marker_rule, ip_args(family, {"rule", "add", "fwmark", mark, "lookup", table}),
                     ip_args(family, {"rule", "del", "fwmark", mark, "lookup", table}),
                     ip_args(family, {"rule", "list", "fwmark", mark, "lookup", table}), "lookup"});
    items.push_back({marker_route, ip_args(family, {"route", "add", "local", "default", "dev", "lo", "table", table}),
                     ip_args(family, {"route", "del", "local", "default", "dev", "lo", "table", table}),
                     ip_args(family, {"route", "list", "table", table}), "local default dev lo"});
  }
  // Istio adds ::6 to lo for its IPv6 inbound deliveries (the proxy binds it as the source).
  if (family == Family::v6) {
    items.push_back({marker_lo6, {"ip", "-6", "addr", "add", "::6/128", "dev", "lo"},
                     {"ip", "-6", "addr", "del", "::6/128", "dev", "lo"},
                     {"ip", "-6", "addr", "show", "dev", "lo"}, "inet6 ::6/128"});
  }
  return items;
}

bool item_present(const HostItem& item) {
  const auto result = host::run_tool(item.show);
  // `ip route list table N` fails until table N has a route: that is "absent", not an error.
  if (result.status != 0 && result.err.find("does not exist") != std::string::npos) return false;
  if (result.status != 0) must_run(item.show);  // reports the failure
  return result.out.find(item.shown) != std::string::npos;
}

/// Deletes a table init created once nothing uses it: no rule and no chain besides the built-in ones.
void drop_table_if_unused(Family family, const char* nft_family, const std::string& table) {
  const auto saved = must_run({tool(family, "tables-save"), "-t", table});
  static constexpr std::array<std::string_view, 5> builtin{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"};
  std::string_view rest = saved;
  while (!rest.empty()) {
    const auto eol = rest.find('\n');
    const auto line = rest.substr(0, eol);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
    if (line.starts_with("-A ")) return;
    if (line.starts_with(":")) {
      const auto chain = line.substr(1, line.find(' ') - 1);
      if (std::find(builtin.begin(), builtin.end(), chain) == builtin.end()) return;
    }
  }
  must_run({"nft", "delete", "table", nft_family, table});
}

const char* family_name(Family family) { return family == Family::v6 ? "IPv6" : "IPv4"; }

void dry_run(const capture::CaptureConfig& config, const std::vector<Family>& families) {
  fmt::print("# podproxy-sidecar init --dry-run: mode {}, inbound port {}, outbound port {}\n",
             config.mode == capture::Mode::tproxy ? "tproxy" : "redirect", config.inbound_port, config.outbound_port);
  for (const auto family : families) {
    fmt::print("# {}: {} --noflush\n", family_name(family), tool(family, "tables-restore"));
    fmt::print("{}", capture::restore_text(capture::capture_rules(config, family)));
    for (const auto& item : host_items(config, family, true)) {
      fmt::print("# {}: {} (unless present)\n", family_name(family), join(item.add));
    }
  }
}

/// What init will do in one address family, decided from the namespace's current state.
struct FamilyPlan {
  Family family = Family::v4;
  capture::SavedState saved;
  std::string transaction;                        // iptables-restore --noflush input ("" for nothing)
  std::vector<std::vector<std::string>> after;    // ip commands, once the rules are in
  std::vector<std::string> tables_to_drop;        // tables init created that it no longer uses
  std::vector<std::string> tables_kept;           // ...that it cannot delete (no nft): their marker stays
  std::vector<std::string> new_tables;            // tables the transaction creates (dropped on rollback)
};

const char* nft_family(Family family) { return family == Family::v6 ? "ip6" : "ip"; }

FamilyPlan plan(const capture::CaptureConfig& config, Family family, bool clean) {
  FamilyPlan p;
  p.family = family;
  p.saved = capture::parse_saved(must_run({tool(family, "tables-save")}));
  const auto& saved = p.saved;
  capture::RuleSet desired;
  if (!clean) desired = capture::capture_rules(config, family);
  // Decide, for each host item, whether to add it, keep it, or remove it (only if init added it).
  const auto wanted_items = host_items(config, family, true);
  for (const auto& item : host_items(config, family, false)) {
    const bool wanted = !clean && std::any_of(wanted_items.begin(), wanted_items.end(),
                                              [&](const auto& w) { return std::string_view(w.marker) == item.marker; });
    const bool marked = saved.has_chain("nat", item.marker);
    if (wanted) {
      const bool present = item_present(item);
      if (!present || marked) capture::add_marker(desired, "nat", item.marker);
      if (!present) p.after.push_back(item.add);
    } else if (marked && item_present(item)) {
      p.after.push_back(item.remove);
    }
  }
  // Tables init creates (nf_tables makes them on first use) are marked, to be deleted again when unused.
  std::vector<std::string> wanted_tables;
  for (const auto& t : desired.tables) wanted_tables.push_back(t.name);
  for (const auto& name : wanted_tables) {
    if (!saved.existing_tables.contains(name)) p.new_tables.push_back(name);
    if (!saved.existing_tables.contains(name) || saved.has_chain(name, capture::table_marker)) {
      capture::add_marker(desired, name, std::string(capture::table_marker));
    }
  }
  // Deleting an nf_tables table takes nft(8). Without it the table stays, and so does its marker, so that a
  // later --clean with nft can still tell that init created it.
  const bool nft_missing = saved.nf_tables && host::find_in_path("nft").empty();
  for (const auto& [name, table] : saved.tables) {
    if (saved.has_chain(name, capture::table_marker) &&
        std::find(wanted_tables.begin(), wanted_tables.end(), name) == wanted_tables.end()) {
      if (nft_missing) {
        p.tables_kept.push_back(name);
        capture::add_marker(desired, name, std::string(capture::table_marker));
      } else {
        p.tables_to_drop.push_back(name);
      }
    }
  }
  p.transaction = capture::apply_transaction(desired, saved);
  return p;
}

void print_plan(const FamilyPlan& p) {
  const auto family = p.family;
  fmt::print("# {}: {} --noflush\n{}", family_name(family), tool(family, "tables-restore"), p.transaction);
  for (const auto& argv : p.after) fmt::print("# {}: {}\n", family_name(family), join(argv));
  for (const auto& name : p.tables_to_drop) {
    fmt::print("# {}: nft delete table {} {} (init created it; only if nothing else uses it)\n", family_name(family),
               nft_family(family), name);
  }
  for (const auto& name : p.tables_kept) {
    fmt::print("# {}: the {} table init created stays, with its marker chain: 'nft' not found in PATH\n",
               family_name(family), name);
  }
}

/// Puts a family's rules back as `p` found them (best effort: it reports, it does not throw).
void roll_back(const FamilyPlan& p) {
  const auto now = host::run_tool({tool(p.family, "tables-save")});
  const auto transaction =
      now.status == 0 ? capture::apply_transaction(capture::saved_rules(p.saved), capture::parse_saved(now.out)) : "";
  const auto result = now.status == 0 ? host::run_tool({tool(p.family, "tables-restore"), "--noflush"}, transaction)
                                      : now;
  if (result.status != 0) {
    fmt::print(stderr, "podproxy-sidecar init: could not roll back the {} rules: {}\n", family_name(p.family),
               result.err);
  } else {
    if (p.saved.nf_tables && !host::find_in_path("nft").empty()) {
      for (const auto& name : p.new_tables) drop_table_if_unused(p.family, nft_family(p.family), name);
    }
    fmt::print(stderr, "podproxy-sidecar init: {} rules rolled back to what they were\n", family_name(p.family));
  }
}

/// The families to capture (`selected`) and those whose rules, if init wrote any before, go (`removed`):
/// init leaves the namespace capturing exactly the selected families.
struct FamilySelection {
  std::vector<Family> selected;
  std::vector<Family> removed;
};

FamilySelection select_families(const InitFlags& flags) {
  auto choice = families::parse_choice("--ip-families", flags.ip_families);
  if (flags.no_ipv6) {
    if (choice != families::Choice::automatic && choice != families::Choice::ipv4) {
      throw CLI::ValidationError("--no-ipv6", "contradicts --ip-families " + flags.ip_families);
    }
    choice = families::Choice::ipv4;
  }
  const bool kernel_v6 = families::kernel_has_ipv6();
  families::Set want;
  if (choice == families::Choice::automatic) {
    // As Istio does: capture a family only when the pod has an address of it, so that a family the pod
    // cannot use is not sent to a listener that may not serve it.
    std::vector<asio::ip::address> addresses;
    try {
      addresses = binds::current_pod_addresses();
    } catch (const std::system_error& e) {
      fmt::print(stderr, "podproxy-sidecar init: cannot list this namespace's addresses ({})\n", e.what());
    }
    want = families::of_addresses(addresses);
    if (want.empty()) {
      // Nothing to decide from (no address yet): capture every family the kernel has rather than let a
      // family the pod may get later bypass the proxy.
      want = {.v4 = true, .v6 = kernel_v6};
      fmt::print(stderr, "podproxy-sidecar init: no non-loopback address in this namespace to choose the address "
                         "families from: capturing {} (--ip-families chooses)\n", want.text());
    }
  } else {
    want = families::of_choice(choice);
    if (want.v6 && !kernel_v6) {
      throw CLI::ValidationError("--ip-families", "'" + flags.ip_families + "' asks for IPv6, and this namespace has no "
                                                  "IPv6 (no /proc/net/if_inet6)");
    }
  }
  want.v6 = want.v6 && kernel_v6;
  FamilySelection out;
  for (const auto family : {Family::v4, Family::v6}) {
    if (want.has(family)) {
      out.selected.push_back(family);
    } else if (family == Family::v4 || kernel_v6) {
      out.removed.push_back(family);
    }
  }
  return out;
}

void run_init(const InitFlags& flags) {
  const auto config = to_config(flags);
  const auto selection = select_families(flags);
  if (flags.dry_run && !flags.clean) {
    dry_run(config, selection.selected);
    for (const auto family : selection.removed) {
      fmt::print("# {}: not captured (--ip-families {}{}); any capture rules init wrote there before are removed\n",
                 family_name(family), flags.no_ipv6 ? "ipv4, from --no-ipv6" : flags.ip_families,
                 flags.ip_families == "auto" && !flags.no_ipv6 ? ": the pod has no address of it" : "");
    }
    return;
  }
  // --clean removes what init added in every family; otherwise the selected families are captured and
  // what an earlier init wrote in the others is removed.
  std::vector<std::pair<Family, bool>> work;  // family, clean
  for (const auto family : selection.selected) work.emplace_back(family, flags.clean);
  for (const auto family : selection.removed) {
    // Without its tools a family that is not captured needs no cleaning: init cannot have written there.
    if (!flags.clean && host::find_in_path(tool(family, "tables-save")).empty()) continue;
    work.emplace_back(family, true);
  }
  std::vector<Family> families;
  for (const auto& [family, clean] : work) families.push_back(family);
  for (const auto family : families) {
    for (const char* name : {"tables-save", "tables-restore"}) {
      if (host::find_in_path(tool(family, name)).empty()) {
        fail(usage_exit, fmt::format("'{}' not found in PATH (Debian package: iptables)", tool(family, name)));
      }
    }
  }
  if (host::find_in_path("ip").empty()) fail(usage_exit, "'ip' not found in PATH (Debian package: iproute2)");
  if (!host::has_net_admin()) {
    fail(usage_exit, "not permitted: changing the capture rules needs CAP_NET_ADMIN in this network namespace "
                     "(run as root, or give the init container NET_ADMIN)");
  }
  std::vector<FamilyPlan> plans;
  for (const auto& [family, clean] : work) plans.push_back(plan(config, family, clean));
  if (flags.dry_run) {
    for (const auto& p : plans) print_plan(p);
    return;
  }
  // Each family's rules go in atomically; if a later family fails, the earlier ones are put back, so
  // init leaves either every family changed or none.
  for (std::size_t i = 0; i < plans.size(); ++i) {
    if (plans[i].transaction.empty()) continue;
    const std::vector<std::string> argv{tool(plans[i].family, "tables-restore"), "--noflush"};
    const auto result = host::run_tool(argv, plans[i].transaction);
    if (result.status == 0) continue;
    for (std::size_t j = i; j-- > 0;) roll_back(plans[j]);
    tool_failed(argv, result);
  }
  for (const auto& p : plans) {
    for (const auto& argv : p.after) must_run(argv);
    if (p.saved.nf_tables) {
      for (const auto& name : p.tables_to_drop) drop_table_if_unused(p.family, nft_family(p.family), name);
    }
    for (const auto& name : p.tables_kept) {
      fmt::print(stderr,
                 "podproxy-sidecar init: 'nft' not found in PATH (Debian package: nftables): the {} {} table that "
                 "init created is left in place with only its marker chain {}; --clean with nft deletes it\n",
                 family_name(p.family), name, capture::table_marker);
    }
    const bool selected = std::find(selection.selected.begin(), selection.selected.end(), p.family) !=
                          selection.selected.end();
    if (selected && !flags.clean) {
      fmt::print("podproxy-sidecar init: {} capture rules applied\n", family_name(p.family));
    } else if (flags.clean || !p.transaction.empty() || !p.after.empty()) {
      fmt::print("podproxy-sidecar init: {} capture rules removed\n", family_name(p.family));
    } else {
      fmt::print("podproxy-sidecar init: {} not captured (--ip-families {})\n", family_name(p.family),
                 flags.no_ipv6 ? "ipv4" : flags.ip_families);
    }
  }
}

}  // namespace

void add_init_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("init", "Write the capture rules (iptables, like istio-iptables) into this network "
                                         "namespace; --clean removes exactly them");
  auto flags = std::make_shared<InitFlags>();
  cmd->add_option("--mode", flags->mode, "redirect (nat REDIRECT) or tproxy (mangle TPROXY, keeps the client's "
                                         "address; needs a transparent inbound listener)")
      ->capture_default_str();
  cmd->add_option("--inbound-port", flags->inbound_port, "Port of the inbound listener")->capture_default_str();
  cmd->add_option("--outbound-port", flags->outbound_port, "Port of the outbound listener")->capture_default_str();
  cmd->add_option("--inbound-ports", flags->inbound_ports,
                  "Inbound ports to capture: '*' for all, or a comma-separated list ('' for none)")
      ->capture_default_str();
  cmd->add_option("--exclude-inbound-ports", flags->exclude_inbound_ports,
                  "Comma-separated inbound ports never captured (besides the sidecar's own 15000,15001,15006,"
                  "15020,15021,15090)");
  cmd->add_option("--exclude-outbound-ports", flags->exclude_outbound_ports,
                  "Comma-separated destination ports never captured outbound");
  cmd->add_option("--proxy-uid", flags->proxy_uid, "Uid of the proxy: its own traffic is not captured")
      ->capture_default_str();
  cmd->add_option("--proxy-gid", flags->proxy_gid, "Gid of the proxy: its own traffic is not captured")
      ->capture_default_str();
  cmd->add_option("--proxy-mark", flags->proxy_mark,
                  "SO_MARK the proxy puts on its sockets (run --mark N): exempted like the proxy's uid");
  cmd->add_option("--outbound-ip-ranges", flags->outbound_ip_ranges,
                  "Outbound destinations to capture: '*' for all, or comma-separated CIDRs, IPv4 and IPv6 each "
                  "in their own family's rules ('' for none; Istio's includeOutboundIPRanges)")
      ->capture_default_str();
  cmd->add_option("--exclude-outbound-ip-ranges", flags->exclude_outbound_ip_ranges,
                  "Comma-separated CIDRs never captured outbound (Istio's excludeOutboundIPRanges)");
  cmd->add_option("--include-outbound-ports", flags->include_outbound_ports,
                  "Comma-separated destination ports captured outbound whatever --outbound-ip-ranges says (an "
                  "excluded range still passes first, as in Istio; Istio's includeOutboundPorts)");
  cmd->add_option("--exclude-interfaces", flags->exclude_interfaces,
                  "Comma-separated interfaces whose traffic is never captured, in or out");
  cmd->add_option("--kubevirt-interfaces", flags->kubevirt_interfaces,
                  "Comma-separated interfaces (KubeVirt VMs) whose inbound traffic is captured as outbound");
  cmd->add_option("--include-outbound-owner-groups", flags->include_owner_groups,
                  "Capture outbound only from these groups (comma-separated gids or names), or '*' for every group")
      ->capture_default_str();
  cmd->add_option("--exclude-outbound-owner-groups", flags->exclude_owner_groups,
                  "Comma-separated groups (gids or names) whose outbound traffic is never captured");
  cmd->add_option("--inbound-tunnel-port", flags->inbound_tunnel_port,
                  "Istio's tunnel (HBONE) port: not captured inbound, and the proxy's calls to its own pod on it "
                  "not sent to the inbound listener ('' for none)")
      ->capture_default_str();
  cmd->add_flag("--drop-invalid", flags->drop_invalid,
                "Drop packets conntrack finds INVALID (Istio's INVALID_DROP) instead of letting the pod reset "
                "the connection");
  cmd->add_flag("--proxy-mark-only", flags->proxy_mark_only,
                "Tell the proxy apart by --proxy-mark alone, with no uid/gid owner rules: for a proxy with no uid of "
                "its own (a user namespace mapping only uid 0, which the application runs as too)");
  cmd->add_option("--ip-families", flags->ip_families,
                  "Address families to capture: auto (each family the pod has a non-loopback, non-link-local "
                  "address of), ipv4, ipv6 or dual; `run --ip-families` takes the same values")
      ->type_name("FAMILIES")
      ->capture_default_str();
  cmd->add_flag("--no-ipv6", flags->no_ipv6, "The same as --ip-families ipv4");
  cmd->add_flag("--dry-run", flags->dry_run, "Print the rules (iptables-restore input) and change nothing; with "
                                             "--clean, print what would be removed");
  cmd->add_flag("--clean", flags->clean, "Remove what init added (PODPROXY_ chains, the rules jumping to them, and "
                                         "the ip rule, route and ::6 address init added), nothing else");
  cmd->callback([flags, cmd] {
    flags->proxy_ids_given = cmd->count("--proxy-uid") + cmd->count("--proxy-gid") > 0;
    run_init(*flags);
  });
}

}  // namespace sidecar
