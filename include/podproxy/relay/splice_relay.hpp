// SpliceRelay: zero-copy relay, socket -> pipe -> socket with splice(2), pipes borrowed while data flows.
#pragma once

#include <podproxy/concepts/relay.hpp>
#include <podproxy/relay/detail/duplex.hpp>
#include <podproxy/relay/pipe_pool.hpp>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/this_coro.hpp>

#include <fcntl.h>
#include <signal.h>

#include <cerrno>
#include <cstddef>
#include <memory>
#include <optional>

namespace podproxy {

struct SpliceRelayOptions {
  /// Bytes of the copy buffer a direction allocates when it has to copy (the pool was exhausted, or the
  /// sockets do not support splice). Allocated on first use, once per connection direction.
  std::size_t copy_buffer_size = 16 * 1024;
};

/// Moves bytes without copying them through user space: splice(source socket -> pipe) then
/// splice(pipe -> sink socket), driven by Asio readiness waits. Each direction borrows a pipe from the
/// pool when data arrives and gives it back once the pipe is empty and the source has nothing more, so an
/// idle connection holds no pipe. When the pool lends none, or splice(2) is not supported for these
/// sockets (decided before the first byte enters a pipe), the direction copies through a small buffer.
///
/// Memory per connection is bounded by two pipes (or two copy buffers) whatever the peers do: a pump never
/// reads more until what it holds was written.
///
/// splice(2) into a socket whose peer has gone raises SIGPIPE and takes no MSG_NOSIGNAL, so constructing a
/// SpliceRelay sets SIGPIPE to SIG_IGN if it is at its default disposition (a handler you installed is
/// left alone).
class SpliceRelay {
 public:
  explicit SpliceRelay(std::shared_ptr<PipePool> pool = std::make_shared<PipePool>(),
                       SpliceRelayOptions options = {})
      : pool_(std::move(pool)), options_(options) {
    ignore_sigpipe();
  }

  [[nodiscard]] const std::shared_ptr<PipePool>& pool() const noexcept { return pool_; }

  asio::awaitable<RelayResult> relay(asio::ip::tcp::socket& downstream, asio::ip::tcp::socket& upstream,
                                     const RelayContext& context) const {
    detail::Duplex duplex(downstream, upstream, context);
    co_return co_await duplex.run([&](detail::Direction d) { return pump(duplex, d); });
  }

 private:
  static void ignore_sigpipe() noexcept {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      ::signal(SIGPIPE, SIG_IGN);
    }
  }

  asio::awaitable<detail::PumpEnd> pump(detail::Duplex& duplex, detail::Direction d) const {
    using detail::PumpEnd;
    co_await asio::this_coro::throw_if_cancelled(false);
    auto& source = duplex.source(d);
    auto& sink = duplex.sink(d);
    PipePool::Lease lease;
    bool can_splice = pool_ != nullptr;
    bool spliced_any = false;
    std::unique_ptr<std::byte[]> copy_buffer;

    for (;;) {
      if (!lease) {
        // Nothing in flight: hold no pipe while waiting for the source.
        if (!co_await duplex.wait(source, asio::socket_base::wait_read)) co_return PumpEnd::stopped;
        if (can_splice) lease = pool_->acquire();
        if (!lease) {
          if (!copy_buffer) copy_buffer = std::make_unique<std::byte[]>(options_.copy_buffer_size);
          if (auto end = co_await detail::copy_once(duplex, d, copy_buffer.get(), options_.copy_buffer_size)) {
            co_return *end;
          }
          continue;
        }
      }

      const auto& pipe = lease.pipe();
      const ssize_t n = ::splice(source.native_handle(), nullptr, pipe.write_end(), nullptr, pipe.capacity(),
                                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0) {
        const int error = errno;
        if (error == EINTR) continue;
        if (error == EAGAIN) {  // the source is drained (the pipe is always emptied below)
          lease.give_back();
          continue;
        }
        if ((error == EINVAL || error == ENOSYS) && !spliced_any) {
          // This pair cannot splice: copy from now on. Nothing entered the pipe, so nothing is lost.
          can_splice = false;
          lease.give_back();
          continue;
        }
        lease.discard();
        co_return duplex.source_failed(d);
      }
      if (n == 0) {  // FIN from the source
        lease.give_back();
        co_return duplex.finished(d);
      }
      spliced_any = true;

      // Empty the pipe into the sink before reading more: bounds what this direction holds.
      auto in_pipe = static_cast<std::size_t>(n);
      while (in_pipe > 0) {
        const ssize_t m = ::splice(pipe.read_end(), nullptr, sink.native_handle(), nullptr, in_pipe,
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (m > 0) {
          in_pipe -= static_cast<std::size_t>(m);
          duplex.delivered(d, static_cast<std::size_t>(m));
          continue;
        }
        const int error = m < 0 ? errno : EPIPE;
        if (error == EINTR) continue;
        if (error == EAGAIN) {
          if (!co_await duplex.wait(sink, asio::socket_base::wait_write)) {
            lease.discard();
            co_return PumpEnd::stopped;
          }
          continue;
        }
        lease.discard();
        co_return duplex.sink_failed(d);
      }
    }
  }

  std::shared_ptr<PipePool> pool_;
  SpliceRelayOptions options_;
};
static_assert(concepts::Relay<SpliceRelay>);

}  // namespace podproxy
