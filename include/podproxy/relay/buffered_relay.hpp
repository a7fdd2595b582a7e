// BufferedRelay: the portable relay, read into a bounded buffer and write it out, per direction.
#pragma once

#include <podproxy/concepts/relay.hpp>
#include <podproxy/relay/detail/duplex.hpp>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/this_coro.hpp>

#include <cstddef>
#include <memory>

namespace podproxy {

struct BufferedRelayOptions {
  /// Bytes of buffer per direction (Linkerd uses 64 KiB). Allocated once per direction when its first
  /// byte arrives and kept for the connection's life: a connection that never carried a byte holds none,
  /// one that did holds up to 2 x buffer_size while idle. That is the portable relay's price for never
  /// allocating per read; SpliceRelay is the one whose idle connections hold no buffer.
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
    if (!co_await duplex.wait(duplex.source(d), asio::socket_base::wait_read)) co_return detail::PumpEnd::stopped;
    const auto buffer = std::make_unique<std::byte[]>(options_.buffer_size);
    for (;;) {
      if (auto end = co_await detail::copy_once(duplex, d, buffer.get(), options_.buffer_size)) co_return *end;
    }
  }

  BufferedRelayOptions options_;
};
static_assert(concepts::Relay<BufferedRelay>);

}  // namespace podproxy
