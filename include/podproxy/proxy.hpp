// Proxy: an acceptor, an upstream policy and a relay, composed into a transparent TCP proxy.
#pragma once

#include <podproxy/acceptor.hpp>
#include <podproxy/concepts/relay.hpp>
#include <podproxy/concepts/upstream_policy.hpp>
#include <podproxy/connection_record.hpp>
#include <podproxy/native_socket.hpp>
#include <podproxy/detail/event_poller.hpp>
#include <podproxy/detail/session_registry.hpp>
#include <podproxy/relay/pump.hpp>
#include <podproxy/stats.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

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
  /// Refuse a connection whose original destination is a loopback address (127.0.0.0/8, ::1, or their
  /// IPv4-mapped form) when its client is not on loopback (crosses_into_loopback()), whatever the policy
  /// says. Without a proxy the kernel drops such packets arriving from the network; a REDIRECT rule in
  /// PREROUTING rewrites them before that check, so without this guard a neighbour that routes 127.0.0.0/8
  /// to the pod would reach its loopback-only services. Turn off only in a proxy meant to expose them.
  bool loopback_guard = true;
  /// Called once per finished connection, on that connection's poller (so possibly from several threads
  /// at once). Must not block.
  std::function<void(const ConnectionRecord&)> on_complete{};
  /// After a wake-up that handled events, pause this long and look again before blocking (one pause per
  /// wake-up, none when idle, none when a direction moved 16 KiB or more in one step, as bulk does): what
  /// arrives meanwhile is taken in the same batch, and the processes that sent it need not wake the
  /// proxy's thread. It costs a connection at most this much latency and buys fewer cross-CPU wake-ups
  /// under load (bench/README.md, "Batch pause"). Zero disables; at most 1 ms.
  std::chrono::microseconds batch_pause{15};
  static constexpr std::chrono::microseconds max_batch_pause = detail::EventPoller::max_pause;
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
/// Each connection is one heap object (no coroutine, no per-connection timer, no Asio socket). Both of its
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
  /// `on_stopped` (if any) once the last connection is gone. Any thread; later calls do nothing.
  void stop(std::chrono::steady_clock::duration drain, std::function<void()> on_stopped = {}) {
    if (stopping_.exchange(true)) return;
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
  static constexpr std::uint32_t no_slot = ~std::uint32_t{0};
  enum class Phase : std::uint8_t { connecting, relaying, done };

  /// One connection: the client's socket, the upstream's, a pump per direction, and what the access log
  /// will say. Lives on the heap from accept to the last completion handler; every handler that may still
  /// run holds a reference (refs_), and the session holds one of its own until it has finished. Runs on
  /// its poller's executor; both sockets are in that poller's epoll set, registered once.
  class Session final : public detail::RegistryHook, public detail::PollTarget {
   public:
    Session(Proxy& proxy, detail::EventPoller& poller, AcceptedConnection&& connection)
        : PollTarget(&Session::events_for),
          proxy_(proxy),
          poller_(poller),
          sockets_{std::move(connection.socket), NativeSocket()},
          pumps_{proxy.relay_.make_pump(), proxy.relay_.make_pump()},
          record_{.downstream = connection.downstream, .start = std::chrono::system_clock::now()},
          started_(Clock::now()),
          connect_deadline_(started_ + proxy.options_.connect_timeout) {}

    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    [[nodiscard]] const asio::any_io_executor& executor() const noexcept { return poller_.get_executor(); }

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
    void expire() noexcept {
      const auto phase = phase_.load(std::memory_order_relaxed);
      if (phase == Phase::connecting) {
        record_.error = asio::error::timed_out;
        end(ConnectionEnd::upstream_connect_timeout, /*graceful=*/false);
      } else if (phase == Phase::relaying && due(Clock::now(), proxy_.options_.idle_timeout)) {
        end(ConnectionEnd::idle_timeout, /*graceful=*/true);
      }
    }

    /// Posted at the drain deadline: reset whatever is left.
    void cut() noexcept {
      cut_.store(true, std::memory_order_relaxed);
      end(ConnectionEnd::drained, /*graceful=*/false);
    }

    /// From ~Proxy, with no thread running the io_context: reset without reporting to the proxy.
    void abandon() noexcept {
      if (phase_.exchange(Phase::done, std::memory_order_relaxed) == Phase::done) return;
      pumps_[0].discard();
      pumps_[1].discard();
      detach();
      sockets_[1].abort();
      sockets_[0].abort();
      release();
    }

    /// From the poller: socket `which` (0 the client's, 1 the upstream's) reported `events`.
    static void events_for(detail::PollTarget& target, int which, std::uint32_t events) noexcept {
      auto& session = static_cast<Session&>(target);
      const Ref self(&session);  // ending the connection must not free it under this call
      session.guard([&] { session.handle(which, events); });
    }

   private:
    ~Session() = default;
    friend class Proxy;

    /// A step that moved this much is part of a bulk transfer (HAProxy's buffer size).
    static constexpr std::size_t bulk_step = 16 * 1024;

    // What is known of a socket since its last EAGAIN (edge-triggered readiness).
    static constexpr std::uint8_t readable = 1;
    static constexpr std::uint8_t writable = 2;
    static constexpr std::uint8_t peer_closed = 4;  // EPOLLRDHUP: a FIN is queued behind the bytes
    // What a direction waits for.
    enum class Wait : std::uint8_t { read, write, posted, finished };

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
      if (phase_.load(std::memory_order_relaxed) != Phase::connecting) return;  // cut before it began
      if (proxy_.options_.loopback_guard && crosses_into_loopback(record_.downstream)) {
        return end(ConnectionEnd::loopback_refused, false);
      }
      record_.upstream = proxy_.policy_.upstream_for(record_.downstream);
      if (!record_.upstream) return end(ConnectionEnd::refused_by_policy, false);
      const UpstreamTarget& target = *record_.upstream;
      if (proxy_.is_self(target.endpoint, record_.downstream)) return end(ConnectionEnd::loop_refused, false);
      detail::bump(proxy_.stats_->upstream_cx_total);
      if (auto ec = proxy_.prepare_upstream(sockets_[1], target)) {
        record_.error = ec;
        return end(ConnectionEnd::upstream_connect_failed, false);
      }
      if (cut_.load(std::memory_order_relaxed)) return end(ConnectionEnd::drained, false);
      slot_ = poller_.attach(this);
      // A non-blocking connect(2); the upstream's first event (writable, or an error) completes it.
      const int rc = ::connect(sockets_[1].native_handle(), target.endpoint.data(),
                               static_cast<socklen_t>(target.endpoint.size()));
      if (rc != 0 && errno != EINPROGRESS && errno != EINTR) {
        record_.error.assign(errno, asio::error::get_system_category());
        return end(ConnectionEnd::upstream_connect_failed, false);
      }
      std::error_code ec = poller_.watch(sockets_[1].native_handle(), slot_, 1);
      if (ec) {
        record_.error = ec;
        return end(ConnectionEnd::upstream_connect_failed, false);
      }
      // The client's bytes (already queued, likely) are reported as soon as its socket is watched; they
      // are read once the upstream is connected.
      ec = poller_.watch(sockets_[0].native_handle(), slot_, 0);
      if (ec) {
        record_.error = ec;
        return end(ConnectionEnd::downstream_reset, false);
      }
      if (rc == 0) connected({});
    }

    void handle(int which, std::uint32_t events) {
      if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ready_[which] |= readable;
      if (events & (EPOLLRDHUP | EPOLLHUP)) ready_[which] |= peer_closed;
      if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) ready_[which] |= writable;
      switch (phase_.load(std::memory_order_relaxed)) {
        case Phase::connecting:
          if (which == 1 && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            // Writable without an error or a hang-up: connected (a failed connect raises EPOLLERR).
            if (!(events & (EPOLLERR | EPOLLHUP))) return connected({});
            connect_finished();
          }
          return;
        case Phase::relaying: break;
        case Phase::done: return;
      }
      // Socket `which` is the source of direction `which` and the sink of the other one.
      if (wait_[which] == Wait::read && (ready_[which] & readable)) run(which);
      const int other = 1 - which;
      if (wait_[other] == Wait::write && (ready_[which] & writable)) run(other);
    }

    void connect_finished() {
      int error = 0;
      socklen_t length = sizeof error;
      if (::getsockopt(sockets_[1].native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
      if (error == 0) return connected({});
      connected(std::error_code(error, asio::error::get_system_category()));
    }

    void connected(std::error_code ec) {
      if (phase_.load(std::memory_order_relaxed) != Phase::connecting) return;
      if (cut_.load(std::memory_order_relaxed)) return end(ConnectionEnd::drained, false);
      if (ec) {
        record_.error = ec;
        return end(ConnectionEnd::upstream_connect_failed, false);
      }
      if (proxy_.options_.on_complete) {  // only an access log reads it: spare the syscall otherwise
        asio::ip::tcp::endpoint local;
        socklen_t length = static_cast<socklen_t>(local.capacity());
        if (::getsockname(sockets_[1].native_handle(), local.data(), &length) == 0) {
          local.resize(length);
          record_.upstream_local = local;
        }
      }
      // Both sockets are non-blocking (accept4 and socket were asked so): pumps call splice(2) and recv(2)
      // themselves, and SPLICE_F_NONBLOCK does not cover the socket side.
      const int one = 1;
      (void)::setsockopt(sockets_[0].native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      touch();
      phase_.store(Phase::relaying, std::memory_order_relaxed);
      // Whatever either side sent meanwhile was reported already; a server that speaks first is too.
      if (ready_[0] & readable) run(0);
      if (ready_[1] & readable) run(1);
    }

    [[nodiscard]] bool relaying() const noexcept {
      return phase_.load(std::memory_order_relaxed) == Phase::relaying;
    }

    void touch() noexcept {
      last_activity_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }

    /// Moves what direction `d` (source socket d, sink socket 1 - d) can move now, then notes what it
    /// waits for. Readiness is edge-triggered: a direction waits for its source only after its pump saw
    /// EAGAIN there (concepts::Relay), so no byte or FIN is left queued without an edge to come.
    void run(int d) {
      if (!relaying()) return;  // ended (by the other direction's run in the same handler, say)
      if (muted_[d] && !unmute_source(d)) return;
      for (;;) {
        if (!relaying() || wait_[d] == Wait::finished) return;
        const PumpStep step = transfer(d);
        if (step.delivered > 0) delivered(d, step.delivered);
        switch (step.status) {
          case PumpStatus::want_read:
            ready_[d] &= static_cast<std::uint8_t>(~readable);
            wait_[d] = Wait::read;
            return;
          case PumpStatus::want_write:
            ready_[1 - d] &= static_cast<std::uint8_t>(~writable);
            wait_[d] = Wait::write;
            mute_source(d);
            return;
          case PumpStatus::yield:
            wait_[d] = Wait::posted;
            poller_.post([self = Ref(this), d] {
              self->guard([&] {
                if (self->wait_[d] != Wait::posted) return;
                self->wait_[d] = Wait::read;
                self->run(d);
              });
            });
            return;
          case PumpStatus::fin:
            wait_[d] = Wait::finished;
            // The last FIN: closing sends it (nothing is left unread on either socket), no shutdown first.
            if (wait_[1 - d] == Wait::finished) return end(ConnectionEnd::completed, /*graceful=*/true);
            sockets_[1 - d].shutdown_send();
            return;
          case PumpStatus::source_failed:
            return end(d == 0 ? ConnectionEnd::downstream_reset : ConnectionEnd::upstream_reset, false);
          case PumpStatus::sink_failed:
            return end(d == 0 ? ConnectionEnd::upstream_reset : ConnectionEnd::downstream_reset, false);
        }
      }
    }

    /// Direction `d` waits for its sink: what arrives at its source meanwhile would wake the thread for
    /// nothing (the pump reads no more until the sink takes some), so the source reports only its output
    /// (the other direction's sink) until then. If that fails, the events just keep coming.
    void mute_source(int d) noexcept {
      if (muted_[d]) return;
      muted_[d] = !poller_.rewatch(sockets_[d].native_handle(), slot_, d, /*input=*/false, /*output=*/true);
    }

    /// Before direction `d` reads again. The change reports what queued meanwhile (a FIN too). False, and
    /// the connection ended, if the source cannot be watched again.
    bool unmute_source(int d) {
      const std::error_code ec =
          poller_.rewatch(sockets_[d].native_handle(), slot_, d, /*input=*/true, /*output=*/true);
      if (ec) {
        record_.error = ec;
        end(d == 0 ? ConnectionEnd::downstream_reset : ConnectionEnd::upstream_reset, false);
        return false;
      }
      muted_[d] = false;
      return true;
    }

    PumpStep transfer(int d) {
      const int source = sockets_[d].native_handle();
      const int sink = sockets_[1 - d].native_handle();
      if constexpr (requires(Pump& pump) {
                      { pump.transfer(source, sink, TransferHint{}) } -> std::same_as<PumpStep>;
                    }) {
        return pumps_[d].transfer(source, sink, TransferHint{.source_ending = (ready_[d] & peer_closed) != 0});
      } else {
        return pumps_[d].transfer(source, sink);
      }
    }

    void delivered(int d, std::size_t n) noexcept {
      touch();
      if (n >= bulk_step) poller_.no_pause();  // a bulk stream's reader waits for more: no batch pause
      if (d == 0) {
        record_.bytes_from_downstream += n;
        proxy_.stats_->downstream_cx_rx_bytes_total.fetch_add(n, std::memory_order_relaxed);
      } else {
        record_.bytes_from_upstream += n;
        proxy_.stats_->downstream_cx_tx_bytes_total.fetch_add(n, std::memory_order_relaxed);
      }
    }

    void detach() noexcept {
      if (slot_ != no_slot) poller_.detach(std::exchange(slot_, no_slot));
    }

    /// Ends the connection once: closes (FIN) or resets both sockets, reports, drops the own reference.
    void end(ConnectionEnd why, bool graceful) noexcept {
      if (phase_.exchange(Phase::done, std::memory_order_relaxed) == Phase::done) return;
      record_.end = why;
      pumps_[0].discard();
      pumps_[1].discard();
      detach();
      if (graceful) {
        sockets_[0].close();
        sockets_[1].close();
      } else {
        sockets_[1].abort();
        sockets_[0].abort();
      }
      record_.duration = Clock::now() - started_;
      proxy_.finished(*this);
      release();
    }

    Proxy& proxy_;
    detail::EventPoller& poller_;
    NativeSocket sockets_[2];  // 0: the client's, 1: the upstream's
    Pump pumps_[2];              // 0: client to upstream, 1: upstream to client
    ConnectionRecord record_;
    Clock::time_point started_;
    Clock::time_point connect_deadline_;
    std::atomic<Clock::rep> last_activity_{0};
    std::atomic<std::uint32_t> refs_{1};
    std::uint32_t slot_ = no_slot;
    std::atomic<Phase> phase_{Phase::connecting};
    std::atomic<bool> cut_{false};
    std::uint8_t ready_[2] = {0, 0};
    Wait wait_[2] = {Wait::read, Wait::read};
    bool muted_[2] = {false, false};  // socket d reports only its output (mute_source)
  };

  static Clock::duration sweep_period(const ProxyOptions& options) {
    auto shortest = options.connect_timeout;
    if (options.idle_timeout > Clock::duration::zero()) shortest = std::min(shortest, options.idle_timeout);
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
      session = new Session(*this, poller, std::move(connection));
    } catch (const std::exception&) {
      connection.socket.abort();  // out of memory: this client is reset, nobody else
      return;
    }
    active_.fetch_add(1, std::memory_order_acq_rel);
    detail::bump(stats_->downstream_cx_total);
    detail::bump(stats_->downstream_cx_active);
    sessions_.add(*session);
    if (stopping_.load() && drain_passed_.load()) session->cut_.store(true, std::memory_order_relaxed);
    try {
      asio::dispatch(session->executor(), [session] { session->start(); });
    } catch (const std::exception&) {
      // Out of memory queueing its start (a strand of another poller). Nothing holds it or runs it yet, so
      // it ends here: the client is reset, and it is counted and logged like any other, not left
      // registered until the connect-timeout sweep.
      session->end(ConnectionEnd::downstream_reset, /*graceful=*/false);
    }
  }

  /// Exactly once, on the session's executor (or the acceptor's, for one whose start could not be queued):
  /// account, log, forget.
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

  /// Opens the upstream socket (non-blocking, TCP_NODELAY) with the mark, transparency and source bind the
  /// target asks for.
  std::error_code prepare_upstream(NativeSocket& upstream, const UpstreamTarget& target) const {
    const bool v6 = target.endpoint.address().is_v6();
    upstream = NativeSocket(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!upstream.is_open()) return {errno, asio::error::get_system_category()};
    const int fd = upstream.native_handle();
    const int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
      const asio::ip::tcp::endpoint bind_to(source, 0);
      if (::bind(fd, bind_to.data(), static_cast<socklen_t>(bind_to.size())) != 0) {
        return {errno, asio::error::get_system_category()};
      }
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
      case ConnectionEnd::loopback_refused:
        detail::bump(stats_->downstream_cx_refused);
        detail::bump(stats_->downstream_cx_loopback_refused);
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
