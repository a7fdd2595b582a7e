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
#include "bind_report.hpp"
#include "cli_util.hpp"
#include "commands.hpp"
#include "init_flags.hpp"

#include <fmt/format.h>

#include <memory>
#include <optional>
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
  if (flags.policy != "loopback" && flags.policy != "pod-ip" && !flags.policy.empty()) {
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
  // each IPv6 listener's own IPV6_V6ONLY, and the capture rules.
  binds::NamespaceFacts facts;
  try {
    facts = pid ? binds::read_in_netns_of(*pid, [] { return binds::read_namespace_facts(); })
                : binds::read_namespace_facts();
    if (pod_ips.empty()) pod_ips = facts.addresses;
  } catch (const std::system_error& e) {
    if (pod_ips.empty()) {
      fail(usage_exit, fmt::format("cannot read the addresses of the namespace of pid {} ({}); pass --pod-ip",
                                   pid.value_or(0), e.what()));
    }
  }
  if (pod_ips.empty()) fail(usage_exit, "the namespace has no non-loopback address to use as the pod IP; pass --pod-ip");

  const std::string proc = pid ? "/proc/" + std::to_string(*pid) + "/net/" : "/proc/net/";
  const auto listeners = binds::read_listeners(proc, facts.v6only);
  if (!listeners) fail(1, "cannot read " + proc + "tcp or tcp6");

  const auto report = binds::make_report(pid, pod_ips, flags.policy, facts, *listeners);
  const auto& verdicts = report.verdicts;
  const auto& unreachable = report.unreachable;
  const bool policy = !flags.policy.empty();

  std::vector<std::string> pod_ip_texts;
  for (const auto& ip : pod_ips) pod_ip_texts.push_back(ip.to_string());
  if (flags.json) {
    fmt::print("{}", binds::report_json(report));
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
    for (const auto& c : report.checks) {
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
  if (!unreachable.empty() || !report.mismatch.empty()) throw CLI::RuntimeError(1);
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
