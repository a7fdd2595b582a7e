// Proxy: an acceptor, an upstream policy and a relay, composed into a transparent TCP proxy.
#pragma once

#include <podproxy/acceptor.hpp>
#include <podproxy/concepts/relay.hpp>
#include <podproxy/concepts/upstream_policy.hpp>
#include <podproxy/connection_record.hpp>
#include <podproxy/detail/session_registry.hpp>
#include <podproxy/detail/socket_ops.hpp>
#include <podproxy/relay/pump.hpp>
#include <podproxy/stats.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
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
/// and the policy's source bind) and hands both sockets to `Relay`'s pumps.
///
/// Envoy's tcp_proxy semantics: nothing is read from the client before the upstream is connected; when the
/// upstream cannot be reached the client is reset (SO_LINGER {1, 0}), so it sees "Connection reset by
/// peer"; one connection's failure never touches another.
///
/// Each connection is one heap object driven by completion handlers (no coroutine, no per-connection
/// timer): connect and idle timeouts are found by one sweep per proxy, whose period is an eighth of the
/// shorter timeout (between 5 ms and 1 s), so a timeout fires up to that much late.
///
/// Thread safety: `start`, `stop`, `stats` and `active` may be called from any thread. Connections run on
/// their own strands of the acceptor's executor, so one io_context may be run by several threads; or make
/// one Proxy per thread and io_context with SO_REUSEPORT acceptors sharing one ProxyStats, and set
/// AcceptorOptions::strand_per_connection to false (the fastest way to use several cores).
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
        drain_timer_(control_),
        sweep_timer_(control_),
        sweep_period_(sweep_period(options_)) {}

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
    asio::co_spawn(acceptor_.get_executor(),
                   acceptor_.run([this](AcceptedConnection&& connection) { spawn(std::move(connection)); }),
                   asio::detached);
    asio::post(control_, [this] { arm_sweep(); });
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
        if (!ec) cut_all();
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
  /// How often connect and idle timeouts are looked for.
  [[nodiscard]] std::chrono::steady_clock::duration sweep_interval() const noexcept { return sweep_period_; }

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
  using Clock = std::chrono::steady_clock;
  using Pump = typename Relay::pump_type;
  enum class Phase : std::uint8_t { connecting, relaying, done };

  /// One connection: the client's socket, the upstream's, a pump per direction, and what the access log
  /// will say. Lives on the heap from accept to the last completion handler; every handler that may still
  /// run holds a reference (refs_), and the session holds one of its own until it has finished.
  class Session : public detail::RegistryHook {
   public:
    Session(Proxy& proxy, AcceptedConnection&& connection)
        : proxy_(proxy),
          downstream_(std::move(connection.socket)),
          upstream_(downstream_.get_executor()),
          pumps_{proxy.relay_.make_pump(), proxy.relay_.make_pump()},
          record_{.downstream = connection.downstream, .start = std::chrono::system_clock::now()},
          started_(Clock::now()),
          connect_deadline_(started_ + proxy.options_.connect_timeout) {}

    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    [[nodiscard]] asio::any_io_executor executor() { return downstream_.get_executor(); }

    void hold() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
    void release() noexcept {
      if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    /// A reference a pending handler holds: released when the handler has run, or when it is destroyed
    /// without running (an io_context destroyed with work queued), so a session is never leaked.
    class Ref {
     public:
      explicit Ref(Session* session) noexcept : session_(session) { session_->hold(); }
      Ref(Ref&& other) noexcept : session_(std::exchange(other.session_, nullptr)) {}
      Ref(const Ref&) = delete;
      Ref& operator=(const Ref&) = delete;
      Ref& operator=(Ref&&) = delete;
      ~Ref() {
        if (session_) session_->release();
      }
      Session* operator->() const noexcept { return session_; }

     private:
      Session* session_;
    };

    /// On the session's executor: ask the policy, open the upstream socket, connect.
    void start() {
      guard([&] { begin(); });
    }

    /// Whether the sweep should look closer (any thread; reads only atomics and constants).
    [[nodiscard]] bool due(Clock::time_point now, Clock::duration idle) const noexcept {
      switch (phase_.load(std::memory_order_relaxed)) {
        case Phase::connecting: return now >= connect_deadline_;
        case Phase::relaying:
          return idle > Clock::duration::zero() &&
                 now - Clock::time_point(Clock::duration(last_activity_.load(std::memory_order_relaxed))) >= idle;
        case Phase::done: return false;
      }
      return false;
    }

    /// Posted by the sweep: the connect timeout passed, or the connection may be idle.
    void expire() {
      const auto phase = phase_.load(std::memory_order_relaxed);
      if (phase == Phase::connecting) {
        timed_out_ = true;
        detail::abort_socket(upstream_);  // the connect handler completes and reports the timeout
      } else if (phase == Phase::relaying && due(Clock::now(), proxy_.options_.idle_timeout)) {
        end(ConnectionEnd::idle_timeout, /*graceful=*/true);
      }
    }

    /// Posted at the drain deadline: reset whatever is left.
    void cut() {
      cut_.store(true, std::memory_order_relaxed);
      const auto phase = phase_.load(std::memory_order_relaxed);
      if (phase == Phase::connecting) {
        detail::abort_socket(upstream_);  // the connect handler completes and reports the cut
      } else if (phase == Phase::relaying) {
        end(ConnectionEnd::drained, /*graceful=*/false);
      }
    }

    /// From ~Proxy, with no thread running the io_context: reset without reporting to the proxy.
    void abandon() noexcept {
      if (phase_.exchange(Phase::done, std::memory_order_relaxed) == Phase::done) return;
      pumps_[0].discard();
      pumps_[1].discard();
      detail::abort_socket(upstream_);
      detail::abort_socket(downstream_);
      release();
    }

   private:
    ~Session() = default;
    friend class Proxy;

    template <class F>
    void guard(F&& f) noexcept {
      try {
        f();
      } catch (const std::exception&) {
        // Only resource exhaustion (bad_alloc) can get here: this connection is lost, no other is.
        end(ConnectionEnd::downstream_reset, /*graceful=*/false);
      }
    }

    void begin() {
      record_.upstream = proxy_.policy_.upstream_for(record_.downstream);
      if (!record_.upstream) return end(ConnectionEnd::refused_by_policy, false);
      const UpstreamTarget& target = *record_.upstream;
      if (proxy_.is_self(target.endpoint, record_.downstream)) return end(ConnectionEnd::loop_refused, false);
      detail::bump(proxy_.stats_->upstream_cx_total);
      if (auto ec = proxy_.prepare_upstream(upstream_, target)) {
        record_.error = ec;
        return end(ConnectionEnd::upstream_connect_failed, false);
      }
      if (cut_.load(std::memory_order_relaxed)) return end(ConnectionEnd::drained, false);
      // A non-blocking connect(2), a wait for writability, then SO_ERROR: what async_connect does, less
      // its poll(2).
      std::error_code ec;
      upstream_.non_blocking(true, ec);
      if (!ec && ::connect(upstream_.native_handle(), target.endpoint.data(),
                           static_cast<socklen_t>(target.endpoint.size())) == 0) {
        return connected({});
      }
      if (!ec && errno != EINPROGRESS && errno != EINTR) ec.assign(errno, asio::error::get_system_category());
      if (ec) {
        record_.error = ec;
        return end(ConnectionEnd::upstream_connect_failed, false);
      }
      upstream_.async_wait(asio::socket_base::wait_write, [self = Ref(this)](std::error_code wait_error) {
        if (!wait_error) {
          int error = 0;
          socklen_t length = sizeof error;
          if (::getsockopt(self->upstream_.native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
            error = errno;
          }
          if (error != 0) wait_error.assign(error, asio::error::get_system_category());
        }
        self->guard([&] { self->connected(wait_error); });
      });
    }

    void connected(std::error_code ec) {
      if (phase_.load(std::memory_order_relaxed) != Phase::connecting) return;
      if (cut_.load(std::memory_order_relaxed)) return end(ConnectionEnd::drained, false);
      if (timed_out_) {
        record_.error = asio::error::timed_out;
        return end(ConnectionEnd::upstream_connect_timeout, false);
      }
      if (ec) {
        record_.error = ec;
        return end(ConnectionEnd::upstream_connect_failed, false);
      }
      std::error_code ignored;
      if (proxy_.options_.on_complete) {  // only an access log reads it: spare the syscall otherwise
        if (auto local = upstream_.local_endpoint(ignored); !ignored) record_.upstream_local = local;
      }
      upstream_.set_option(asio::ip::tcp::no_delay(true), ignored);
      downstream_.set_option(asio::ip::tcp::no_delay(true), ignored);
      // Pumps call splice(2) and recv(2) themselves: SPLICE_F_NONBLOCK does not cover the socket side, so
      // the descriptors must be O_NONBLOCK (the upstream already is: its connect was asynchronous).
      downstream_.non_blocking(true, ignored);
      if (ignored) {
        record_.error = ignored;
        return end(ConnectionEnd::downstream_reset, false);
      }
      touch();
      phase_.store(Phase::relaying, std::memory_order_relaxed);
      // The client has likely spoken already: move its bytes now. The upstream's direction waits (a
      // server that spoke first is ready at once: see wait()).
      run(0);
      if (relaying()) wait(1, read);
    }

    static constexpr int read = 0;
    static constexpr int write = 1;

    [[nodiscard]] bool relaying() const noexcept {
      return phase_.load(std::memory_order_relaxed) == Phase::relaying;
    }
    asio::ip::tcp::socket& source(int d) noexcept { return d == 0 ? downstream_ : upstream_; }
    asio::ip::tcp::socket& sink(int d) noexcept { return d == 0 ? upstream_ : downstream_; }

    void touch() noexcept {
      last_activity_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }

    /// Moves what direction `d` can move now, then waits for what it needs next.
    void run(int d) {
      if (finished_[d] || !relaying()) return;
      const PumpStep step = pumps_[d].transfer(source(d).native_handle(), sink(d).native_handle());
      if (step.delivered > 0) delivered(d, step.delivered);
      switch (step.status) {
        case PumpStatus::want_read: return wait(d, read);
        case PumpStatus::want_write: return wait(d, write);
        case PumpStatus::yield:
          asio::post(executor(), [self = Ref(this), d] { self->guard([&] { self->run(d); }); });
          return;
        case PumpStatus::fin:
          finished_[d] = true;
          detail::shutdown_send(sink(d));
          if (finished_[0] && finished_[1]) end(ConnectionEnd::completed, /*graceful=*/true);
          return;
        case PumpStatus::source_failed:
          return end(d == 0 ? ConnectionEnd::downstream_reset : ConnectionEnd::upstream_reset, false);
        case PumpStatus::sink_failed:
          return end(d == 0 ? ConnectionEnd::upstream_reset : ConnectionEnd::downstream_reset, false);
      }
    }

    /// Waits until direction `d`'s source is readable (`kind` read) or its sink writable, then runs it.
    /// Readiness is edge-triggered, but no edge is lost between a pump's EAGAIN and this wait: Asio queues
    /// a wait with EPOLL_CTL_MOD, which re-evaluates readiness and reports a descriptor that is ready now.
    /// For the same reason a pump may stop reading at a short read without asking for EAGAIN first.
    void wait(int d, int kind) {
      if (waiting_[d][kind]) return;  // already waiting for exactly that
      waiting_[d][kind] = true;
      auto& socket = kind == read ? source(d) : sink(d);
      socket.async_wait(kind == read ? asio::socket_base::wait_read : asio::socket_base::wait_write,
                        [self = Ref(this), d, kind](std::error_code ec) {
                          self->waiting_[d][kind] = false;
                          if (ec != asio::error::operation_aborted) self->guard([&] { self->run(d); });
                        });
    }

    void delivered(int d, std::size_t n) noexcept {
      touch();
      if (d == 0) {
        record_.bytes_from_downstream += n;
        proxy_.stats_->downstream_cx_rx_bytes_total.fetch_add(n, std::memory_order_relaxed);
      } else {
        record_.bytes_from_upstream += n;
        proxy_.stats_->downstream_cx_tx_bytes_total.fetch_add(n, std::memory_order_relaxed);
      }
    }

    /// Ends the connection once: closes (FIN) or resets both sockets, reports, drops the own reference.
    void end(ConnectionEnd why, bool graceful) noexcept {
      if (phase_.exchange(Phase::done, std::memory_order_relaxed) == Phase::done) return;
      record_.end = why;
      pumps_[0].discard();
      pumps_[1].discard();
      if (graceful) {
        detail::close_socket(downstream_);
        detail::close_socket(upstream_);
      } else {
        detail::abort_socket(upstream_);
        detail::abort_socket(downstream_);
      }
      record_.duration = Clock::now() - started_;
      proxy_.finished(*this);
      release();
    }

    Proxy& proxy_;
    asio::ip::tcp::socket downstream_;
    asio::ip::tcp::socket upstream_;
    Pump pumps_[2];
    ConnectionRecord record_;
    Clock::time_point started_;
    Clock::time_point connect_deadline_;
    std::atomic<Clock::rep> last_activity_{0};
    std::atomic<std::uint32_t> refs_{1};
    std::atomic<Phase> phase_{Phase::connecting};
    std::atomic<bool> cut_{false};
    bool timed_out_ = false;
    bool finished_[2] = {false, false};
    bool waiting_[2][2] = {{false, false}, {false, false}};
  };

  static Clock::duration sweep_period(const ProxyOptions& options) {
    auto shortest = options.connect_timeout;
    if (options.idle_timeout > Clock::duration::zero()) shortest = std::min(shortest, options.idle_timeout);
    return std::clamp<Clock::duration>(shortest / 8, std::chrono::milliseconds(5), std::chrono::seconds(1));
  }

  void spawn(AcceptedConnection&& connection) {
    Session* session = nullptr;
    try {
      session = new Session(*this, std::move(connection));
    } catch (const std::exception&) {
      detail::abort_socket(connection.socket);  // out of memory: this client is reset, nobody else
      return;
    }
    active_.fetch_add(1, std::memory_order_acq_rel);
    detail::bump(stats_->downstream_cx_total);
    detail::bump(stats_->downstream_cx_active);
    sessions_.add(*session);
    if (stopping_.load() && drain_passed_.load()) session->cut_.store(true, std::memory_order_relaxed);
    asio::dispatch(session->executor(), [session] { session->start(); });
  }

  /// On the session's executor, exactly once: account, log, forget.
  void finished(Session& session) noexcept {
    const ConnectionRecord& record = session.record_;
    account(record);
    if (options_.on_complete) {
      try {
        options_.on_complete(record);
      } catch (...) {
        // An access log that throws must not take the proxy down.
      }
    }
    sessions_.remove(session);
    detail::bump(stats_->downstream_cx_destroy);
    stats_->downstream_cx_active.fetch_sub(1, std::memory_order_relaxed);
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
      session.cut_.store(true, std::memory_order_relaxed);
      asio::post(session.executor(), [self = typename Session::Ref(&session)] { self->cut(); });
    });
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
    sweep_timer_.cancel();
    if (on_stopped_) std::exchange(on_stopped_, nullptr)();
  }

  AcceptorT acceptor_;
  Policy policy_;
  Relay relay_;
  ProxyOptions options_;
  std::shared_ptr<ProxyStats> stats_;
  asio::strand<asio::any_io_executor> control_;
  asio::steady_timer drain_timer_;
  asio::steady_timer sweep_timer_;
  Clock::duration sweep_period_;
  detail::SessionRegistry sessions_;
  std::atomic<std::size_t> active_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> drain_passed_{false};
  bool stopped_ = false;  // control strand only
  std::function<void()> on_stopped_;  // control strand only
};

}  // namespace podproxy
