// RelayResult and RelayContext: what a relay is given and what it reports.
#pragma once

#include <podproxy/stats.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>

namespace podproxy {

/// How a relayed connection ended.
enum class RelayEnd {
  completed,         ///< both directions saw a FIN and were shut down in turn
  downstream_reset,  ///< the client reset (or vanished); the upstream was reset too
  upstream_reset,    ///< the upstream reset; the client was reset too
  idle_timeout,      ///< no byte moved either way for the idle timeout; both sides closed
  cancelled,         ///< stopped from outside (a drain deadline); both sides reset
};

[[nodiscard]] constexpr std::string_view to_string(RelayEnd end) noexcept {
  switch (end) {
    case RelayEnd::completed: return "completed";
    case RelayEnd::downstream_reset: return "downstream_reset";
    case RelayEnd::upstream_reset: return "upstream_reset";
    case RelayEnd::idle_timeout: return "idle_timeout";
    case RelayEnd::cancelled: return "cancelled";
  }
  return "unknown";
}

/// What a relay is told for one connection.
struct RelayContext {
  /// Close both sides when no byte has moved in either direction for this long; zero disables.
  std::chrono::steady_clock::duration idle_timeout{};
  /// Where to add bytes as they move (may be null): bytes read from the client, bytes written to it.
  ProxyStats::Counter* downstream_rx_total = nullptr;
  ProxyStats::Counter* downstream_tx_total = nullptr;
};

/// What a relay reports when the connection is over. By the time it is returned both sockets are closed.
struct RelayResult {
  std::uint64_t bytes_from_downstream = 0;  ///< read from the client and written upstream
  std::uint64_t bytes_from_upstream = 0;    ///< read from the upstream and written to the client
  RelayEnd end = RelayEnd::completed;
};

}  // namespace podproxy
