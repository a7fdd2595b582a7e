// concepts::Relay: how a proxy moves bytes between the client and the upstream once both are connected.
#pragma once

#include <podproxy/relay/pump.hpp>

#include <concepts>

namespace podproxy::concepts {

/// A relay is a small value shared by every connection of a proxy (`make_pump` is const and may be
/// called from several threads at once). For each direction of each connection the proxy makes one
/// `pump_type`, and calls `transfer(source_fd, sink_fd)` when the pump's last step said the source is
/// readable or the sink writable (and once, speculatively, when the relay starts). Both descriptors are
/// connected, non-blocking stream sockets that the proxy owns: a pump never closes, shuts down or waits
/// on them. It moves what it can without blocking and returns a PumpStep:
/// - `want_read` only when the source said EAGAIN and the pump holds no byte: readiness is edge-triggered,
///   so a pump that stops after a short read may wait for an edge that never comes (bytes can still be
///   queued after a short read, with no event for them), and an idle direction holds nothing pooled;
/// - `want_write` when it holds bytes the sink would not take (memory stays bounded by what it holds);
/// - `yield` after its budget, so one busy connection cannot starve the others on its thread;
/// - `fin`, `source_failed`, `sink_failed` end the direction: the proxy half-closes or resets.
/// `discard()` is called when the connection is aborted: drop whatever is held (the bytes are lost).
/// The proxy serialises calls on one connection; a pump needs no lock of its own. A pump may also offer
/// `transfer(source_fd, sink_fd, TransferHint)`; the proxy then calls that one, telling it when the
/// source's FIN is already queued (both relays here use it to send the last bytes with the FIN).
template <class R>
concept Relay = std::copy_constructible<R> && std::movable<typename R::pump_type> &&
    requires(const R& relay, typename R::pump_type& pump, int fd) {
      { relay.make_pump() } -> std::same_as<typename R::pump_type>;
      { pump.transfer(fd, fd) } -> std::same_as<PumpStep>;
      { pump.discard() } noexcept;
    };

}  // namespace podproxy::concepts
