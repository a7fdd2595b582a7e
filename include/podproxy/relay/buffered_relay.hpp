// BufferedRelay: the portable relay, recv into a bounded buffer and send it out, per direction.
#pragma once

#include <podproxy/concepts/relay.hpp>
#include <podproxy/relay/detail/copy_pump.hpp>
#include <podproxy/relay/pump.hpp>

#include <cstddef>

namespace podproxy {

struct BufferedRelayOptions {
  /// Bytes of buffer per direction (Linkerd uses 64 KiB). Borrowed from a per-thread cache when bytes
  /// arrive and returned once they are written out: an idle connection holds none, a connection whose
  /// reader is slow holds at most one per direction.
  std::size_t buffer_size = 64 * 1024;
  /// Bytes one direction moves before it lets other connections on its thread have a turn.
  std::size_t budget = 1024 * 1024;
};

/// Copies through one buffer per direction with recv(2) and send(2): works for any pair of stream
/// sockets. A direction never reads more until its buffer was written out, so a slow reader bounds memory
/// at two buffers per connection.
class BufferedRelay {
 public:
  using pump_type = detail::CopyPump;

  explicit BufferedRelay(BufferedRelayOptions options = {}) : options_(options) {}

  [[nodiscard]] const BufferedRelayOptions& options() const noexcept { return options_; }
  [[nodiscard]] pump_type make_pump() const noexcept { return {options_.buffer_size, options_.budget}; }

 private:
  BufferedRelayOptions options_;
};
static_assert(concepts::Relay<BufferedRelay>);

}  // namespace podproxy
