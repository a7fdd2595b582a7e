// ConnectionRecord: what an access log needs about one finished connection.
#pragma once

#include <podproxy/downstream.hpp>
#include <podproxy/upstream_target.hpp>
#include <podproxy/relay/pump.hpp>

#include <asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <system_error>

namespace podproxy {

/// How a connection ended, from the proxy's point of view.
enum class ConnectionEnd {
  completed,                ///< relayed until both sides finished
  refused_by_policy,        ///< the policy returned no upstream
  loop_refused,             ///< the upstream would have been this proxy's own listener
  loopback_refused,         ///< a client off loopback asked for a loopback destination (ProxyOptions::loopback_guard)
  upstream_connect_failed,  ///< refused, unreachable, source bind failed: the client was reset
  upstream_connect_timeout, ///< no answer within the connect timeout: the client was reset
  downstream_reset,         ///< the client reset during the relay
  upstream_reset,           ///< the upstream reset during the relay
  idle_timeout,             ///< closed after the idle timeout
  drained,                  ///< cut because the drain deadline passed
  resource_exhausted,       ///< the proxy ran out of memory for this connection: the client was reset
  bad_proxy_header,         ///< the client's PROXY protocol header was invalid: the client was reset
  proxy_header_timeout,     ///< no whole PROXY protocol header within the timeout: the client was reset
};

[[nodiscard]] constexpr std::string_view to_string(ConnectionEnd end) noexcept {
  switch (end) {
    case ConnectionEnd::completed: return "completed";
    case ConnectionEnd::refused_by_policy: return "refused_by_policy";
    case ConnectionEnd::loop_refused: return "loop_refused";
    case ConnectionEnd::loopback_refused: return "loopback_refused";
    case ConnectionEnd::upstream_connect_failed: return "upstream_connect_failed";
    case ConnectionEnd::upstream_connect_timeout: return "upstream_connect_timeout";
    case ConnectionEnd::downstream_reset: return "downstream_reset";
    case ConnectionEnd::upstream_reset: return "upstream_reset";
    case ConnectionEnd::idle_timeout: return "idle_timeout";
    case ConnectionEnd::drained: return "drained";
    case ConnectionEnd::resource_exhausted: return "resource_exhausted";
    case ConnectionEnd::bad_proxy_header: return "bad_proxy_header";
    case ConnectionEnd::proxy_header_timeout: return "proxy_header_timeout";
  }
  return "unknown";
}

/// Response flags as Envoy's tcp_proxy writes them in an access log ("-" when none), so that log queries
/// written for Envoy keep working: a refused or unreachable upstream and a connect timeout are both
/// `UF,URX` there (an upstream connection failure, and its one connect attempt used up; `UT` is Envoy's
/// HTTP request timeout, not a connect one): to_string(ConnectionEnd) keeps the difference. NR no route
/// (refused by the policy, the loop guard or the loopback guard), UR upstream remote reset, DR downstream
/// remote reset, SI idle timeout, DT cut at the drain deadline, OM out of memory (Envoy's overload manager),
/// DPE downstream protocol error (a bad or missing PROXY protocol header).
[[nodiscard]] constexpr std::string_view response_flags(ConnectionEnd end) noexcept {
  switch (end) {
    case ConnectionEnd::completed: return "-";
    case ConnectionEnd::refused_by_policy: return "NR";
    case ConnectionEnd::loop_refused: return "NR";
    case ConnectionEnd::loopback_refused: return "NR";
    case ConnectionEnd::upstream_connect_failed: return "UF,URX";
    case ConnectionEnd::upstream_connect_timeout: return "UF,URX";
    case ConnectionEnd::downstream_reset: return "DR";
    case ConnectionEnd::upstream_reset: return "UR";
    case ConnectionEnd::idle_timeout: return "SI";
    case ConnectionEnd::drained: return "DT";
    case ConnectionEnd::resource_exhausted: return "OM";
    case ConnectionEnd::bad_proxy_header: return "DPE";
    case ConnectionEnd::proxy_header_timeout: return "DPE";
  }
  return "-";
}

/// One finished connection. Handed to ProxyOptions::on_complete on the connection's executor.
struct ConnectionRecord {
  Downstream downstream;
  /// What the policy chose; empty when it refused.
  std::optional<UpstreamTarget> upstream{};
  /// The upstream socket's local address once connected (shows the source bind at work). Only looked up
  /// when ProxyOptions::on_complete is set, since nothing else can read it.
  std::optional<asio::ip::tcp::endpoint> upstream_local{};
  /// Whether the upstream connected (ProxyOptions::on_connected was called for this connection).
  bool upstream_connected = false;
  /// The socket's own peer (the balancer) when a PROXY header named the client in Downstream::peer.
  std::optional<asio::ip::tcp::endpoint> proxied_by{};
  std::uint64_t bytes_from_downstream = 0;
  std::uint64_t bytes_from_upstream = 0;
  std::chrono::system_clock::time_point start;
  std::chrono::steady_clock::duration duration{};
  ConnectionEnd end = ConnectionEnd::completed;
  /// The upstream connect error for upstream_connect_failed (ECONNREFUSED, EADDRNOTAVAIL, ...).
  std::error_code error{};
};

}  // namespace podproxy
