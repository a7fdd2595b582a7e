// Why an inbound upstream connect failed, in the seed's terms: from what the policy dialed and the pod's
// listeners on that port, a short sentence for the access log and a reason to count. Pure (no I/O).
#pragma once

#include "bind_verdicts.hpp"
#include "tcp_listeners.hpp"

#include <podproxy/connection_record.hpp>

#include <asio/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar::hints {

/// What a failed connect is put down to. Each has a counter on /stats (upstream_cx_hint_<name>).
enum class Reason : std::uint8_t {
  loopback_only,     ///< refused: the port listens on loopback only, and the dial went to a pod IP
  pod_ip_only,       ///< refused: the port listens on the pod's (or other non-loopback) addresses only, and the dial went to loopback
  bound_elsewhere,   ///< refused: listeners on the port, none accepting the dial, in another way (family, IPV6_V6ONLY, another address)
  nothing_listens,   ///< refused: no listener on the port
  listener_gone,     ///< refused, though the last look found a listener accepting the dial (it has just closed)
  timed_out,         ///< no answer within the connect timeout
};
inline constexpr std::size_t reason_count = 6;

[[nodiscard]] constexpr std::string_view name(Reason r) noexcept {
  constexpr std::array<std::string_view, reason_count> names{"loopback_only",   "pod_ip_only",   "bound_elsewhere",
                                                             "nothing_listens", "listener_gone", "timed_out"};
  return names[static_cast<std::size_t>(r)];
}

struct Hint {
  Reason reason;
  std::string text;
};

/// What a hint needs to know about the sidecar's inbound side.
struct Context {
  /// The inbound policy's name as `run --inbound-policy` spells it.
  std::string_view policy = "pod-ip";
  /// Ports whose deliveries --inbound-default-endpoint chooses instead of the policy.
  std::vector<std::uint16_t> default_endpoint_ports{};
  std::vector<asio::ip::address> pod_ips{};
  /// The namespace's default for [::] listeners whose IPV6_V6ONLY is unknown.
  bool dual_stack = true;
};

namespace detail {

inline std::string address_text(const asio::ip::address& a) {
  return a.is_v6() && !a.to_v6().is_v4_mapped() ? "[" + a.to_string() + "]" : a.to_string();
}

inline bool is_loopback(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
  return a.is_loopback();
}

}  // namespace detail

/// The hint for a connection that ended `end` (only upstream_connect_failed with ECONNREFUSED, and
/// upstream_connect_timeout, have one) after dialing `dial` for a connection captured on its way to port
/// `original_port`, given the pod's `listeners` as last seen.
[[nodiscard]] inline std::optional<Hint> explain(podproxy::ConnectionEnd end, std::error_code error,
                                                 const asio::ip::tcp::endpoint& dial, std::uint16_t original_port,
                                                 const std::vector<binds::TcpListener>& listeners, const Context& context) {
  const bool timed_out = end == podproxy::ConnectionEnd::upstream_connect_timeout;
  if (!timed_out && !(end == podproxy::ConnectionEnd::upstream_connect_failed && error == asio::error::connection_refused)) {
    return std::nullopt;
  }
  const auto port = dial.port();
  std::vector<binds::TcpListener> on_port;
  for (const auto& l : listeners) {
    if (l.port != port) continue;
    // The same bind twice (SO_REUSEPORT groups, or [::] and its v6-only twin) says nothing new.
    if (std::none_of(on_port.begin(), on_port.end(), [&](const auto& o) { return o.address == l.address; })) {
      on_port.push_back(l);
    }
  }
  const auto dialled = dial.address();
  const auto accepting = std::find_if(on_port.begin(), on_port.end(), [&](const auto& l) {
    return binds::accepts(l.address, dialled, binds::dual_stack_of(l, context.dual_stack));
  });
  std::vector<std::string> addresses;
  for (const auto& l : on_port) addresses.push_back(detail::address_text(l.address));
  const std::string bound = fmt::format("{}", fmt::join(addresses, " and "));
  const std::string dial_text = podproxy::to_text(dial);

  if (timed_out) {
    if (accepting == on_port.end()) return Hint{Reason::timed_out, "the connect timed out"};
    return Hint{Reason::timed_out,
                fmt::format("the connect timed out; {} listens on {}, which accepts {}: something drops the SYN "
                            "(a firewall rule, or a full accept queue)",
                            port, bound, dial_text)};
  }
  if (on_port.empty()) return Hint{Reason::nothing_listens, fmt::format("nothing listens on {}", port)};
  if (accepting != on_port.end()) {
    return Hint{Reason::listener_gone,
                fmt::format("{} listened on {} at the last look, which accepts {}: it has just closed", port, bound,
                            dial_text)};
  }
  const bool overridden = std::find(context.default_endpoint_ports.begin(), context.default_endpoint_ports.end(),
                                    original_port) != context.default_endpoint_ports.end();
  const std::string who = overridden ? fmt::format("--inbound-default-endpoint {}", original_port)
                                     : fmt::format("the {} policy", context.policy);
  const bool all_loopback = std::all_of(on_port.begin(), on_port.end(), [](const auto& l) { return detail::is_loopback(l.address); });
  const bool none_loopback_or_any = std::none_of(on_port.begin(), on_port.end(), [](const auto& l) {
    return detail::is_loopback(l.address) || l.address.is_unspecified();
  });
  const std::string_view any = dialled.is_v6() ? "[::]" : "0.0.0.0";
  if (all_loopback && !detail::is_loopback(dialled)) {
    return Hint{Reason::loopback_only,
                fmt::format("{} listens on {} only; {} dials {}: bind {} or {}", port, bound, who, dial_text, any,
                            overridden ? "change --inbound-default-endpoint" : "run --inbound-policy loopback")};
  }
  if (none_loopback_or_any && detail::is_loopback(dialled)) {
    return Hint{Reason::pod_ip_only,
                fmt::format("{} listens on {} only; {} dials {}: bind {} or {}", port, bound, who, dial_text, any,
                            overridden ? "change --inbound-default-endpoint" : "run --inbound-policy pod-ip")};
  }
  std::vector<std::string> described;
  for (const auto& l : on_port) described.push_back(binds::describe_bind(l, context.pod_ips, context.dual_stack));
  return Hint{Reason::bound_elsewhere, fmt::format("{} listens on {}; {} dials {}: no listener accepts that", port,
                                                   fmt::join(described, " and "), who, dial_text)};
}

}  // namespace sidecar::hints
