// PumpStep: what one direction of a relay reports after moving bytes, and what it needs next.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace podproxy {

/// What a pump needs before it can make progress again, or how its direction ended.
enum class PumpStatus : std::uint8_t {
  want_read,      ///< the source said EAGAIN; the pump holds no byte (and no pipe or buffer)
  want_write,     ///< the sink takes nothing more now; the pump holds bytes for it
  yield,          ///< the pump moved its budget; call it again after other connections had a turn
  pending,        ///< the kernel still moves bytes the pump handed it, and no readiness event will say
                  ///< when it is done: call it again shortly (SockmapRelay before it reports a FIN)
  fin,            ///< the source sent a FIN and every byte before it was delivered
  source_failed,  ///< reading the source failed (a RST, or any other receive error)
  sink_failed,    ///< writing the sink failed (EPIPE, ECONNRESET)
};

[[nodiscard]] constexpr std::string_view to_string(PumpStatus status) noexcept {
  switch (status) {
    case PumpStatus::want_read: return "want_read";
    case PumpStatus::want_write: return "want_write";
    case PumpStatus::yield: return "yield";
    case PumpStatus::pending: return "pending";
    case PumpStatus::fin: return "fin";
    case PumpStatus::source_failed: return "source_failed";
    case PumpStatus::sink_failed: return "sink_failed";
  }
  return "unknown";
}

/// The outcome of one `transfer` call: bytes written to the sink during the call, and what comes next.
struct PumpStep {
  std::size_t delivered = 0;
  PumpStatus status = PumpStatus::want_read;
};

/// What the proxy knows that a pump cannot see; pumps may take it as transfer's third argument.
struct TransferHint {
  /// The source's FIN is already queued behind its bytes (epoll reported EPOLLRDHUP): what a read that
  /// drains the source returns is the last of it, so it may be written with MSG_MORE, to leave in one
  /// segment with the FIN that the proxy sends right after (HAProxy does the same).
  bool source_ending = false;
};

}  // namespace podproxy
