// What the acceptor learns about an accepted connection: the facts every upstream policy decides from.
#pragma once

#include <podproxy/address.hpp>

#include <asio/ip/tcp.hpp>

namespace podproxy {

/// The downstream (client) side of one accepted connection. Its addresses are never v4-mapped (see
/// `unmapped`): an IPv4 client is described with IPv4 addresses whichever family the listener has.
struct Downstream {
  /// The client's address as this host sees it (under REDIRECT and TPROXY alike, the real client).
  asio::ip::tcp::endpoint peer;
  /// The accepted socket's local address: the proxy's listener address (REDIRECT) or, under TPROXY, the
  /// address the client dialed.
  asio::ip::tcp::endpoint local;
  /// Where the client meant to go: SO_ORIGINAL_DST for a REDIRECTed connection, `local` otherwise.
  asio::ip::tcp::endpoint original_destination;
};

/// Whether a client that is not on this host's loopback asks for a loopback destination. The kernel drops
/// such packets arriving from the network (martian destinations) unless a NAT or TPROXY rule rewrites them
/// first, so a proxy that delivered them would make a loopback-only service reachable from outside.
[[nodiscard]] inline bool crosses_into_loopback(const Downstream& downstream) {
  return is_loopback(downstream.original_destination.address()) && !is_loopback(downstream.peer.address());
}

}  // namespace podproxy
