// Acceptor: a TCP listener whose accept loop hands each connection over with its original destination.
#pragma once

#include <podproxy/concepts/destination_source.hpp>
#include <podproxy/destination/redirected_or_local.hpp>
#include <podproxy/downstream.hpp>
#include <podproxy/endpoint_text.hpp>
#include <podproxy/native_socket.hpp>

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace podproxy {

/// How to listen.
struct AcceptorOptions {
  asio::ip::tcp::endpoint endpoint{asio::ip::address_v4::loopback(), 0};
  /// SO_REUSEPORT: several acceptors (one per thread and io_context) share the port; the kernel spreads
  /// connections among them.
  bool reuse_port = false;
  /// IP_TRANSPARENT (IPV6_TRANSPARENT): accept connections TPROXY steers here for addresses that are not
  /// local. Needs CAP_NET_ADMIN.
  bool transparent = false;
  /// IPV6_V6ONLY for an IPv6 endpoint: false (the default) also accepts IPv4 clients as v4-mapped.
  bool v6_only = false;
  int backlog = asio::socket_base::max_listen_connections;
  /// How long the accept loop pauses after EMFILE, ENFILE, ENOBUFS or ENOMEM before it tries again. The
  /// pending connections wait in the kernel's backlog meanwhile.
  std::chrono::milliseconds overload_backoff{100};
  /// Whether connections must be safe on an io_context that several threads run. True: a Proxy spreads
  /// them over one event poller per hardware thread, each on a strand of its own. Set it to false when the
  /// io_context is run by exactly one thread (one io_context per thread, with reuse_port, is the fast way
  /// to use several cores): one poller on the executor itself, no strand hop per event. Wrong when false
  /// and several threads run the io_context: that is a data race.
  bool strand_per_connection = true;
  /// Connections accepted per wake-up before the loop waits again (and lets other handlers run).
  int accept_batch = 64;
};

/// A connection the acceptor accepted (non-blocking, close-on-exec), with what a policy needs to know
/// about it.
struct AcceptedConnection {
  NativeSocket socket;
  Downstream downstream;
};

/// What one `Acceptor::accept_some` call ended on.
enum class AcceptStatus : std::uint8_t {
  drained,     ///< nothing more is queued (EAGAIN): wait for the listener to turn readable
  more,        ///< the batch is full and more may be queued: call again after other work had a turn
  overloaded,  ///< out of descriptors or memory: back off (AcceptorOptions::overload_backoff), then retry
  closed,      ///< the acceptor is closed
};

/// A listening socket and its accept loop. `Source` decides how the original destination is learnt:
/// RedirectedOrLocal (SO_ORIGINAL_DST, the default, right for REDIRECT capture and harmless elsewhere)
/// or LocalAddress (TPROXY and plain listeners).
///
/// Connections are taken with accept4(2) (SOCK_NONBLOCK | SOCK_CLOEXEC), up to `accept_batch` per
/// wake-up, and handed over as NativeSockets: no Asio reactor registration that the proxy would undo, no
/// extra fcntl per connection.
///
/// Two ways to drive it: `run`, a coroutine that waits on the listener through Asio's reactor, or
/// `accept_some` whenever `native_handle()` turns readable (a Proxy watches it in its own epoll set).
///
/// Thread safety: `run`, `accept_some` and the close that `close` posts run on `get_executor()` (a strand
/// when `strand_per_connection`, else the executor itself); `close` may be called from any thread.
template <concepts::DestinationSource Source = RedirectedOrLocal>
class Acceptor {
 public:
  using executor_type = asio::any_io_executor;

  /// Opens, configures, binds and listens. Throws std::system_error naming the endpoint when any step
  /// fails (a configuration error: address in use, not permitted, not local).
  Acceptor(executor_type executor, AcceptorOptions options, Source source = {})
      : executor_(std::move(executor)),
        strand_(options.strand_per_connection ? executor_type(asio::make_strand(executor_)) : executor_),
        waiter_(strand_),
        options_(std::move(options)),
        source_(std::move(source)) {
    open();
  }

  /// Movable until `run` or `close` is first called (both refer to this object afterwards).
  Acceptor(Acceptor&&) noexcept = default;
  Acceptor& operator=(Acceptor&&) noexcept = default;

  /// The bound address (with the kernel's port when the options asked for port 0).
  [[nodiscard]] asio::ip::tcp::endpoint local_endpoint() const { return local_; }
  [[nodiscard]] const AcceptorOptions& options() const noexcept { return options_; }
  /// Where accepting runs: a strand of the executor, or (strand_per_connection false) the executor itself.
  [[nodiscard]] executor_type get_executor() const { return strand_; }
  /// The listening socket's descriptor (to watch for readability; do not close it).
  [[nodiscard]] int native_handle() const noexcept { return listener_.native_handle(); }
  /// The executor the acceptor was made with (a proxy's pollers run on it, or on strands of it).
  [[nodiscard]] const executor_type& context_executor() const noexcept { return executor_; }

  /// Accept failures from running out of descriptors or memory (each followed by a back-off).
  [[nodiscard]] std::uint64_t overloads() const noexcept { return overloads_->load(std::memory_order_relaxed); }

  /// Accepts until `close()`. Calls `on_connection(AcceptedConnection&&)` on get_executor() for each
  /// connection; the handler must not block. co_spawn it onto get_executor().
  template <class Handler>
  asio::awaitable<void> run(Handler on_connection) {
    using asio::experimental::as_tuple;
    asio::steady_timer backoff(strand_);
    for (;;) {
      const AcceptStatus status = accept_some(on_connection);
      if (status == AcceptStatus::closed) co_return;
      // After `more` or `drained` the loop waits for the listener: Asio re-arms it with EPOLL_CTL_MOD,
      // which reports it at once when connections are still queued, after queued handlers ran.
      if (status == AcceptStatus::overloaded || !open_waiter()) {
        backoff.expires_after(options_.overload_backoff);
        auto [wait_ec] = co_await backoff.async_wait(as_tuple(asio::use_awaitable));
        (void)wait_ec;
        continue;
      }
      auto [ec] = co_await waiter_.async_wait(asio::posix::descriptor_base::wait_read, as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted || !listener_.is_open()) co_return;
    }
  }

  /// Accepts what is queued now, at most `accept_batch` connections, calling
  /// `on_connection(AcceptedConnection&&)` for each; never waits. On get_executor(). Failures that concern
  /// one connection (ECONNABORTED: the client gave up while queued, EPERM from a firewall hook, ...) skip
  /// it; running out of descriptors or memory stops the batch (`overloaded`, counted in overloads()).
  template <class Handler>
  AcceptStatus accept_some(Handler&& on_connection) {
    const int batch = std::max(1, options_.accept_batch);
    for (int accepted = 0; accepted < batch;) {
      if (!listener_.is_open()) return AcceptStatus::closed;
      asio::ip::tcp::endpoint peer;  // accept4(2) fills it in: no getpeername
      auto length = static_cast<socklen_t>(peer.capacity());
      const int fd = ::accept4(listener_.native_handle(), peer.data(), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        ++accepted;
        peer.resize(length);
        if (auto connection = describe(NativeSocket(fd), peer)) on_connection(std::move(*connection));
        continue;
      }
      const int error = errno;
      if (error == EAGAIN || error == EWOULDBLOCK) return AcceptStatus::drained;
      if (error == EINTR) continue;
      if (is_overload(std::error_code(error, std::system_category()))) {
        overloads_->fetch_add(1, std::memory_order_relaxed);
        return AcceptStatus::overloaded;
      }
      ++accepted;
    }
    return AcceptStatus::more;
  }

  /// Stops accepting: the pending accept completes with operation_aborted and `run` returns. Idempotent;
  /// may be called from any thread.
  void close() {
    asio::post(strand_, [this] {
      listener_.close();
      std::error_code ignored;
      waiter_.close(ignored);  // run()'s wait ends with operation_aborted
    });
  }

  /// Whether `ec` is an accept failure from resource exhaustion (back off instead of retrying at once).
  [[nodiscard]] static bool is_overload(const std::error_code& ec) noexcept {
    // Asio reports errno values in its own system category, which does not compare equal to std::errc.
    if (ec.category() != asio::error::get_system_category() && ec.category() != std::system_category()) {
      return false;
    }
    const int value = ec.value();
    return value == EMFILE || value == ENFILE || value == ENOBUFS || value == ENOMEM;
  }

 private:
  /// run() only: Asio waits on a duplicate of the listener, so that only run()'s loop, not the listener
  /// itself, is in its reactor. False (counted as an overload) when no descriptor is left for it.
  bool open_waiter() {
    if (waiter_.is_open()) return true;
    const int duplicate = ::fcntl(listener_.native_handle(), F_DUPFD_CLOEXEC, 0);
    std::error_code ec;
    if (duplicate >= 0) waiter_.assign(duplicate, ec);
    if (duplicate >= 0 && !ec) return true;
    if (duplicate >= 0) ::close(duplicate);
    overloads_->fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  void open() {
    const auto& ep = options_.endpoint;
    const auto fail = [&](std::error_code ec, const char* what) {
      throw std::system_error(ec, std::string("listen on ") + to_text(ep) + ": " + what);
    };
    const auto fail_errno = [&](const char* what) { fail({errno, std::system_category()}, what); };
    const bool v6 = ep.address().is_v6();
    // Not an asio::ip::tcp::acceptor: Asio's reactor would register the descriptor, and report every
    // incoming connection to its epoll_wait even while a Proxy watches the listener in its own set.
    listener_ =
        NativeSocket(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!listener_.is_open()) fail_errno("socket");
    const int fd = listener_.native_handle();
    const int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) fail_errno("SO_REUSEADDR");
    if (options_.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      fail_errno("SO_REUSEPORT");
    }
    if (v6) {
      const int v6_only = options_.v6_only ? 1 : 0;
      if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6_only, sizeof v6_only) != 0) fail_errno("IPV6_V6ONLY");
    }
    if (options_.transparent) {
      const int rc = v6 ? ::setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one)
                        : ::setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
      if (rc != 0) fail_errno("IP_TRANSPARENT");
    }
    if (::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0) fail_errno("bind");
    if (::listen(fd, options_.backlog) != 0) fail_errno("listen");
    auto length = static_cast<socklen_t>(local_.capacity());
    if (::getsockname(fd, local_.data(), &length) != 0) fail_errno("getsockname");
    local_.resize(length);
    // A listener bound to one address, without IP_TRANSPARENT, only ever accepts connections to exactly
    // that address: its connections' local address is known without a getsockname(2) each.
    local_is_fixed_ = !options_.transparent && !local_.address().is_unspecified();
  }

  std::optional<AcceptedConnection> describe(NativeSocket socket, const asio::ip::tcp::endpoint& peer) {
    asio::ip::tcp::endpoint local = local_;
    if (!local_is_fixed_) {
      auto length = static_cast<socklen_t>(local.capacity());
      if (::getsockname(socket.native_handle(), local.data(), &length) != 0) return std::nullopt;  // reset
      local.resize(length);
    }
    // An IPv4 client of a dual-stack listener: its NAT entry and its addresses are IPv4 ones, so the
    // original destination is asked for with the IPv4 getsockopt and every address is handed over unmapped.
    local = unmapped(local);
    const auto original = unmapped(source_.original_destination(socket.native_handle(), local));
    return AcceptedConnection{std::move(socket), Downstream{unmapped(peer), local, original}};
  }

  executor_type executor_;
  executor_type strand_;  // a strand of executor_, or executor_ itself
  NativeSocket listener_;
  asio::posix::stream_descriptor waiter_;  // run() only: waits on a duplicate of the listener
  AcceptorOptions options_;
  Source source_;
  asio::ip::tcp::endpoint local_{};
  bool local_is_fixed_ = false;
  // Heap-held so that Acceptor stays movable.
  std::unique_ptr<std::atomic<std::uint64_t>> overloads_ = std::make_unique<std::atomic<std::uint64_t>>(0);
};

}  // namespace podproxy
