// Session: one proxied connection, from the policy's answer to its access-log record.
#pragma once

#include <podproxy/concepts/relay.hpp>
#include <podproxy/concepts/upstream_policy.hpp>
#include <podproxy/connection_record.hpp>
#include <podproxy/downstream.hpp>
#include <podproxy/native_socket.hpp>
#include <podproxy/proxy_options.hpp>
#include <podproxy/proxy_protocol.hpp>
#include <podproxy/relay/pump.hpp>
#include <podproxy/stats.hpp>
#include <podproxy/upstream_target.hpp>
#include <podproxy/detail/event_poller.hpp>
#include <podproxy/detail/session_registry.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/error.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

namespace podproxy::detail {

/// The proxy's own endpoints, for the loop guard: its listener and ProxyOptions::own_endpoints.
class SelfEndpoints {
 public:
  SelfEndpoints(asio::ip::tcp::endpoint listener, std::vector<asio::ip::tcp::endpoint> others)
      : listener_(listener), others_(std::move(others)) {}

  /// Whether `target` is one of them. An unspecified listener address matches loopback, unspecified, and
  /// the address the connection arrived on.
  [[nodiscard]] bool contains(const asio::ip::tcp::endpoint& target, const Downstream& downstream) const {
    if (matches(listener_, target, downstream)) return true;
    for (const auto& own : others_) {
      if (matches(own, target, downstream)) return true;
    }
    return false;
  }

 private:
  static bool matches(const asio::ip::tcp::endpoint& self, const asio::ip::tcp::endpoint& target,
                      const Downstream& downstream) {
    if (target.port() != self.port()) return false;
    const auto& a = target.address();
    if (!self.address().is_unspecified()) return a == self.address();
    return a.is_loopback() || a.is_unspecified() || a == downstream.local.address() ||
           (a.is_v4() && downstream.local.address().is_v6() &&
            downstream.local.address().to_v6() == asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4()));
  }

  asio::ip::tcp::endpoint listener_;
  std::vector<asio::ip::tcp::endpoint> others_;
};

/// Told once per session that has ended, on the session's executor, with its final record.
class SessionOwner {
 public:
  virtual void finished(RegistryHook& session, const ConnectionRecord& record) noexcept = 0;

 protected:
  SessionOwner() = default;
  SessionOwner(const SessionOwner&) = default;
  SessionOwner& operator=(const SessionOwner&) = default;
  ~SessionOwner() = default;
};

/// What a session needs of the proxy that accepted it, handed over instead of the proxy itself. Lives as
/// long as the proxy; every session keeps a reference.
template <class Policy, class Relay>
struct SessionContext {
  const Policy& policy;
  const Relay& relay;
  const ProxyOptions& options;
  ProxyStats& stats;
  const SelfEndpoints& self;
  SessionOwner& owner;
};

/// Counts a finished connection: the one place where a connection's end reaches the counters.
inline void account(ProxyStats& stats, const ConnectionRecord& record) noexcept {
  switch (record.end) {
    case ConnectionEnd::completed: break;
    case ConnectionEnd::refused_by_policy: bump(stats.downstream_cx_refused); break;
    case ConnectionEnd::loop_refused:
      bump(stats.downstream_cx_refused);
      bump(stats.downstream_cx_loop);
      break;
    case ConnectionEnd::loopback_refused:
      bump(stats.downstream_cx_refused);
      bump(stats.downstream_cx_loopback_refused);
      break;
    case ConnectionEnd::upstream_connect_timeout:
      bump(stats.upstream_cx_connect_timeout);
      [[fallthrough]];
    case ConnectionEnd::upstream_connect_failed: bump(stats.upstream_cx_connect_fail); break;
    case ConnectionEnd::downstream_reset: bump(stats.downstream_cx_reset); break;
    case ConnectionEnd::upstream_reset: bump(stats.upstream_cx_reset); break;
    case ConnectionEnd::idle_timeout: bump(stats.idle_timeout); break;
    case ConnectionEnd::drained: bump(stats.downstream_cx_drain_close); break;
    case ConnectionEnd::resource_exhausted: bump(stats.downstream_cx_overflow); break;
    case ConnectionEnd::bad_proxy_header: bump(stats.downstream_cx_proxy_proto_error); break;
    case ConnectionEnd::proxy_header_timeout: bump(stats.downstream_pre_cx_timeout); break;
  }
  bump(stats.downstream_cx_destroy);
  stats.downstream_cx_active.fetch_sub(1, std::memory_order_relaxed);
}

