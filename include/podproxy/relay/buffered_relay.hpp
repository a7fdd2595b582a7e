// BufferedRelay: the portable relay, read into a bounded buffer and write it out, per direction.
#pragma once

#include <podproxy/concepts/relay.hpp>
#include <podproxy/relay/detail/duplex.hpp>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/this_coro.hpp>

#include <algorithm>
#include <cstddef>
#include <memory>

namespace podproxy {

struct BufferedRelayOptions {
  /// Bytes of buffer per direction (Linkerd uses 64 KiB). Allocated when bytes arrive and freed once the
  /// source has nothing more to read, so an idle connection holds none.
  std::size_t buffer_size = 64 * 1024;
};

/// Copies through one buffer per direction with Asio's reads and writes: works wherever Asio does. A
/// direction never reads more until its buffer was written out, so a slow reader bounds memory at two
/// buffers per connection.
class BufferedRelay {
 public:
  explicit BufferedRelay(BufferedRelayOptions options = {}) : options_(options) {}

  asio::awaitable<RelayResult> relay(asio::ip::tcp::socket& downstream, asio::ip::tcp::socket& upstream,
                                     const RelayContext& context) const {
    detail::Duplex duplex(downstream, upstream, context);
    co_return co_await duplex.run([&](detail::Direction d) { return pump(duplex, d); });
  }

 private:
  asio::awaitable<detail::PumpEnd> pump(detail::Duplex& duplex, detail::Direction d) const {
    co_await asio::this_coro::throw_if_cancelled(false);
    auto& source = duplex.source(d);
    std::unique_ptr<std::byte[]> buffer;
    std::size_t size = 0;
    for (;;) {
      if (!buffer) {
        // Nothing in flight: hold no buffer while waiting for the source.
        if (!co_await duplex.wait(source, asio::socket_base::wait_read)) co_return detail::PumpEnd::stopped;
        size = size_for(waiting(source));
        buffer = std::make_unique<std::byte[]>(size);
      }
      if (auto end = co_await detail::copy_once(duplex, d, buffer.get(), size)) co_return *end;
      // Drained: free the buffer before waiting, or every connection that ever carried a byte would keep
      // 2 x buffer_size while idle (bench/: 144 KB per idle connection). More waiting than fits: grow, up
      // to buffer_size, for bulk transfers.
      const std::size_t more = waiting(source);
      if (more == 0) {
        buffer.reset();
      } else if (more > size && size < options_.buffer_size) {
        size = size_for(more);
        buffer = std::make_unique<std::byte[]>(size);
      }
    }
  }

  static std::size_t waiting(asio::ip::tcp::socket& socket) noexcept {
    std::error_code ec;
    const std::size_t n = socket.available(ec);
    return ec ? 0 : n;
  }
  /// A buffer for `waiting` bytes, in 4 KiB steps, at most buffer_size: a small request gets a small
  /// allocation, which the allocator recycles without touching fresh pages (a 64 KiB buffer per request
  /// cost 4x the CPU per keep-alive request, bench/compare).
  [[nodiscard]] std::size_t size_for(std::size_t waiting) const noexcept {
    constexpr std::size_t step = 4096;
    const std::size_t rounded = (std::max<std::size_t>(waiting, 1) + step - 1) / step * step;
    return std::min(rounded, options_.buffer_size);
  }

  BufferedRelayOptions options_;
};
static_assert(concepts::Relay<BufferedRelay>);

}  // namespace podproxy
