// Proxy: an acceptor, an upstream policy and a relay, composed into a transparent TCP proxy.
#pragma once

#include <podproxy/acceptor.hpp>
#include <podproxy/concepts/connection_acceptor.hpp>
#include <podproxy/concepts/relay.hpp>
#include <podproxy/concepts/upstream_policy.hpp>
#include <podproxy/connection_record.hpp>
#include <podproxy/proxy_options.hpp>
#include <podproxy/stats.hpp>
#include <podproxy/detail/event_poller.hpp>
#include <podproxy/detail/session.hpp>
#include <podproxy/detail/session_registry.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace podproxy {

/// Accepts with `Acceptor`, asks `Policy` where each connection goes, connects (with the connect timeout
/// and the policy's source bind) and hands both sockets to `Relay`'s pumps.
///
/// Envoy's tcp_proxy semantics: nothing is read from the client before the upstream is connected; when the
/// upstream cannot be reached the client is reset (SO_LINGER {1, 0}), so it sees "Connection reset by
/// peer"; one connection's failure never touches another.
///
/// Each connection is one heap object, a detail::Session (detail/session.hpp: from the policy's answer to
/// the record), handed a SessionContext rather than the proxy (no coroutine, no per-connection timer, no
/// Asio socket). Both of its
/// sockets sit in an epoll set of the proxy's own (detail::EventPoller), registered once, edge-triggered,
/// with EPOLLRDHUP, and closed without EPOLL_CTL_DEL: one epoll_ctl per socket in its life, where Asio's
/// reactor makes one per wait, plus two each time a direction waits for a full sink (its source stops
/// reporting input meanwhile, which would wake the thread for bytes it cannot move yet). The set is one
/// descriptor in the io_context's reactor, so the proxy still runs wherever the io_context runs. Connect
/// and idle timeouts are found by one sweep per proxy, whose period is an eighth of the shorter timeout
/// (between 5 ms and 1 s), so a timeout fires up to that late.
///
/// Thread safety: `start`, `stop`, `stats` and `active` may be called from any thread. With
/// AcceptorOptions::strand_per_connection (the default) connections are spread over one poller per
/// hardware thread, each on a strand of its own, so one io_context may be run by several threads; or make
/// one Proxy per thread and io_context with SO_REUSEPORT acceptors sharing one ProxyStats, and set
/// strand_per_connection to false (one poller on the executor itself: the fastest way to use several cores).
/// Lifetime: the Proxy must outlive the io_context's run(); it may not be moved once constructed.
template <concepts::ConnectionAcceptor AcceptorT, concepts::UpstreamPolicy Policy, concepts::Relay Relay>
class Proxy final : detail::SessionOwner {
 public:
  Proxy(AcceptorT acceptor, Policy policy, Relay relay, ProxyOptions options = {})
      : acceptor_(std::move(acceptor)),
        policy_(std::move(policy)),
        relay_(std::move(relay)),
        options_(std::move(options)),
        stats_(options_.stats ? options_.stats : std::make_shared<ProxyStats>()),
        self_(acceptor_.local_endpoint(), options_.own_endpoints),
        context_{.policy = policy_, .relay = relay_, .options = options_, .stats = *stats_, .self = self_, .owner = *this},
        control_(asio::make_strand(acceptor_.context_executor())),
        drain_timer_(control_),
        sweep_timer_(control_),
        sweep_period_(sweep_period(options_)),
        pollers_(make_pollers(acceptor_, options_.batch_pause)) {}

  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  /// Normally every connection is over by now (stop() drained them and run() returned). Any left (the
  /// io_context was stopped mid-way) are reset here, so their descriptors and pipes are not leaked; their
  /// pending handlers, if the io_context ever runs them, find them ended.
  ~Proxy() {
    sessions_.for_each([](detail::RegistryHook& hook) { static_cast<Session&>(hook).abandon(); });
  }

