// Proxy: an acceptor, an upstream policy and a relay, composed into a transparent TCP proxy.
#pragma once

#include <podproxy/acceptor.hpp>
#include <podproxy/concepts/relay.hpp>
#include <podproxy/concepts/upstream_policy.hpp>
#include <podproxy/connection_record.hpp>
#include <podproxy/detail/session_registry.hpp>
#include <podproxy/detail/socket_ops.hpp>
#include <podproxy/stats.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace podproxy {

struct ProxyOptions {
  /// How long an upstream connect may take (Envoy's default is 5 s, Istio's 10 s).
  std::chrono::steady_clock::duration connect_timeout = std::chrono::seconds(10);
  /// Close a connection after this long without a byte either way (Envoy's default, 1 h); zero disables.
  std::chrono::steady_clock::duration idle_timeout = std::chrono::hours(1);
  /// SO_MARK for upstream sockets, so capture rules can exempt the proxy's own traffic (CAP_NET_ADMIN).
  std::optional<std::uint32_t> upstream_mark{};
  /// Endpoints that are this proxy besides its own listener (the sidecar's other listeners): the loop
  /// guard refuses upstreams that name any of them.
  std::vector<asio::ip::tcp::endpoint> own_endpoints{};
  /// Called once per finished connection, on that connection's strand (so possibly from several threads
  /// at once). Must not block.
  std::function<void(const ConnectionRecord&)> on_complete{};
  /// Counters to update; shared by several proxies when they serve one port from several threads. Null:
  /// the proxy makes its own.
  std::shared_ptr<ProxyStats> stats{};
};

/// Accepts with `Acceptor`, asks `Policy` where each connection goes, connects (with the connect timeout
/// and the policy's source bind) and hands both sockets to `Relay`.
///
/// Envoy's tcp_proxy semantics: nothing is read from the client before the upstream is connected; when the
/// upstream cannot be reached the client is reset (SO_LINGER {1, 0}), so it sees "Connection reset by
/// peer"; one connection's failure never touches another.
///
/// Thread safety: `start`, `stop`, `stats` and `active` may be called from any thread. Connections run on
/// their own strands of the acceptor's executor, so one io_context may be run by several threads; or make
/// one Proxy per thread and io_context with SO_REUSEPORT acceptors sharing one ProxyStats.
/// Lifetime: the Proxy must outlive the io_context's run(); it may not be moved once constructed.
template <class AcceptorT, concepts::UpstreamPolicy Policy, concepts::Relay Relay>
class Proxy {
 public:
  Proxy(AcceptorT acceptor, Policy policy, Relay relay, ProxyOptions options = {})
      : acceptor_(std::move(acceptor)),
        policy_(std::move(policy)),
        relay_(std::move(relay)),
        options_(std::move(options)),
        stats_(options_.stats ? options_.stats : std::make_shared<ProxyStats>()),
        control_(asio::make_strand(acceptor_.context_executor())),
        drain_timer_(control_) {}

  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  /// Starts the accept loop. Call once.
  void start() {
    asio::co_spawn(acceptor_.get_executor(),
                   acceptor_.run([this](AcceptedConnection&& connection) { spawn(std::move(connection)); }),
                   asio::detached);
  }

  /// Stops accepting, lets in-flight connections finish for up to `drain`, then resets the rest. Calls
  /// `on_stopped` (if any) once the last connection is gone. Any thread; later calls do nothing.
  void stop(std::chrono::steady_clock::duration drain, std::function<void()> on_stopped = {}) {
    if (stopping_.exchange(true)) return;
    // One handler does it all: posting the close and the drain separately would let a one-thread
    // io_context run out of work between the two, return from run(), and never start the drain.
    asio::post(control_, [this, drain, on_stopped = std::move(on_stopped)]() mutable {
      acceptor_.close();
      on_stopped_ = std::move(on_stopped);
      drain_timer_.expires_after(drain);
      drain_timer_.async_wait([this](std::error_code ec) {
        if (!ec) sessions_.cancel_all();
      });
      maybe_stopped();
    });
  }

  [[nodiscard]] asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  [[nodiscard]] const ProxyStats& stats() const noexcept { return *stats_; }
  [[nodiscard]] const std::shared_ptr<ProxyStats>& shared_stats() const noexcept { return stats_; }
  /// Connections of this proxy open now.
  [[nodiscard]] std::size_t active() const noexcept { return active_.load(std::memory_order_acquire); }
  [[nodiscard]] const Policy& policy() const noexcept { return policy_; }
  [[nodiscard]] const Relay& relay() const noexcept { return relay_; }
  [[nodiscard]] const AcceptorT& acceptor() const noexcept { return acceptor_; }

