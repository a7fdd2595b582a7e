// concepts::Relay: how a proxy moves bytes between the client and the upstream once both are connected.
#pragma once

#include <podproxy/relay/relay_result.hpp>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <concepts>

namespace podproxy::concepts {

/// A relay moves bytes both ways between two connected sockets until the connection is over, propagating
/// half-close (FIN -> shutdown(SHUT_WR)) and resets, and closes both sockets before it returns. It is a
/// small value type shared by every connection of a proxy: `relay` is const and may run on several
/// threads at once. Both sockets' executor is the connection's strand; the relay runs there.
template <class R>
concept Relay = std::copy_constructible<R> &&
    requires(const R& relay, asio::ip::tcp::socket& downstream, asio::ip::tcp::socket& upstream,
             const RelayContext& context) {
      { relay.relay(downstream, upstream, context) } -> std::same_as<asio::awaitable<RelayResult>>;
    };

}  // namespace podproxy::concepts