/// Opens the upstream socket (non-blocking, TCP_NODELAY) with the mark, transparency and source bind that
/// `target` asks for.
inline std::error_code open_upstream(NativeSocket& upstream, const UpstreamTarget& target,
                                     std::optional<std::uint32_t> mark) {
  const bool v6 = target.endpoint.address().is_v6();
  upstream = NativeSocket(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!upstream.is_open()) return {errno, asio::error::get_system_category()};
  const int fd = upstream.native_handle();
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (mark) {
    const int value = static_cast<int>(*mark);
    if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &value, sizeof value) != 0) return {errno, std::system_category()};
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

/// One connection: the client's socket and the upstream's (a Side each), a pump each way, and what the
/// access log will say. Lives on the heap from accept to the last completion
/// handler; every handler that may still run holds a reference (Ref), and the session holds one of its
/// own until it has ended. Runs on its poller's executor; both sockets are in that poller's epoll set,
/// registered once (tag 0 the client's, 1 the upstream's).
template <concepts::UpstreamPolicy Policy, concepts::Relay Relay>
class Session final : public RegistryHook, public PollTarget {
 public:
  using Clock = std::chrono::steady_clock;
  using Context = SessionContext<Policy, Relay>;

  Session(const Context& context, EventPoller& poller, NativeSocket client, const Downstream& downstream)
      : PollTarget(&Session::events_for),
        context_(context),
        poller_(poller),
        client_{std::move(client)},
        to_upstream_(context.relay.make_pump()),
        to_client_(context.relay.make_pump()),
        record_{.downstream = downstream, .start = std::chrono::system_clock::now()},
        started_(Clock::now()),
        phase_(context.options.accept_proxy_protocol != ProxyProtocolAccept::off ? Phase::reading_header
                                                                                 : Phase::connecting) {}

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  [[nodiscard]] const asio::any_io_executor& executor() const noexcept { return poller_.get_executor(); }

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

  /// On the session's executor: read the client's PROXY header if one is expected; ask the policy, open
  /// the upstream socket, connect.
  void start() {
    guard([&] { begin(); });
  }

  /// Whether the sweep should look closer (any thread; reads only atomics and constants).
  [[nodiscard]] bool due(Clock::time_point now, Clock::duration idle) const noexcept {
    switch (phase_.load(std::memory_order_relaxed)) {
      case Phase::reading_header: return now - started_ >= context_.options.proxy_protocol_timeout;
      case Phase::connecting:
      case Phase::sending_header: return now - started_ >= context_.options.connect_timeout;
      case Phase::relaying:
        return idle > Clock::duration::zero() &&
               now - Clock::time_point(Clock::duration(last_activity_.load(std::memory_order_relaxed))) >= idle;
      case Phase::done: return false;
    }
    return false;
  }

  /// Posted by the sweep: the PROXY header or connect timeout passed, or the connection may be idle.
  void expire() noexcept {
    const auto phase = phase_.load(std::memory_order_relaxed);
    if (phase == Phase::reading_header) {
      record_.error = asio::error::timed_out;
      end(ConnectionEnd::proxy_header_timeout, /*graceful=*/false);
    } else if (phase == Phase::connecting || phase == Phase::sending_header) {
      record_.error = asio::error::timed_out;
      end(ConnectionEnd::upstream_connect_timeout, /*graceful=*/false);
    } else if (phase == Phase::relaying && due(Clock::now(), context_.options.idle_timeout)) {
      end(ConnectionEnd::idle_timeout, /*graceful=*/true);
    }
  }