  /// Whether `target` is this proxy itself: its listener (an unspecified listener address matches
  /// loopback, unspecified, and the address the connection arrived on) or one of `own_endpoints`.
  [[nodiscard]] bool is_self(const asio::ip::tcp::endpoint& target, const Downstream& downstream) const {
    const auto same_address = [&](const asio::ip::tcp::endpoint& self) {
      if (target.port() != self.port()) return false;
      const auto& a = target.address();
      if (!self.address().is_unspecified()) return a == self.address();
      return a.is_loopback() || a.is_unspecified() || a == downstream.local.address() ||
             (a.is_v4() && downstream.local.address().is_v6() &&
              downstream.local.address().to_v6() == asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4()));
    };
    if (same_address(acceptor_.local_endpoint())) return true;
    for (const auto& own : options_.own_endpoints) {
      if (same_address(own)) return true;
    }
    return false;
  }

 private:
  void spawn(AcceptedConnection&& connection) {
    active_.fetch_add(1, std::memory_order_acq_rel);
    detail::bump(stats_->downstream_cx_total);
    detail::bump(stats_->downstream_cx_active);
    auto control = std::make_shared<detail::SessionControl>(connection.socket.get_executor());
    auto handle = sessions_.add(control);
    auto executor = connection.socket.get_executor();
    asio::co_spawn(executor, serve(std::move(connection), control, handle),
                   asio::bind_cancellation_slot(control->signal.slot(), asio::detached));
  }

  asio::awaitable<void> serve(AcceptedConnection connection, std::shared_ptr<detail::SessionControl> control,
                              detail::SessionRegistry::Handle handle) {
    co_await asio::this_coro::throw_if_cancelled(false);
    const auto started = std::chrono::steady_clock::now();
    ConnectionRecord record{.downstream = connection.downstream, .start = std::chrono::system_clock::now()};
    try {
      co_await run_connection(connection.socket, *control, record);
    } catch (const std::exception&) {
      // Only resource exhaustion (bad_alloc) can get here: this connection is lost, no other is.
      detail::abort_socket(connection.socket);
      record.end = ConnectionEnd::downstream_reset;
    }
    record.duration = std::chrono::steady_clock::now() - started;
    account(record);
    if (options_.on_complete) {
      try {
        options_.on_complete(record);
      } catch (...) {
        // An access log that throws must not take the proxy down.
      }
    }
    sessions_.remove(handle);
    detail::bump(stats_->downstream_cx_destroy);
    stats_->downstream_cx_active.fetch_sub(1, std::memory_order_relaxed);
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1 && stopping_.load()) {
      asio::post(control_, [this] { maybe_stopped(); });
    }
  }

  asio::awaitable<void> run_connection(asio::ip::tcp::socket& downstream, detail::SessionControl& control,
                                       ConnectionRecord& record) {
    using namespace asio::experimental::awaitable_operators;
    using asio::experimental::as_tuple;
    record.upstream = policy_.upstream_for(record.downstream);
    if (!record.upstream) {
      record.end = ConnectionEnd::refused_by_policy;
      detail::abort_socket(downstream);
      co_return;
    }
    const UpstreamTarget& target = *record.upstream;
    if (is_self(target.endpoint, record.downstream)) {
      record.end = ConnectionEnd::loop_refused;
      detail::abort_socket(downstream);
      co_return;
    }

    detail::bump(stats_->upstream_cx_total);
    asio::ip::tcp::socket upstream(downstream.get_executor());
    if (auto ec = prepare_upstream(upstream, target)) {
      record.end = ConnectionEnd::upstream_connect_failed;
      record.error = ec;
      detail::abort_socket(downstream);
      co_return;
    }

    asio::steady_timer timeout(downstream.get_executor());
    timeout.expires_after(options_.connect_timeout);
    auto outcome = co_await (upstream.async_connect(target.endpoint, as_tuple(asio::use_awaitable)) ||
                             timeout.async_wait(as_tuple(asio::use_awaitable)));
    std::error_code connect_error;
    if (outcome.index() == 0) {
      connect_error = std::get<0>(std::get<0>(outcome));
    } else {
      connect_error = std::get<0>(std::get<1>(outcome)) ? asio::error::operation_aborted
                                                        : asio::error::timed_out;
    }
    if (control.cut.load(std::memory_order_relaxed)) {
      record.end = ConnectionEnd::drained;
      detail::abort_socket(upstream);
      detail::abort_socket(downstream);
      co_return;
    }
    if (connect_error) {
      record.end = connect_error == asio::error::timed_out ? ConnectionEnd::upstream_connect_timeout
                                                           : ConnectionEnd::upstream_connect_failed;
      record.error = connect_error;
      detail::abort_socket(upstream);
      detail::abort_socket(downstream);
      co_return;
    }

    std::error_code ignored;
    record.upstream_local = upstream.local_endpoint(ignored);
    upstream.set_option(asio::ip::tcp::no_delay(true), ignored);
    downstream.set_option(asio::ip::tcp::no_delay(true), ignored);

    const RelayContext context{.idle_timeout = options_.idle_timeout,
                               .downstream_rx_total = &stats_->downstream_cx_rx_bytes_total,
                               .downstream_tx_total = &stats_->downstream_cx_tx_bytes_total};
    const RelayResult result = co_await relay_.relay(downstream, upstream, context);
    record.bytes_from_downstream = result.bytes_from_downstream;
    record.bytes_from_upstream = result.bytes_from_upstream;
    switch (result.end) {
      case RelayEnd::completed: record.end = ConnectionEnd::completed; break;
      case RelayEnd::downstream_reset: record.end = ConnectionEnd::downstream_reset; break;
      case RelayEnd::upstream_reset: record.end = ConnectionEnd::upstream_reset; break;
      case RelayEnd::idle_timeout: record.end = ConnectionEnd::idle_timeout; break;
      case RelayEnd::cancelled: record.end = ConnectionEnd::drained; break;
    }
  }

  /// Opens the upstream socket with the mark, transparency and source bind the target asks for.
  std::error_code prepare_upstream(asio::ip::tcp::socket& upstream, const UpstreamTarget& target) const {
    std::error_code ec;
    upstream.open(target.endpoint.protocol(), ec);
    if (ec) return ec;
    const int fd = upstream.native_handle();
    const bool v6 = target.endpoint.address().is_v6();
    const int one = 1;
    if (options_.upstream_mark) {
      const int mark = static_cast<int>(*options_.upstream_mark);
      if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) return {errno, std::system_category()};
    }
    if (target.transparent) {
      const int rc = v6 ? ::setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one)
                        : ::setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
      if (rc != 0) return {errno, std::system_category()};
    }
    if (target.source) {
      // Let connect() pick the port (saves ephemeral ports across many sources, as Envoy does).
      (void)::setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      asio::ip::address source = *target.source;
      if (v6 && source.is_v4()) source = asio::ip::make_address_v6(asio::ip::v4_mapped, source.to_v4());
      upstream.bind({source, 0}, ec);
      if (ec) return ec;
    }
    return {};
  }

  void account(const ConnectionRecord& record) {
    switch (record.end) {
      case ConnectionEnd::completed: break;
      case ConnectionEnd::refused_by_policy: detail::bump(stats_->downstream_cx_refused); break;
      case ConnectionEnd::loop_refused:
        detail::bump(stats_->downstream_cx_refused);
        detail::bump(stats_->downstream_cx_loop);
        break;
      case ConnectionEnd::upstream_connect_timeout:
        detail::bump(stats_->upstream_cx_connect_timeout);
        [[fallthrough]];
      case ConnectionEnd::upstream_connect_failed: detail::bump(stats_->upstream_cx_connect_fail); break;
      case ConnectionEnd::downstream_reset: detail::bump(stats_->downstream_cx_reset); break;
      case ConnectionEnd::upstream_reset: detail::bump(stats_->upstream_cx_reset); break;
      case ConnectionEnd::idle_timeout: detail::bump(stats_->idle_timeout); break;
      case ConnectionEnd::drained: detail::bump(stats_->downstream_cx_drain_close); break;
    }
  }

  /// On the control strand: once stopping and no connection is left, end the drain and tell the owner.
  void maybe_stopped() {
    if (!stopping_.load() || active_.load(std::memory_order_acquire) != 0 || stopped_) return;
    stopped_ = true;
    drain_timer_.cancel();
    if (on_stopped_) std::exchange(on_stopped_, nullptr)();
  }

  AcceptorT acceptor_;
  Policy policy_;
  Relay relay_;
  ProxyOptions options_;
  std::shared_ptr<ProxyStats> stats_;
  asio::strand<asio::any_io_executor> control_;
  asio::steady_timer drain_timer_;
  detail::SessionRegistry sessions_;
  std::atomic<std::size_t> active_{0};
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;  // control strand only
  std::function<void()> on_stopped_;  // control strand only
};

}  // namespace podproxy
