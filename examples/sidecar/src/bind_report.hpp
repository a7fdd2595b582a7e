// The bind report: what `check-binds` finds in a network namespace (its listeners, each port's verdict
// under both inbound policies, the capture rules against the sidecar's inbound listener), and its one
// JSON form, printed by `check-binds --json` and served by `run` on GET /binds.
#pragma once

#include "bind_verdicts.hpp"
#include "capture_rules.hpp"
#include "ip_families.hpp"
#include "netns_addresses.hpp"
#include "sock_diag_v6only.hpp"
#include "tcp_listeners.hpp"

#include <fmt/format.h>

#include <array>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar::binds {

namespace detail {

inline std::optional<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline std::string json_string(std::string_view text) {
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

inline std::string json_bool(const std::optional<bool>& value) { return value ? (*value ? "true" : "false") : "null"; }

inline std::string json_reach(const Reach& reach) {
  return fmt::format(R"({{"reachable": {}, "summary": {}, "ipv4": {}, "ipv6": {}}})", reach.reachable() ? "true" : "false",
                     json_string(reach.summary()), json_bool(reach.v4), json_bool(reach.v6));
}

}  // namespace detail

/// net.ipv6.bindv6only of the namespace the calling thread is in: 1 keeps IPv4 out of [::] listeners.
inline bool dual_stack_here() {
  const auto text = detail::read_text_file("/proc/sys/net/ipv6/bindv6only");
  return !text || text->empty() || text->front() != '1';
}

/// The listeners in `proc_dir` ("/proc/net/" or "/proc/PID/net/") tcp and tcp6, each IPv6 one with its
/// IPV6_V6ONLY when `v6only` knows it; std::nullopt when neither table can be read.
inline std::optional<std::vector<TcpListener>> read_listeners(const std::string& proc_dir,
                                                              const std::optional<std::map<ListenerKey, bool>>& v6only) {
  std::vector<TcpListener> listeners;
  bool any_table = false;
  for (const char* name : {"tcp", "tcp6"}) {
    if (const auto text = detail::read_text_file(proc_dir + name)) {
      any_table = true;
      auto found = parse_proc_net_tcp(*text);
      for (auto& l : found) {
        if (l.address.is_v6() && v6only) {
          const auto it = v6only->find({l.address, l.port});
          if (it != v6only->end()) l.v6_only = it->second;
        }
      }
      listeners.insert(listeners.end(), found.begin(), found.end());
    }
  }
  if (!any_table) return std::nullopt;
  return listeners;
}

/// A namespace's facts besides its listeners: its addresses, whether [::] listeners take IPv4 by
/// default, each IPv6 listener's own IPV6_V6ONLY, and the capture rules (IPv4, IPv6; reading them needs
/// CAP_NET_ADMIN, so `run` reads them once, before it drops its privileges).
struct NamespaceFacts {
  std::vector<asio::ip::address> addresses;
  bool dual_stack = true;
  std::optional<std::map<ListenerKey, bool>> v6only;
  std::array<families::ReadCapture, 2> capture;
};

inline std::array<families::ReadCapture, 2> read_captures() {
  return {families::read_capture(capture::Family::v4), families::read_capture(capture::Family::v6)};
}

/// The calling thread's namespace's facts; the capture rules only when `captures` is not given.
/// Throws std::system_error when the addresses cannot be read.
inline NamespaceFacts read_namespace_facts(const std::optional<std::array<families::ReadCapture, 2>>& captures = {}) {
  return NamespaceFacts{current_pod_addresses(), dual_stack_here(), ipv6_listener_v6only(),
                        captures ? *captures : read_captures()};
}

/// The capture rules of one family against the listener on the captured inbound port.
struct FamilyCheck {
  capture::Family family;
  std::optional<families::Capture> capture;
  std::string why_unknown;
  std::uint16_t port = 15006;
  /// Whether a listener on `port` takes the family; nullopt when nothing listens there (the sidecar is
  /// not running yet).
  std::optional<bool> served;
};

struct BindReport {
  std::optional<int> pid;
  std::vector<asio::ip::address> pod_ips;
  bool dual_stack = true;
  std::string policy;  ///< "loopback", "pod-ip", or "" for none
  std::vector<PortVerdict> verdicts;
  std::vector<std::uint16_t> unreachable;  ///< under `policy`
  std::vector<FamilyCheck> checks;
  std::vector<std::string> mismatch;  ///< "ipv4"/"ipv6": captured and not served
};

/// The report for `listeners` of a namespace with `facts`, its pod IPs `pod_ips`, judged under `policy`
/// ("loopback", "pod-ip" or ""). The sidecar's own ports are skipped.
inline BindReport make_report(std::optional<int> pid, std::vector<asio::ip::address> pod_ips, std::string policy,
                              const NamespaceFacts& facts, const std::vector<TcpListener>& listeners) {
  BindReport r{.pid = pid, .pod_ips = std::move(pod_ips), .dual_stack = facts.dual_stack, .policy = std::move(policy),
               .verdicts = {}, .unreachable = {}, .checks = {}, .mismatch = {}};
  const std::vector<std::uint16_t> skip(capture::sidecar_ports.begin(), capture::sidecar_ports.end());
  r.verdicts = verdicts(listeners, r.pod_ips, r.dual_stack, skip);
  if (!r.policy.empty()) {
    const auto reach = r.policy == "loopback" ? &PortVerdict::loopback : &PortVerdict::pod_ip;
    for (const auto& v : r.verdicts) {
      if (!(v.*reach).reachable()) r.unreachable.push_back(v.port);
    }
  }
  // The capture rules against the sidecar's inbound listener: a captured family that a listener on the
  // captured port does not take is refused in full. Nothing listening there at all is the sidecar not
  // running yet, not a mismatch.
  for (const auto family : {capture::Family::v4, capture::Family::v6}) {
    const auto& read = facts.capture[family == capture::Family::v6 ? 1 : 0];
    FamilyCheck c{family, read.capture, read.why_unknown, 15006, std::nullopt};
    if (c.capture && c.capture->inbound_port) c.port = *c.capture->inbound_port;
    for (const auto& l : listeners) {
      if (l.port != c.port) continue;
      const auto& a = l.address;
      const bool v4_address = a.is_v4() || a.to_v6().is_v4_mapped();
      const bool takes = family == capture::Family::v4
                             ? v4_address || (a.is_unspecified() && dual_stack_of(l, r.dual_stack))
                             : !v4_address;
      c.served = c.served.value_or(false) || takes;
    }
    if (c.capture && c.capture->captured && c.served == false) {
      r.mismatch.push_back(family == capture::Family::v6 ? "ipv6" : "ipv4");
    }
    r.checks.push_back(std::move(c));
  }
  return r;
}

/// The report as JSON, schema 1 (described at the top of check_binds.cpp), with a trailing newline.
inline std::string report_json(const BindReport& r) {
  using detail::json_bool;
  using detail::json_string;
  std::vector<std::string> ports;
  for (const auto& v : r.verdicts) {
    std::vector<std::string> ls;
    for (const auto& l : v.listeners) {
      ls.push_back(fmt::format(R"({{"address": {}, "uid": {}, "v6_only": {}, "bind": {}}})",
                               json_string(l.address.to_string()), l.uid, json_bool(l.v6_only),
                               json_string(describe_bind(l, r.pod_ips, r.dual_stack))));
    }
    ports.push_back(fmt::format(
        "    {{\"port\": {}, \"listeners\": [{}],\n     \"loopback\": {},\n     \"pod_ip\": {},\n     \"reason\": {}}}",
        v.port, fmt::join(ls, ", "), detail::json_reach(v.loopback), detail::json_reach(v.pod_ip),
        json_string(v.reason)));
  }
  std::vector<std::string> quoted_ips;
  for (const auto& ip : r.pod_ips) quoted_ips.push_back(json_string(ip.to_string()));
  std::vector<std::string> capture_json, mismatch_json;
  for (const auto& c : r.checks) {
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
  for (const auto& m : r.mismatch) mismatch_json.push_back(json_string(m));
  return fmt::format("{{\n  \"schema\": 1,\n  \"pid\": {},\n  \"pod_ips\": [{}],\n  \"dual_stack\": {},\n  \"policy\": {},\n"
                     "  \"ports\": [\n{}\n  ],\n  \"unreachable\": [{}],\n  \"capture\": {{\n{}\n  }},\n"
                     "  \"capture_mismatch\": [{}]\n}}\n",
                     r.pid ? std::to_string(*r.pid) : "null", fmt::join(quoted_ips, ", "), r.dual_stack ? "true" : "false",
                     r.policy.empty() ? "null" : json_string(r.policy), fmt::join(ports, ",\n"),
                     fmt::join(r.unreachable, ", "), fmt::join(capture_json, ",\n"), fmt::join(mismatch_json, ", "));
}

}  // namespace sidecar::binds