  /// Any thread: the drain deadline has passed; a session that has not connected yet will not.
  void mark_cut() noexcept { cut_.store(true, std::memory_order_relaxed); }

  /// Posted at the drain deadline: reset whatever is left.
  void cut() noexcept {
    mark_cut();
    end(ConnectionEnd::drained, /*graceful=*/false);
  }

  /// On the acceptor's executor, for a session whose start could not be queued (out of memory): nothing
  /// else holds it or runs it yet, so it ends here, counted and logged like any other.
  void fail_to_start() noexcept { end(ConnectionEnd::resource_exhausted, /*graceful=*/false); }

  /// From the proxy's destructor, with no thread running the io_context: reset without reporting.
  void abandon() noexcept {
    if (phase_.exchange(Phase::done, std::memory_order_relaxed) == Phase::done) return;
    to_upstream_.discard();
    to_client_.discard();
    detach();
    upstream_.socket.abort();
    client_.socket.abort();
    release();
  }

  /// From the poller: the socket tagged `which` (0 the client's, 1 the upstream's) reported `events`.
  static void events_for(PollTarget& target, int which, std::uint32_t events) noexcept {
    auto& session = static_cast<Session&>(target);
    const Ref self(&session);  // ending the connection must not free it under this call
    session.guard([&] { session.handle(which == 0 ? session.client_ : session.upstream_, events); });
  }

 private:
  ~Session() = default;

  static constexpr std::uint32_t no_slot = ~std::uint32_t{0};
  /// reading_header (only with ProxyOptions::accept_proxy_protocol), connecting, sending_header (only with
  /// ProxyOptions::send_proxy_protocol), relaying, done.
  enum class Phase : std::uint8_t { reading_header, connecting, sending_header, relaying, done };
  /// A step that moved this much is part of a bulk transfer (HAProxy's buffer size).
  static constexpr std::size_t bulk_step = 16 * 1024;

  // What is known of a socket since its last EAGAIN (edge-triggered readiness).
  static constexpr std::uint8_t readable = 1;
  static constexpr std::uint8_t writable = 2;
  static constexpr std::uint8_t peer_closed = 4;  // EPOLLRDHUP: a FIN is queued behind the bytes
  // What a direction waits for.
  enum class Wait : std::uint8_t { read, write, posted, finished };

  using Pump = typename Relay::pump_type;

  /// One end of the connection: its socket, what is known of it, and the state of the direction whose
  /// source it is (kept here, in bytes the socket's padding has room for, rather than beside the pump,
  /// whose padding would cost every connection more).
  struct Side {
    NativeSocket socket;
    std::uint8_t ready = 0;  // readable, writable, peer_closed
    Wait wait = Wait::read;  // what the direction leaving it waits for
    bool muted = false;      // it reports only its output while that direction waits for its sink
    std::uint8_t retries = 0;  // times the direction leaving it was asked again for a pending pump
  };

  /// One way the bytes go: a view made on the stack when needed, naming the source, the sink and the pump.
  struct Direction {
    Side& source;
    Side& sink;
    Pump& pump;
    /// The end (downstream_reset or upstream_reset) when the socket on each end fails.
    ConnectionEnd source_reset;
    ConnectionEnd sink_reset;
  };

  [[nodiscard]] Direction leaving(Side& source) noexcept {
    if (&source == &client_) {
      return {client_, upstream_, to_upstream_, ConnectionEnd::downstream_reset, ConnectionEnd::upstream_reset};
    }
    return {upstream_, client_, to_client_, ConnectionEnd::upstream_reset, ConnectionEnd::downstream_reset};
  }
  [[nodiscard]] bool from_client(const Direction& d) const noexcept { return &d.source == &client_; }
  [[nodiscard]] int tag(const Side& s) const noexcept { return &s == &client_ ? 0 : 1; }

