// check-binds' reasoning: for each listening port, which address each inbound policy dials and whether
// a listener accepts it, with the reason in words. Pure functions (no I/O), pinned by unit tests.
#pragma once

#include "tcp_listeners.hpp"

#include <podproxy/endpoint_text.hpp>
#include <podproxy/policy/loopback_policy.hpp>
#include <podproxy/policy/pod_ip_policy.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sidecar::binds {

/// Whether one policy reaches a port, per family of the pod's addresses (nullopt: the pod has no
/// address of that family, so nothing is dialled over it).
struct Reach {
  std::optional<bool> v4;
  std::optional<bool> v6;
  [[nodiscard]] bool reachable() const { return v4.value_or(true) && v6.value_or(true) && (v4 || v6); }
  /// "yes", "no", or which family alone works ("IPv4 only").
  [[nodiscard]] std::string summary() const {
    if (reachable()) return "yes";
    if (v4.value_or(false)) return "IPv4 only";
    if (v6.value_or(false)) return "IPv6 only";
    return "no";
  }
};

struct PortVerdict {
  std::uint16_t port = 0;
  std::vector<TcpListener> listeners;
  Reach loopback;
  Reach pod_ip;
  std::string reason;
};

/// Whether a listener bound to `bound` accepts a connection dialled to `dialled` (a local address).
/// `dual_stack`: whether an IPv6 wildcard listener also takes IPv4, i.e. its IPV6_V6ONLY is off.
inline bool accepts(const asio::ip::address& bound, const asio::ip::address& dialled, bool dual_stack) {
  if (bound.is_v4()) return dialled.is_v4() && (bound.is_unspecified() || bound == dialled);
  const auto b6 = bound.to_v6();
  if (b6.is_v4_mapped()) {
    return dialled.is_v4() && asio::ip::make_address_v4(asio::ip::v4_mapped, b6) == dialled.to_v4();
  }
  if (b6.is_unspecified()) return dialled.is_v6() || dual_stack;
  return dialled.is_v6() && b6 == dialled.to_v6();
}

/// Whether `listener` takes IPv4 as well (an IPv6 wildcard without IPV6_V6ONLY); `default_dual_stack`
/// stands in when its IPV6_V6ONLY is unknown.
inline bool dual_stack_of(const TcpListener& listener, bool default_dual_stack) {
  return listener.v6_only ? !*listener.v6_only : default_dual_stack;
}

/// How a listener's bind address reads in a verdict.
inline std::string describe_bind(const TcpListener& listener, const std::vector<asio::ip::address>& pod_ips,
                                 bool default_dual_stack) {
  const auto& bound = listener.address;
  const bool is_pod_ip = std::find(pod_ips.begin(), pod_ips.end(), bound) != pod_ips.end();
  if (bound.is_v4()) {
    if (bound.is_unspecified()) return "0.0.0.0 (every IPv4 address)";
    if (bound.is_loopback()) return fmt::format("{} (loopback only)", bound.to_string());
    if (is_pod_ip) return fmt::format("{} (the pod IP only)", bound.to_string());
    return fmt::format("{} (neither loopback nor the pod IP)", bound.to_string());
  }
  const auto b6 = bound.to_v6();
  if (b6.is_v4_mapped()) {
    return fmt::format("[{}] (v4-mapped: accepts IPv4 {} only)", bound.to_string(),
                       asio::ip::make_address_v4(asio::ip::v4_mapped, b6).to_string());
  }
  if (b6.is_unspecified()) {
    if (listener.v6_only) {
      return *listener.v6_only ? "[::] (every IPv6 address; IPV6_V6ONLY keeps IPv4 out)"
                               : "[::] (every address, IPv4 too)";
    }
    return default_dual_stack ? "[::] (every address, IPv4 too unless the socket set IPV6_V6ONLY)"
                              : "[::] (every IPv6 address; net.ipv6.bindv6only=1 keeps IPv4 out)";
  }
  if (b6.is_loopback()) return "[::1] (IPv6 loopback only)";
  if (is_pod_ip) return fmt::format("[{}] (the pod IP only)", bound.to_string());
  return fmt::format("[{}] (neither loopback nor the pod IP)", bound.to_string());
}

namespace detail {

inline std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : std::string(separator)) + p;
  return out;
}

inline std::string endpoint_text(const asio::ip::address& address, std::uint16_t port) {
  return podproxy::to_text({address, port});
}

}  // namespace detail

/// What `policy` dials for a connection captured on its way to `destination`:`port`: the policies `run`
/// uses are asked, so that a verdict cannot drift from what `run` delivers.
template <class Policy>
std::optional<podproxy::UpstreamTarget> dial_of(const Policy& policy, const asio::ip::address& destination,
                                                std::uint16_t port) {
  const asio::ip::tcp::endpoint original{destination, port};
  return policy.upstream_for(podproxy::Downstream{.peer = {}, .local = original, .original_destination = original});
}

