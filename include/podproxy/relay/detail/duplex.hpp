// The two-pump structure every relay shares: one pump per direction, joined, with an idle watchdog.
#pragma once

#include <podproxy/detail/socket_ops.hpp>
#include <podproxy/relay/relay_result.hpp>

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <variant>

namespace podproxy::detail {

/// Which way a pump moves bytes.
enum class Direction { from_downstream, from_upstream };

/// How one pump ended.
enum class PumpEnd {
  fin,      ///< the source sent a FIN; it was passed on as shutdown(SHUT_WR)
  stopped,  ///< the connection was aborted (by the other pump, the watchdog or a cancellation)
};

/// State the two pumps of one connection share. Both pumps and the watchdog run on the connection's strand,
/// so nothing here needs a lock.
class Duplex {
 public:
  Duplex(asio::ip::tcp::socket& downstream, asio::ip::tcp::socket& upstream, const RelayContext& context)
      : downstream_(downstream), upstream_(upstream), context_(context) {}

  [[nodiscard]] asio::ip::tcp::socket& source(Direction d) const noexcept {
    return d == Direction::from_downstream ? downstream_ : upstream_;
  }
  [[nodiscard]] asio::ip::tcp::socket& sink(Direction d) const noexcept {
    return d == Direction::from_downstream ? upstream_ : downstream_;
  }

  /// Records `n` bytes delivered to the sink of direction `d`.
  void delivered(Direction d, std::size_t n) noexcept {
    last_activity_ = std::chrono::steady_clock::now();
    if (d == Direction::from_downstream) {
      result_.bytes_from_downstream += n;
      if (context_.downstream_rx_total) context_.downstream_rx_total->fetch_add(n, std::memory_order_relaxed);
    } else {
      result_.bytes_from_upstream += n;
      if (context_.downstream_tx_total) context_.downstream_tx_total->fetch_add(n, std::memory_order_relaxed);
    }
  }

  /// The source of direction `d` failed (a RST, or any other receive error): reset both sides.
  PumpEnd source_failed(Direction d) noexcept {
    return abort(d == Direction::from_downstream ? RelayEnd::downstream_reset : RelayEnd::upstream_reset);
  }
  /// The sink of direction `d` failed (EPIPE, ECONNRESET): reset both sides.
  PumpEnd sink_failed(Direction d) noexcept {
    return abort(d == Direction::from_downstream ? RelayEnd::upstream_reset : RelayEnd::downstream_reset);
  }

  /// Resets both sockets (RST) and records why, unless the connection already ended for another reason.
  PumpEnd abort(RelayEnd why) noexcept {
    if (!stopped_) {
      stopped_ = true;
      result_.end = why;
      abort_socket(downstream_);
      abort_socket(upstream_);
    }
    return PumpEnd::stopped;
  }

  [[nodiscard]] bool stopped() const noexcept { return stopped_; }

  /// Waits until `socket` is ready; false when the connection was stopped meanwhile or the wait cancelled.
  asio::awaitable<bool> wait(asio::ip::tcp::socket& socket, asio::socket_base::wait_type type) {
    if (stopped_) co_return false;
    auto [ec] = co_await socket.async_wait(type, asio::experimental::as_tuple(asio::use_awaitable));
    co_return !ec && !stopped_;
  }

  /// Resolves to true when no byte moved for the idle timeout; false when cancelled first.
  asio::awaitable<bool> idle_watchdog() {
    co_await asio::this_coro::throw_if_cancelled(false);
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto idle = context_.idle_timeout;
    auto deadline = last_activity_ + idle;
    for (;;) {
      timer.expires_at(deadline);
      auto [ec] = co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      if (ec || stopped_) co_return false;
      deadline = last_activity_ + idle;
      if (deadline <= std::chrono::steady_clock::now()) co_return true;
    }
  }

  /// Runs `pump(direction)` both ways (and the idle watchdog), then closes both sockets and reports.
  template <class PumpFactory>
  asio::awaitable<RelayResult> run(PumpFactory pump) {
    using namespace asio::experimental::awaitable_operators;
    co_await asio::this_coro::throw_if_cancelled(false);
    last_activity_ = std::chrono::steady_clock::now();
    auto both = pump(Direction::from_downstream) && pump(Direction::from_upstream);
    bool idle = false;
    if (context_.idle_timeout > std::chrono::steady_clock::duration::zero()) {
      auto outcome = co_await (std::move(both) || idle_watchdog());
      idle = outcome.index() == 1 && std::get<1>(outcome);
    } else {
      co_await std::move(both);
    }
    if (idle) {
      if (!stopped_) {
        stopped_ = true;
        result_.end = RelayEnd::idle_timeout;
      }
    } else if (!stopped_) {
      // Both pumps saw a FIN: the connection completed. Otherwise a pump was cancelled from outside.
      stopped_ = true;
      result_.end = both_finished_ ? RelayEnd::completed : RelayEnd::cancelled;
    }
    if (result_.end == RelayEnd::completed || result_.end == RelayEnd::idle_timeout) {
      close_socket(downstream_);
      close_socket(upstream_);
    } else {
      abort_socket(downstream_);
      abort_socket(upstream_);
    }
    co_return result_;
  }

  /// A pump reports its FIN; when both have, the connection is complete.
  PumpEnd finished(Direction d) noexcept {
    shutdown_send(sink(d));
    if (++fins_ == 2) both_finished_ = true;
    return PumpEnd::fin;
  }

 private:
  asio::ip::tcp::socket& downstream_;
  asio::ip::tcp::socket& upstream_;
  const RelayContext& context_;
  RelayResult result_{};
  std::chrono::steady_clock::time_point last_activity_{};
  bool stopped_ = false;
  bool both_finished_ = false;
  int fins_ = 0;
};

/// Copies one read's worth from the source to the sink through `buffer`. Returns std::nullopt to go on,
/// or how the pump ended.
inline asio::awaitable<std::optional<PumpEnd>> copy_once(Duplex& duplex, Direction d, std::byte* buffer,
                                                         std::size_t size) {
  using asio::experimental::as_tuple;
  auto& source = duplex.source(d);
  auto& sink = duplex.sink(d);
  auto [ec, n] = co_await source.async_read_some(asio::buffer(buffer, size), as_tuple(asio::use_awaitable));
  if (duplex.stopped()) co_return PumpEnd::stopped;
  if (ec == asio::error::eof) co_return duplex.finished(d);
  if (ec == asio::error::operation_aborted) co_return PumpEnd::stopped;
  if (ec) co_return duplex.source_failed(d);
  std::size_t written = 0;
  while (written < n) {
    auto [wec, w] = co_await sink.async_write_some(asio::buffer(buffer + written, n - written),
                                                   as_tuple(asio::use_awaitable));
    if (duplex.stopped()) co_return PumpEnd::stopped;
    if (wec == asio::error::operation_aborted) co_return PumpEnd::stopped;
    if (wec) co_return duplex.sink_failed(d);
    written += w;
    duplex.delivered(d, w);
  }
  co_return std::nullopt;
}

}  // namespace podproxy::detail