  void hold() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  template <class F>
  void guard(F&& f) noexcept {
    try {
      f();
    } catch (const std::exception&) {
      // Only resource exhaustion (bad_alloc) can get here: this connection is lost, no other is.
      end(ConnectionEnd::resource_exhausted, /*graceful=*/false);
    }
  }

  void begin() {
    const Phase phase = phase_.load(std::memory_order_relaxed);
    if (phase == Phase::connecting) return dial();
    if (phase != Phase::reading_header) return;  // cut before it began
    // Nothing is dialled before the header is read: its events drive read_header().
    slot_ = poller_.attach(this);
    if (auto ec = poller_.watch(client_.socket.native_handle(), slot_, tag(client_))) {
      record_.error = ec;
      return end(ConnectionEnd::downstream_reset, false);
    }
  }

  /// The client's PROXY header, peeked at (so that no byte of the stream behind it is taken) until it is
  /// whole, then consumed exactly. A header that cannot become valid resets the client at once.
  void read_header() {
    unsigned char buffer[proxy_header_max_length];
    const int fd = client_.socket.native_handle();
    ssize_t n = 0;
    do {
      n = ::recv(fd, buffer, sizeof buffer, MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        client_.ready &= static_cast<std::uint8_t>(~readable);
        return;
      }
      record_.error = {errno, asio::error::get_system_category()};
      return end(ConnectionEnd::downstream_reset, false);
    }
    // A client that closes without a byte (a balancer's TCP health check) has nothing to relay.
    if (n == 0) return end(ConnectionEnd::completed, /*graceful=*/true);
    const auto accept = context_.options.accept_proxy_protocol;
    const ProxyParseResult parsed = parse_proxy_header({buffer, static_cast<std::size_t>(n)}, accept);
    if (parsed.status == ProxyParseStatus::incomplete) {
      // Part of a header and then a FIN: no more bytes can complete it.
      if (client_.ready & peer_closed) return end(ConnectionEnd::bad_proxy_header, false);
      client_.ready &= static_cast<std::uint8_t>(~readable);  // the next segment raises a new edge
      return;
    }
    if (parsed.status == ProxyParseStatus::invalid) return end(ConnectionEnd::bad_proxy_header, false);
    const ProxyHeader& header = parsed.header;
    if (::recv(fd, buffer, header.length, 0) != static_cast<ssize_t>(header.length)) {
      record_.error = {errno, asio::error::get_system_category()};
      return end(ConnectionEnd::downstream_reset, false);
    }
    if (header.source) {
      record_.proxied_by = record_.downstream.peer;
      record_.downstream.peer = unmapped(*header.source);
    }
    if (header.destination && context_.options.trust_proxy_protocol_destination) {
      record_.downstream.original_destination = unmapped(*header.destination);
    }
    phase_.store(Phase::connecting, std::memory_order_relaxed);
    dial();
  }