  /// Starts the accept loop and the timeout sweep. Call once.
  void start() {
    for (auto& poller : pollers_) {
      asio::post(poller->get_executor(), [p = poller.get()] { p->start(); });
    }
    // The listener is watched in the first poller's set too (that poller runs on the acceptor's
    // executor): a new connection is taken in the same batch as the events of those already open.
    asio::post(acceptor_.get_executor(), [this] {
      try {
        listener_slot_ = pollers_.front()->attach(&listener_);
      } catch (const std::exception&) {
        return start_accept_loop();
      }
      if (pollers_.front()->watch(acceptor_.native_handle(), listener_slot_, 0)) {
        pollers_.front()->detach(std::exchange(listener_slot_, no_slot));
        return start_accept_loop();
      }
      accept_ready();
    });
    asio::post(control_, [this] { arm_sweep(); });
  }

  /// Stops accepting, lets in-flight connections finish for up to `drain`, then resets the rest. Calls
  /// `on_stopped` (if any) once the last connection is gone. Any thread. A later call may only bring the
  /// deadline closer (its `on_stopped` is ignored): a drain without a deadline, then a quit with one, as
  /// Envoy's drain_listeners followed by quitquitquit.
  void stop(std::chrono::steady_clock::duration drain, std::function<void()> on_stopped = {}) {
    if (stopping_.exchange(true)) {
      asio::post(control_, [this, deadline = std::chrono::steady_clock::now() + drain] {
        if (stopped_ || deadline >= drain_timer_.expiry()) return;
        drain_timer_.expires_at(deadline);  // the earlier wait ends with operation_aborted
        drain_timer_.async_wait([this](std::error_code ec) {
          if (!ec) cut_all();
        });
      });
      return;
    }
    // The drain timer is armed in the same handler that starts closing: posted separately, a one-thread
    // io_context could run out of work between the two, return from run(), and never start the drain.
    asio::post(control_, [this, drain, on_stopped = std::move(on_stopped)]() mutable {
      on_stopped_ = std::move(on_stopped);
      drain_timer_.expires_after(drain);
      drain_timer_.async_wait([this](std::error_code ec) {
        if (!ec) cut_all();
      });
      // Connections are only ever taken on the acceptor's executor: once it has stopped accepting, the
      // count of connections can only fall, and "none left" means done.
      asio::post(acceptor_.get_executor(), [this] {
        accepting_ = false;
        accept_backoff_.cancel();
        if (listener_slot_ != no_slot) pollers_.front()->detach(std::exchange(listener_slot_, no_slot));
        acceptor_.close();
        accept_closed_.store(true);
        asio::post(control_, [this] { maybe_stopped(); });
      });
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
  /// How often connect and idle timeouts are looked for.
  [[nodiscard]] std::chrono::steady_clock::duration sweep_interval() const noexcept { return sweep_period_; }

  /// Whether `target` is this proxy itself: its listener (an unspecified listener address matches
  /// loopback, unspecified, and the address the connection arrived on) or one of `own_endpoints`.
  [[nodiscard]] bool is_self(const asio::ip::tcp::endpoint& target, const Downstream& downstream) const {
    return self_.contains(target, downstream);
  }

 private:
  using Clock = std::chrono::steady_clock;
  using Session = detail::Session<Policy, Relay>;
  static constexpr std::uint32_t no_slot = ~std::uint32_t{0};

  static Clock::duration sweep_period(const ProxyOptions& options) {
    auto shortest = options.connect_timeout;
    if (options.idle_timeout > Clock::duration::zero()) shortest = std::min(shortest, options.idle_timeout);
    if (options.accept_proxy_protocol != ProxyProtocolAccept::off) {
      shortest = std::min(shortest, options.proxy_protocol_timeout);
    }
    return std::clamp<Clock::duration>(shortest / 8, std::chrono::milliseconds(5), std::chrono::seconds(1));
  }

  /// The listener's entry in the first poller: readable means connections are queued.
  struct ListenerTarget final : detail::PollTarget {
    explicit ListenerTarget(Proxy& proxy) noexcept : PollTarget(&ListenerTarget::ready), proxy_(proxy) {}
    static void ready(detail::PollTarget& target, int /*which*/, std::uint32_t /*events*/) noexcept {
      static_cast<ListenerTarget&>(target).proxy_.accept_ready();
    }
    Proxy& proxy_;
  };

  /// On the acceptor's executor: takes the connections queued now. Edge-triggered, so after a full batch
  /// the listener is looked at again (look_again), and an overload retries after the back-off without
  /// waiting for an edge.
  void accept_ready() noexcept {
    if (!accepting_ || accept_paused_) return;
    try {
      switch (acceptor_.accept_some([this](AcceptedConnection&& connection) { spawn(std::move(connection)); })) {
        case AcceptStatus::drained:
        case AcceptStatus::closed: return;
        case AcceptStatus::more: return look_again();
        case AcceptStatus::overloaded:
          detail::bump(stats_->downstream_cx_overflow);
          accept_paused_ = true;
          accept_backoff_.expires_after(acceptor_.options().overload_backoff);
          accept_backoff_.async_wait([this](std::error_code ec) {
            accept_paused_ = false;
            if (!ec) accept_ready();
          });
          return;
      }
    } catch (const std::exception&) {
      // Out of memory (starting a connection, or arming the back-off): the connections still queued must
      // not wait for the next client's edge, which may never come.
      accept_paused_ = false;
      look_again();
    }
  }

  /// Connections may still be queued on the listener, which will raise no new edge for them: watching it
  /// again (EPOLL_CTL_MOD looks at once) reports it in the poller's next round if they are. Nothing is
  /// allocated, so this also works when memory has run out, and the listener takes its turn behind the
  /// events of the connections already open.
  void look_again() noexcept {
    if (listener_slot_ == no_slot) return;
    if (!pollers_.front()->rewatch(acceptor_.native_handle(), listener_slot_, 0, true, true)) return;
    try {
      asio::post(acceptor_.get_executor(), [this] { accept_ready(); });
    } catch (const std::exception&) {
      // Neither could be done: the next connection's edge retries.
    }
  }

  /// The listener could not join the poller's set (out of memory): accept through Asio's reactor instead.
  void start_accept_loop() {
    asio::co_spawn(acceptor_.get_executor(), acceptor_.run([this](AcceptedConnection&& connection) {
      if (accepting_) return spawn(std::move(connection));
      connection.socket.abort();  // taken between stop() and the listener's close: refused
    }),
                   asio::detached);
  }

  /// One poller on the acceptor's io_context when one thread runs it; with strands per connection (several
  /// threads), one per hardware thread, each on a strand of its own, connections spread over them.
  static std::vector<std::unique_ptr<detail::EventPoller>> make_pollers(const AcceptorT& acceptor,
                                                                         std::chrono::microseconds pause) {
    bool strands = true;
    if constexpr (requires { acceptor.options().strand_per_connection; }) {
      strands = acceptor.options().strand_per_connection;
    }
    // The first runs on the acceptor's executor (its strand, or the executor itself), so that it can
    // watch the listener and accept; the others on strands of their own.
    std::vector<std::unique_ptr<detail::EventPoller>> pollers;
    pollers.push_back(std::make_unique<detail::EventPoller>(acceptor.get_executor(), pause));
    const std::size_t count = strands ? std::max(1u, std::thread::hardware_concurrency()) : 1;
    for (std::size_t i = 1; i < count; ++i) {
      pollers.push_back(std::make_unique<detail::EventPoller>(asio::make_strand(acceptor.context_executor()), pause));
    }
    return pollers;
  }

  void spawn(AcceptedConnection&& connection) {
    detail::EventPoller& poller = *pollers_[next_poller_];
    next_poller_ = (next_poller_ + 1) % pollers_.size();
    Session* session = nullptr;
    try {
      session = new Session(context_, poller, std::move(connection.socket), connection.downstream);
    } catch (const std::exception&) {
      connection.socket.abort();  // out of memory: this client is reset, nobody else
      detail::bump(stats_->downstream_cx_overflow);
      return;
    }
    active_.fetch_add(1, std::memory_order_acq_rel);
    detail::bump(stats_->downstream_cx_total);
    detail::bump(stats_->downstream_cx_active);
    sessions_.add(*session);
    if (stopping_.load() && drain_passed_.load()) session->mark_cut();
    try {
      asio::dispatch(session->executor(), [session] { session->start(); });
    } catch (const std::exception&) {
      // Out of memory queueing its start (a strand of another poller): the client is reset, and the
      // session is counted and logged like any other, not left registered until the connect-timeout sweep.
      session->fail_to_start();
    }
  }

  /// Exactly once per session, on its executor (or the acceptor's, for one whose start could not be
  /// queued): account, log, forget.
  void finished(detail::RegistryHook& session, const ConnectionRecord& record) noexcept override {
    detail::account(*stats_, record);
    if (options_.on_complete) {
      try {
        options_.on_complete(record);
      } catch (...) {
        // An access log that throws must not take the proxy down.
      }
    }
    sessions_.remove(session);
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1 && stopping_.load()) {
      try {
        asio::post(control_, [this] { maybe_stopped(); });
      } catch (...) {
      }
    }
  }

  /// On the control strand: posts `expire` to every session whose connect or idle timeout may have passed.
  void arm_sweep() {
    if (stopped_) return;
    sweep_timer_.expires_after(sweep_period_);
    sweep_timer_.async_wait([this](std::error_code ec) {
      if (ec || stopped_) return;
      const auto now = Clock::now();
      const auto idle = options_.idle_timeout;
      sessions_.for_each([&](detail::RegistryHook& hook) {
        auto& session = static_cast<Session&>(hook);
        if (!session.due(now, idle)) return;
        asio::post(session.executor(), [self = typename Session::Ref(&session)] { self->expire(); });
      });
      arm_sweep();
    });
  }

  /// On the control strand, at the drain deadline: reset every connection left.
  void cut_all() {
    drain_passed_.store(true);
    sessions_.for_each([&](detail::RegistryHook& hook) {
      auto& session = static_cast<Session&>(hook);
      session.mark_cut();
      asio::post(session.executor(), [self = typename Session::Ref(&session)] { self->cut(); });
    });
  }

  /// On the control strand: once stopping and no connection is left, end the drain and tell the owner.
  void maybe_stopped() {
    if (!accept_closed_.load() || active_.load(std::memory_order_acquire) != 0 || stopped_) return;
    stopped_ = true;
    drain_timer_.cancel();
    sweep_timer_.cancel();
    for (auto& poller : pollers_) {
      asio::post(poller->get_executor(), [p = poller.get()] { p->stop(); });
    }
    if (on_stopped_) std::exchange(on_stopped_, nullptr)();
  }

  AcceptorT acceptor_;
  Policy policy_;
  Relay relay_;
  ProxyOptions options_;
  std::shared_ptr<ProxyStats> stats_;
  detail::SelfEndpoints self_;
  detail::SessionContext<Policy, Relay> context_;
  asio::strand<asio::any_io_executor> control_;
  asio::steady_timer drain_timer_;
  asio::steady_timer sweep_timer_;
  Clock::duration sweep_period_;
  std::vector<std::unique_ptr<detail::EventPoller>> pollers_;
  std::size_t next_poller_ = 0;  // the acceptor's executor only
  ListenerTarget listener_{*this};
  std::uint32_t listener_slot_ = no_slot;  // the acceptor's executor only
  asio::steady_timer accept_backoff_{acceptor_.get_executor()};
  bool accepting_ = true;       // the acceptor's executor only
  bool accept_paused_ = false;  // the acceptor's executor only
  detail::SessionRegistry sessions_;
  std::atomic<std::size_t> active_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> drain_passed_{false};
  std::atomic<bool> accept_closed_{false};  // set once stop() has stopped accepting
  bool stopped_ = false;  // control strand only
  std::function<void()> on_stopped_;  // control strand only
};

}  // namespace podproxy