/// The verdict for every listening port (ascending), skipping `skip_ports` (the sidecar's own).
/// `dual_stack` is the namespace's default for [::] listeners whose IPV6_V6ONLY is unknown.
/// Each policy is asked what it dials for a connection to each pod IP (the loopback policy: 127.0.0.1:P,
/// ::1 for IPv6 traffic; the pod-ip policy: PODIP:P from 127.0.0.6, ::6). A port is reachable under a
/// policy when, for each family the pod has an address of, some listener on the port accepts its dial.
inline std::vector<PortVerdict> verdicts(const std::vector<TcpListener>& listeners,
                                         const std::vector<asio::ip::address>& pod_ips, bool dual_stack,
                                         const std::vector<std::uint16_t>& skip_ports,
                                         const podproxy::LoopbackPolicy& loopback_policy = {},
                                         const podproxy::PodIpPolicy& pod_ip_policy = {}) {
  std::map<std::uint16_t, std::vector<TcpListener>> by_port;
  for (const auto& l : listeners) {
    if (std::find(skip_ports.begin(), skip_ports.end(), l.port) == skip_ports.end()) by_port[l.port].push_back(l);
  }
  std::vector<asio::ip::address> pod_v4, pod_v6;
  for (const auto& ip : pod_ips) (ip.is_v4() ? pod_v4 : pod_v6).push_back(ip);

  std::vector<PortVerdict> out;
  for (auto& [port, on_port] : by_port) {
    // The same bind twice (SO_REUSEPORT groups) says nothing new.
    std::sort(on_port.begin(), on_port.end(), [](const auto& a, const auto& b) { return a.address < b.address; });
    on_port.erase(std::unique(on_port.begin(), on_port.end(),
                              [](const auto& a, const auto& b) { return a.address == b.address; }),
                  on_port.end());
    const auto reached = [&](const asio::ip::address& dialled) {
      return std::any_of(on_port.begin(), on_port.end(),
                         [&](const auto& l) { return accepts(l.address, dialled, dual_stack_of(l, dual_stack)); });
    };
    PortVerdict v{.port = port, .listeners = on_port, .loopback = {}, .pod_ip = {}, .reason = {}};
    std::vector<std::string> refused_loopback, refused_pod_ip;  // the dials no listener accepts
    std::vector<std::string> pod_ip_sources;                    // where the pod-ip policy dials from
    // Every pod IP of the family must answer, under each policy: a Service may send traffic to any of them.
    const auto judge = [&](const auto& policy, const std::vector<asio::ip::address>& family_ips,
                           std::optional<bool>& reach, std::vector<std::string>& refused, bool note_sources) {
      if (family_ips.empty()) return;
      reach = true;
      for (const auto& ip : family_ips) {
        const auto target = dial_of(policy, ip, port);
        if (!target) continue;
        const std::string dial = detail::endpoint_text(target->endpoint.address(), target->endpoint.port());
        if (note_sources && target->source) {
          const std::string from = target->source->to_string();
          if (std::find(pod_ip_sources.begin(), pod_ip_sources.end(), from) == pod_ip_sources.end()) {
            pod_ip_sources.push_back(from);
          }
        }
        if (reached(target->endpoint.address())) continue;
        *reach = false;
        if (std::find(refused.begin(), refused.end(), dial) == refused.end()) refused.push_back(dial);
      }
    };
    judge(loopback_policy, pod_v4, v.loopback.v4, refused_loopback, false);
    judge(loopback_policy, pod_v6, v.loopback.v6, refused_loopback, false);
    judge(pod_ip_policy, pod_v4, v.pod_ip.v4, refused_pod_ip, true);
    judge(pod_ip_policy, pod_v6, v.pod_ip.v6, refused_pod_ip, true);

    std::vector<std::string> binds;
    for (const auto& l : on_port) binds.push_back(describe_bind(l, pod_ips, dual_stack));
    std::vector<std::string> refused;
    if (!refused_loopback.empty()) {
      refused.push_back("the loopback policy dials " + detail::join(refused_loopback, " and "));
    }
    if (!refused_pod_ip.empty()) {
      refused.push_back("the pod-ip policy dials " + detail::join(refused_pod_ip, " and ") +
                        (pod_ip_sources.empty() ? "" : " (from " + detail::join(pod_ip_sources, " / ") + ")"));
    }
    v.reason = "bound to " + detail::join(binds, " and ") + ": " +
               (refused.empty() ? "both policies reach it" : detail::join(refused, "; ") + ": no listener accepts that");
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace sidecar::binds