  void dial() {
    // The loopback guard judges the socket's own peer: a header cannot claim its way onto loopback.
    Downstream seen = record_.downstream;
    if (record_.proxied_by) seen.peer = *record_.proxied_by;
    if (context_.options.loopback_guard && crosses_into_loopback(seen)) {
      return end(ConnectionEnd::loopback_refused, false);
    }
    record_.upstream = context_.policy.upstream_for(record_.downstream);
    if (!record_.upstream) return end(ConnectionEnd::refused_by_policy, false);
    const UpstreamTarget& target = *record_.upstream;
    if (context_.self.contains(target.endpoint, record_.downstream)) return end(ConnectionEnd::loop_refused, false);
    bump(context_.stats.upstream_cx_total);
    if (auto ec = open_upstream(upstream_.socket, target, context_.options.upstream_mark)) {
      return fail_connect(ec);
    }
    if (cut_.load(std::memory_order_relaxed)) return end(ConnectionEnd::drained, false);
    const bool client_watched = slot_ != no_slot;  // since read_header()
    if (!client_watched) slot_ = poller_.attach(this);
    // A non-blocking connect(2); the upstream's first event (writable, or an error) completes it.
    const int rc = ::connect(upstream_.socket.native_handle(), target.endpoint.data(),
                             static_cast<socklen_t>(target.endpoint.size()));
    if (rc != 0 && errno != EINPROGRESS && errno != EINTR) {
      return fail_connect({errno, asio::error::get_system_category()});
    }
    if (auto ec = poller_.watch(upstream_.socket.native_handle(), slot_, tag(upstream_))) return fail_connect(ec);
    // The client's bytes (already queued, likely) are reported as soon as its socket is watched; they
    // are read once the upstream is connected.
    if (!client_watched) {
      if (auto ec = poller_.watch(client_.socket.native_handle(), slot_, tag(client_))) {
        record_.error = ec;
        return end(ConnectionEnd::downstream_reset, false);
      }
    }
    if (rc == 0) connected({});
  }

  void fail_connect(std::error_code ec) noexcept {
    record_.error = ec;
    end(ConnectionEnd::upstream_connect_failed, false);
  }

