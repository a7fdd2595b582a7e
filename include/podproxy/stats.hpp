// ProxyStats: a proxy's counters, with Envoy's names, readable at any time from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

namespace podproxy {

/// Counters for one proxy, or for several that share it (one per thread with SO_REUSEPORT). Every field
/// is a relaxed atomic: writers never block, readers see each value consistently but not a snapshot of
/// all of them at one instant. Names follow Envoy's tcp_proxy and listener stats where Envoy has one.
struct ProxyStats {
  using Counter = std::atomic<std::uint64_t>;

  Counter downstream_cx_total{0};           ///< connections accepted
  Counter downstream_cx_active{0};          ///< connections open now (a gauge)
  Counter downstream_cx_destroy{0};         ///< connections finished, whatever the reason
  Counter downstream_cx_rx_bytes_total{0};  ///< bytes read from clients (and sent upstream)
  Counter downstream_cx_tx_bytes_total{0};  ///< bytes written to clients (read from upstreams)
  Counter downstream_cx_overflow{0};        ///< accepts that ran out of descriptors or memory (each backs
                                            ///< off), and connections lost to memory (resource_exhausted)
  Counter downstream_cx_refused{0};         ///< connections the policy refused or a guard stopped
  Counter downstream_cx_loop{0};            ///< of those, connections whose upstream was this proxy itself
  Counter downstream_cx_loopback_refused{0};  ///< of those, clients off loopback asking for a loopback address
  Counter downstream_cx_reset{0};           ///< connections the client reset
  Counter downstream_cx_drain_close{0};     ///< connections cut because the drain deadline passed
  Counter upstream_cx_total{0};             ///< upstream connection attempts
  Counter upstream_cx_connect_fail{0};      ///< attempts that failed, timeouts included
  Counter upstream_cx_connect_timeout{0};   ///< attempts that hit the connect timeout
  Counter upstream_cx_reset{0};             ///< connections the upstream reset
  Counter idle_timeout{0};                  ///< connections closed for being idle
  Counter downstream_cx_proxy_proto_error{0};  ///< connections reset for a bad PROXY protocol header
  Counter downstream_pre_cx_timeout{0};     ///< connections reset for not sending a PROXY header in time

  /// Whether a statistic is a counter (only grows) or a gauge.
  enum class Kind { counter, gauge };

  /// Calls `visit(name, value, kind)` for every statistic, in declaration order.
  template <class Visitor>
  void for_each(Visitor&& visit) const {
    const auto emit = [&](std::string_view name, const Counter& c, Kind kind = Kind::counter) {
      visit(name, c.load(std::memory_order_relaxed), kind);
    };
    emit("downstream_cx_total", downstream_cx_total);
    emit("downstream_cx_active", downstream_cx_active, Kind::gauge);
    emit("downstream_cx_destroy", downstream_cx_destroy);
    emit("downstream_cx_rx_bytes_total", downstream_cx_rx_bytes_total);
    emit("downstream_cx_tx_bytes_total", downstream_cx_tx_bytes_total);
    emit("downstream_cx_overflow", downstream_cx_overflow);
    emit("downstream_cx_refused", downstream_cx_refused);
    emit("downstream_cx_loop", downstream_cx_loop);
    emit("downstream_cx_loopback_refused", downstream_cx_loopback_refused);
    emit("downstream_cx_reset", downstream_cx_reset);
    emit("downstream_cx_drain_close", downstream_cx_drain_close);
    emit("upstream_cx_total", upstream_cx_total);
    emit("upstream_cx_connect_fail", upstream_cx_connect_fail);
    emit("upstream_cx_connect_timeout", upstream_cx_connect_timeout);
    emit("upstream_cx_reset", upstream_cx_reset);
    emit("idle_timeout", idle_timeout);
    emit("downstream_cx_proxy_proto_error", downstream_cx_proxy_proto_error);
    emit("downstream_pre_cx_timeout", downstream_pre_cx_timeout);
  }
};

namespace detail {
inline void bump(ProxyStats::Counter& counter, std::uint64_t by = 1) noexcept {
  counter.fetch_add(by, std::memory_order_relaxed);
}
}  // namespace detail

}  // namespace podproxy
