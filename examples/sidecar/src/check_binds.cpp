// `check-binds`: Istio's IST0143 precheck, done better. For every TCP port the pod listens on, whether
// the sidecar reaches it under the loopback policy and under the pod-ip policy, and why.
//
// --json prints one object (schema version 1):
//   {
//     "schema": 1,
//     "pid": 1234 | null,                 // --pid, or null for this process's namespace
//     "pod_ips": ["10.0.0.2", ...],       // --pod-ip, or the namespace's non-loopback addresses
//     "dual_stack": true,                 // net.ipv6.bindv6only=0: [::] listeners take IPv4 unless V6ONLY
//     "policy": "pod-ip" | "loopback" | null,
//     "ports": [{
//       "port": 8080,
//       "listeners": [{"address": "127.0.0.1", "uid": 0, "v6_only": null, "bind": "127.0.0.1 (loopback only)"}],
//       "loopback": {"reachable": true, "summary": "yes", "ipv4": true, "ipv6": null},
//       "pod_ip":   {"reachable": false, "summary": "no", "ipv4": false, "ipv6": null},
//       "reason": "bound to 127.0.0.1 (loopback only): the pod-ip policy dials 10.0.0.2:8080, ..."
//     }],
//     "unreachable": [8080],              // ports unreachable under "policy" ([] without --policy)
//     "capture": {                        // what the capture rules capture, per family (null: unreadable)
//       "ipv4": {"captured": true, "inbound_port": 15006, "served": true},
//       "ipv6": {"captured": true, "inbound_port": 15006, "served": false}
//     },
//     "capture_mismatch": ["ipv6"]        // captured families that the sidecar's inbound listener does not serve
//   }
// "ipv4"/"ipv6" are null when the pod has no address of that family (nothing is dialled over it);
// "summary" is "yes", "no", "IPv4 only" or "IPv6 only". "v6_only" is an IPv6 listener's IPV6_V6ONLY as
// the kernel reports it (sock_diag), null for IPv4 listeners or when it could not be asked. "served" is
// whether a listener on the captured inbound port takes that family, null when nothing listens there yet
// (the sidecar is not running); a family captured and not served is a mismatch (exit 1), the one `run`
// refuses to become ready with.
#include "bind_verdicts.hpp"
#include "capture_rules.hpp"
#include "cli_util.hpp"
#include "commands.hpp"
#include "init_flags.hpp"
#include "ip_families.hpp"
#include "netns_addresses.hpp"
#include "sock_diag_v6only.hpp"
#include "tcp_listeners.hpp"

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace sidecar {
namespace {

struct CheckBindsFlags {
  std::optional<std::string> pid;  // unset, not empty, when --pid is not given: `--pid ""` is an error
  std::vector<std::string> pod_ips;
  std::string policy;
  bool json = false;
};

[[noreturn]] void fail(int status, const std::string& message) {
  fmt::print(stderr, "podproxy-sidecar check-binds: {}\n", message);
  throw CLI::RuntimeError(status);
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// net.ipv6.bindv6only of the namespace the calling thread is in: 1 keeps IPv4 out of [::] listeners.
bool dual_stack_here() {
  const auto text = read_file("/proc/sys/net/ipv6/bindv6only");
  return !text || text->empty() || text->front() != '1';
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_bool(const std::optional<bool>& value) {
  return value ? (*value ? "true" : "false") : "null";
}

std::string json_reach(const binds::Reach& reach) {
  return fmt::format(R"({{"reachable": {}, "summary": {}, "ipv4": {}, "ipv6": {}}})", reach.reachable() ? "true" : "false",
                     json_string(reach.summary()), json_bool(reach.v4), json_bool(reach.v6));
}

std::string bracketed(const asio::ip::address& address) {
  return address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
}

void run_check_binds(const CheckBindsFlags& flags) {
  std::optional<int> pid;
  if (flags.pid) {
    pid = static_cast<int>(parse_id("--pid", *flags.pid));
    if (*pid <= 0 || ::access(("/proc/" + *flags.pid + "/ns/net").c_str(), F_OK) != 0) {
      throw CLI::ValidationError("--pid", "no process " + *flags.pid + " (or its network namespace is not visible)");
    }
  }
  std::optional<binds::Reach binds::PortVerdict::*> policy;
  if (flags.policy == "loopback") {
    policy = &binds::PortVerdict::loopback;
  } else if (flags.policy == "pod-ip") {
    policy = &binds::PortVerdict::pod_ip;
  } else if (!flags.policy.empty()) {
    throw CLI::ValidationError("--policy", "'" + flags.policy + "' is not a policy (loopback or pod-ip)");
  }
  std::vector<asio::ip::address> pod_ips;
  for (const auto& text : flags.pod_ips) {
    std::string_view rest = text;
    while (true) {
      const auto comma = rest.find(',');
      pod_ips.push_back(parse_address("--pod-ip", rest.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  for (const auto& ip : pod_ips) {
    if (ip.is_unspecified() || ip.is_loopback()) {
      throw CLI::ValidationError("--pod-ip", "'" + ip.to_string() + "' cannot be a pod IP (loopback or unspecified)");
    }
  }

  // The namespace's facts: its addresses (unless given), whether [::] listeners take IPv4 by default,
  // and each IPv6 listener's own IPV6_V6ONLY.
  struct Facts {
    std::vector<asio::ip::address> addresses;
    bool dual_stack = true;
    std::optional<std::map<binds::ListenerKey, bool>> v6only;
    std::array<families::ReadCapture, 2> capture;  // IPv4, IPv6
  };
  Facts facts;
  try {
    const auto read = [] {
      return Facts{binds::current_pod_addresses(), dual_stack_here(), binds::ipv6_listener_v6only(),
                   {families::read_capture(capture::Family::v4), families::read_capture(capture::Family::v6)}};
    };
    facts = pid ? binds::read_in_netns_of(*pid, read) : read();
    if (pod_ips.empty()) pod_ips = facts.addresses;
  } catch (const std::system_error& e) {
    if (pod_ips.empty()) {
      fail(usage_exit, fmt::format("cannot read the addresses of the namespace of pid {} ({}); pass --pod-ip",
                                   pid.value_or(0), e.what()));
    }
  }
  const bool dual_stack = facts.dual_stack;
  if (pod_ips.empty()) fail(usage_exit, "the namespace has no non-loopback address to use as the pod IP; pass --pod-ip");

  const std::string proc = pid ? "/proc/" + std::to_string(*pid) + "/net/" : "/proc/net/";
  std::vector<binds::TcpListener> listeners;
  bool any_table = false;
  for (const char* name : {"tcp", "tcp6"}) {
    if (const auto text = read_file(proc + name)) {
      any_table = true;
      auto found = binds::parse_proc_net_tcp(*text);
      for (auto& l : found) {
        if (l.address.is_v6() && facts.v6only) {
          const auto it = facts.v6only->find({l.address, l.port});
          if (it != facts.v6only->end()) l.v6_only = it->second;
        }
      }
      listeners.insert(listeners.end(), found.begin(), found.end());
    }
  }
  if (!any_table) fail(1, "cannot read " + proc + "tcp or tcp6");

  const std::vector<std::uint16_t> skip(capture::sidecar_ports.begin(), capture::sidecar_ports.end());
  const auto verdicts = binds::verdicts(listeners, pod_ips, dual_stack, skip);
  std::vector<std::uint16_t> unreachable;
  if (policy) {
    for (const auto& v : verdicts) {
      if (!(v.**policy).reachable()) unreachable.push_back(v.port);
    }
  }

  // The capture rules against the sidecar's inbound listener: a captured family that a listener on the
  // captured port does not take is refused in full. Nothing listening there at all is the sidecar not
  // running yet, not a mismatch.
  struct FamilyCheck {
    capture::Family family;
    std::optional<families::Capture> capture;
    std::string why_unknown;
    std::uint16_t port = 15006;
    std::optional<bool> served;
  };
  std::vector<FamilyCheck> checks;
  std::vector<std::string> mismatch;
  for (const auto family : {capture::Family::v4, capture::Family::v6}) {
    const auto& read = facts.capture[family == capture::Family::v6 ? 1 : 0];
    FamilyCheck c{family, read.capture, read.why_unknown, 15006, std::nullopt};
    if (c.capture && c.capture->inbound_port) c.port = *c.capture->inbound_port;
    for (const auto& l : listeners) {
      if (l.port != c.port) continue;
      const auto& a = l.address;
      const bool v4_address = a.is_v4() || a.to_v6().is_v4_mapped();
      const bool takes = family == capture::Family::v4
                             ? v4_address || (a.is_unspecified() && binds::dual_stack_of(l, dual_stack))
                             : !v4_address;
      c.served = c.served.value_or(false) || takes;
    }
    if (c.capture && c.capture->captured && c.served == false) {
      mismatch.push_back(family == capture::Family::v6 ? "ipv6" : "ipv4");
    }
    checks.push_back(std::move(c));
  }

  std::vector<std::string> pod_ip_texts;
  for (const auto& ip : pod_ips) pod_ip_texts.push_back(ip.to_string());
  if (flags.json) {
    std::vector<std::string> ports;
    for (const auto& v : verdicts) {
      std::vector<std::string> ls;
      for (const auto& l : v.listeners) {
        ls.push_back(fmt::format(R"({{"address": {}, "uid": {}, "v6_only": {}, "bind": {}}})",
                                 json_string(l.address.to_string()), l.uid, json_bool(l.v6_only),
                                 json_string(binds::describe_bind(l, pod_ips, dual_stack))));
      }
      ports.push_back(fmt::format(
          "    {{\"port\": {}, \"listeners\": [{}],\n     \"loopback\": {},\n     \"pod_ip\": {},\n     \"reason\": {}}}",
          v.port, fmt::join(ls, ", "), json_reach(v.loopback), json_reach(v.pod_ip), json_string(v.reason)));
    }
    std::vector<std::string> quoted_ips;
    for (const auto& t : pod_ip_texts) quoted_ips.push_back(json_string(t));
    std::vector<std::string> capture_json, mismatch_json;
    for (const auto& c : checks) {
      const auto key = json_string(c.family == capture::Family::v6 ? "ipv6" : "ipv4");
      if (!c.capture) {
        capture_json.push_back(fmt::format("    {}: null", key));
        continue;
      }
      capture_json.push_back(fmt::format(R"(    {}: {{"captured": {}, "inbound_port": {}, "served": {}}})", key,
                                         c.capture->captured ? "true" : "false",
                                         c.capture->inbound_port ? std::to_string(*c.capture->inbound_port) : "null",
                                         json_bool(c.served)));
    }
    for (const auto& m : mismatch) mismatch_json.push_back(json_string(m));
    fmt::print("{{\n  \"schema\": 1,\n  \"pid\": {},\n  \"pod_ips\": [{}],\n  \"dual_stack\": {},\n  \"policy\": {},\n"
               "  \"ports\": [\n{}\n  ],\n  \"unreachable\": [{}],\n  \"capture\": {{\n{}\n  }},\n"
               "  \"capture_mismatch\": [{}]\n}}\n",
               pid ? std::to_string(*pid) : "null", fmt::join(quoted_ips, ", "), dual_stack ? "true" : "false",
               policy ? json_string(flags.policy) : "null", fmt::join(ports, ",\n"), fmt::join(unreachable, ", "),
               fmt::join(capture_json, ",\n"), fmt::join(mismatch_json, ", "));
  } else {
    fmt::print("Listeners of {} (pod IP {}); the sidecar's own ports are skipped.\n",
               pid ? fmt::format("the network namespace of pid {}", *pid) : std::string("this network namespace"),
               fmt::join(pod_ip_texts, ", "));
    std::vector<std::string> bound;
    std::size_t bound_width = 8;
    for (const auto& v : verdicts) {
      std::vector<std::string> addresses;
      for (const auto& l : v.listeners) addresses.push_back(bracketed(l.address));
      bound.push_back(fmt::format("{}", fmt::join(addresses, ",")));
      bound_width = std::max(bound_width, bound.back().size());
    }
    fmt::print("{:<6} {:<{}}  {:<9} {:<9} {}\n", "PORT", "BOUND TO", bound_width, "LOOPBACK", "POD-IP", "WHY");
    for (std::size_t i = 0; i < verdicts.size(); ++i) {
      const auto& v = verdicts[i];
      fmt::print("{:<6} {:<{}}  {:<9} {:<9} {}\n", v.port, bound[i], bound_width, v.loopback.summary(),
                 v.pod_ip.summary(), v.reason);
    }
    if (verdicts.empty()) fmt::print("(no listening TCP ports besides the sidecar's)\n");
    if (policy) {
      if (unreachable.empty()) {
        fmt::print("policy {}: every listening port is reachable through the sidecar\n", flags.policy);
      } else {
        fmt::print("policy {}: {} listening port(s) unreachable through the sidecar: {}\n", flags.policy,
                   unreachable.size(), fmt::join(unreachable, ", "));
      }
    }
    for (const auto& c : checks) {
      const char* name = families::name(c.family);
      if (!c.capture) {
        fmt::print("capture {}: unknown ({})\n", name, c.why_unknown);
      } else if (!c.capture->captured) {
        fmt::print("capture {}: not captured\n", name);
      } else if (!c.served) {
        fmt::print("capture {}: captured to port {}; nothing listens there (is the sidecar running?)\n", name, c.port);
      } else if (*c.served) {
        fmt::print("capture {}: captured to port {}, and the sidecar's listener there takes {}\n", name, c.port, name);
      } else {
        const bool v6 = c.family == capture::Family::v6;
        fmt::print("capture {}: MISMATCH: captured to port {}, but the listener there does not take {}: every {} "
                   "connection is refused. Fix: podproxy-sidecar run --ip-families dual (the default without "
                   "--listen-address), or init --ip-families {}\n",
                   name, c.port, name, name, v6 ? "ipv4" : "ipv6");
      }
    }
  }
  if (!unreachable.empty() || !mismatch.empty()) throw CLI::RuntimeError(1);
}

}  // namespace

void add_check_binds_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "check-binds",
      "List the TCP listeners of this network namespace (or --pid's) and say which inbound policy reaches each");
  auto flags = std::make_shared<CheckBindsFlags>();
  cmd->add_option("--pid", flags->pid, "Check the network namespace of this process instead of the current one");
  cmd->add_option("--pod-ip", flags->pod_ips,
                  "The pod's IP (repeatable, or comma-separated; default: the namespace's non-loopback addresses)");
  cmd->add_option("--policy", flags->policy,
                  "loopback or pod-ip: exit 1 when a listening port is unreachable through the sidecar under it")
      ->check(CLI::IsMember({"loopback", "pod-ip"}));  // also refuses --policy "" (empty means "not given" below)
  cmd->add_flag("--json", flags->json, "Print JSON (schema: see the comment at the top of check_binds.cpp)");
  cmd->footer("Exit status: 0; 1 when --policy finds an unreachable port, or when an address family is captured and the\n"
              "sidecar's inbound listener does not take it; 2 for a bad flag.");
  cmd->callback([flags] { run_check_binds(*flags); });
}

}  // namespace sidecar