  void handle(Side& side, std::uint32_t events) {
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) side.ready |= readable;
    if (events & (EPOLLRDHUP | EPOLLHUP)) side.ready |= peer_closed;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) side.ready |= writable;
    switch (phase_.load(std::memory_order_relaxed)) {
      case Phase::reading_header:
        if (&side == &client_ && (side.ready & readable)) read_header();
        return;
      case Phase::sending_header:
        if (&side == &upstream_ && (side.ready & writable)) send_header();
        return;
      case Phase::connecting:
        if (&side == &upstream_ && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
          // Writable without an error or a hang-up: connected (a failed connect raises EPOLLERR).
          if (!(events & (EPOLLERR | EPOLLHUP))) return connected({});
          connect_finished();
        }
        return;
      case Phase::relaying: break;
      case Phase::done: return;
    }
    // The side is the source of one direction and the sink of the other.
    if (side.wait == Wait::read && (side.ready & readable)) run(leaving(side));
    Side& other = &side == &client_ ? upstream_ : client_;
    if (other.wait == Wait::write && (side.ready & writable)) run(leaving(other));
  }

  void connect_finished() {
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(upstream_.socket.native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
    if (error == 0) return connected({});
    connected(std::error_code(error, asio::error::get_system_category()));
  }

  void connected(std::error_code ec) {
    if (phase_.load(std::memory_order_relaxed) != Phase::connecting) return;
    if (cut_.load(std::memory_order_relaxed)) return end(ConnectionEnd::drained, false);
    if (ec) return fail_connect(ec);
    if (context_.options.on_complete) {  // only an access log reads it: spare the syscall otherwise
      asio::ip::tcp::endpoint local;
      socklen_t length = static_cast<socklen_t>(local.capacity());
      if (::getsockname(upstream_.socket.native_handle(), local.data(), &length) == 0) {
        local.resize(length);
        record_.upstream_local = local;
      }
    }
    record_.upstream_connected = true;
    if (context_.options.on_connected) {
      try {
        context_.options.on_connected(record_);
      } catch (...) {
        // Metrics that throw must not take the connection down.
      }
    }
    // Both sockets are non-blocking (accept4 and socket were asked so): pumps call splice(2) and recv(2)
    // themselves, and SPLICE_F_NONBLOCK does not cover the socket side.
    const int one = 1;
    (void)::setsockopt(client_.socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (context_.options.send_proxy_protocol) {
      phase_.store(Phase::sending_header, std::memory_order_relaxed);
      return send_header();
    }
    start_relay();
  }

  /// Writes the PROXY header to the upstream, from where the last try left off; an upstream that takes
  /// only part of it (a full send buffer) is waited for like any sink, without blocking the poller. The
  /// header is written again into a buffer on the stack each time (it depends only on the record), so a
  /// session holds one byte for it, not the header.
  void send_header() {
    unsigned char buffer[proxy_header_max_written];
    const std::size_t length = write_proxy_header(*context_.options.send_proxy_protocol, record_.downstream.peer,
                                                  record_.downstream.original_destination, buffer);
    while (header_sent_ < length) {
      const ssize_t n = ::send(upstream_.socket.native_handle(), buffer + header_sent_, length - header_sent_,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          upstream_.ready &= static_cast<std::uint8_t>(~writable);
          return;
        }
        record_.error = {errno, asio::error::get_system_category()};
        return end(ConnectionEnd::upstream_reset, false);
      }
      header_sent_ = static_cast<std::uint8_t>(header_sent_ + n);
    }
    start_relay();
  }

  void start_relay() {
    touch();
    phase_.store(Phase::relaying, std::memory_order_relaxed);
    // Whatever either side sent meanwhile was reported already; a server that speaks first is too.
    if (client_.ready & readable) run(leaving(client_));
    if (upstream_.ready & readable) run(leaving(upstream_));
  }

  [[nodiscard]] bool relaying() const noexcept { return phase_.load(std::memory_order_relaxed) == Phase::relaying; }

  void touch() noexcept { last_activity_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed); }

  /// Moves what direction `d` can move now, then notes what it waits for. Readiness is edge-triggered: a
  /// direction waits for its source only after its pump saw EAGAIN there (concepts::Relay), so no byte or
  /// FIN is left queued without an edge to come.
  void run(const Direction& d) {
    if (!relaying()) return;  // ended (by the other direction's run in the same handler, say)
    if (d.source.muted && !unmute_source(d)) return;
    for (;;) {
      if (!relaying() || d.source.wait == Wait::finished) return;
      const PumpStep step = transfer(d);
      if (step.delivered > 0) delivered(d, step.delivered);
      switch (step.status) {
        case PumpStatus::want_read:
          d.source.ready &= static_cast<std::uint8_t>(~readable);
          d.source.wait = Wait::read;
          return;
        case PumpStatus::want_write:
          d.sink.ready &= static_cast<std::uint8_t>(~writable);
          d.source.wait = Wait::write;
          mute_source(d);
          return;
        case PumpStatus::yield:
          d.source.wait = Wait::posted;
          poller_.post([self = Ref(this), source = &d.source] { self->resume(*source); });
          return;
        case PumpStatus::pending: return retry_later(d);
        case PumpStatus::fin:
          d.source.wait = Wait::finished;
          // The last FIN: closing sends it (nothing is left unread on either socket), no shutdown first.
          if (d.sink.wait == Wait::finished) return end(ConnectionEnd::completed, /*graceful=*/true);
          d.sink.socket.shutdown_send();
          return;
        case PumpStatus::source_failed: return end(d.source_reset, false);
        case PumpStatus::sink_failed: return end(d.sink_reset, false);
      }
    }
  }

  /// A direction that yielded or waits for the kernel runs again (unless it ended meanwhile).
  void resume(Side& source) noexcept {
    guard([&] {
      if (source.wait != Wait::posted) return;
      source.wait = Wait::read;
      run(leaving(source));
    });
  }

  /// The pump waits for work the kernel does without an event to tell (concepts::Relay): ask again at
  /// once the first time (it is often done by then), then after a delay that doubles up to a
  /// millisecond, so a FIN waits little and a long wait (a slow reader) costs few wake-ups.
  void retry_later(const Direction& d) {
    d.source.wait = Wait::posted;
    if (d.source.retries == 0) {
      ++d.source.retries;
      poller_.post([self = Ref(this), source = &d.source] { self->resume(*source); });
      return;
    }
    const auto delay = std::chrono::microseconds(std::min(1000, 25 << std::min<int>(d.source.retries, 6)));
    if (d.source.retries < 100) ++d.source.retries;
    auto timer = std::make_unique<asio::steady_timer>(executor(), delay);
    auto& waiting = *timer;
    waiting.async_wait([self = Ref(this), source = &d.source, timer = std::move(timer)](std::error_code) {
      self->resume(*source);
    });
  }

  /// Direction `d` waits for its sink: what arrives at its source meanwhile would wake the thread for
  /// nothing (the pump reads no more until the sink takes some), so the source reports only its output
  /// (the other direction's sink) until then. If that fails, the events just keep coming.
  void mute_source(const Direction& d) noexcept {
    if (d.source.muted) return;
    d.source.muted =
        !poller_.rewatch(d.source.socket.native_handle(), slot_, tag(d.source), /*input=*/false, /*output=*/true);
  }

  /// Before direction `d` reads again. The change reports what queued meanwhile (a FIN too). False, and
  /// the connection ended, if the source cannot be watched again.
  bool unmute_source(const Direction& d) {
    const std::error_code ec =
        poller_.rewatch(d.source.socket.native_handle(), slot_, tag(d.source), /*input=*/true, /*output=*/true);
    if (ec) {
      record_.error = ec;
      end(d.source_reset, false);
      return false;
    }
    d.source.muted = false;
    return true;
  }

  PumpStep transfer(const Direction& d) {
    const int from = d.source.socket.native_handle();
    const int to = d.sink.socket.native_handle();
    if constexpr (requires(Pump& pump) {
                    { pump.transfer(from, to, TransferHint{}) } -> std::same_as<PumpStep>;
                  }) {
      return d.pump.transfer(from, to, TransferHint{.source_ending = (d.source.ready & peer_closed) != 0});
    } else {
      return d.pump.transfer(from, to);
    }
  }

  void delivered(const Direction& d, std::size_t n) noexcept {
    touch();
    if (n >= bulk_step) poller_.no_pause();  // a bulk stream's reader waits for more: no batch pause
    if (from_client(d)) {
      record_.bytes_from_downstream += n;
      context_.stats.downstream_cx_rx_bytes_total.fetch_add(n, std::memory_order_relaxed);
    } else {
      record_.bytes_from_upstream += n;
      context_.stats.downstream_cx_tx_bytes_total.fetch_add(n, std::memory_order_relaxed);
    }
  }

  void detach() noexcept {
    if (slot_ != no_slot) poller_.detach(std::exchange(slot_, no_slot));
  }

  /// Ends the connection once: closes (FIN) or resets both sockets, tells the owner, drops the session's
  /// own reference.
  void end(ConnectionEnd why, bool graceful) noexcept {
    if (phase_.exchange(Phase::done, std::memory_order_relaxed) == Phase::done) return;
    record_.end = why;
    to_upstream_.discard();
    to_client_.discard();
    detach();
    if (graceful) {
      client_.socket.close();
      upstream_.socket.close();
    } else {
      upstream_.socket.abort();
      client_.socket.abort();
    }
    record_.duration = Clock::now() - started_;
    context_.owner.finished(*this, record_);
    release();
  }

  const Context& context_;
  EventPoller& poller_;
  Side client_;
  Side upstream_;
  Pump to_upstream_;  // moves the client's bytes to the upstream
  Pump to_client_;    // and the upstream's back
  ConnectionRecord record_;
  Clock::time_point started_;
  std::atomic<Clock::rep> last_activity_{0};
  std::atomic<std::uint32_t> refs_{1};
  std::uint32_t slot_ = no_slot;
  std::atomic<Phase> phase_;
  std::uint8_t header_sent_ = 0;  // bytes of the PROXY header the upstream has taken
  std::atomic<bool> cut_{false};
};

}  // namespace podproxy::detail
