// What the acceptor learns about an accepted connection: the facts every upstream policy decides from.
#pragma once

#include <asio/ip/tcp.hpp>

namespace podproxy {

/// `endpoint` with a v4-mapped IPv6 address (`::ffff:10.0.0.5`) turned into the IPv4 address it stands for;
/// any other endpoint unchanged. A dual-stack listener (`::` without IPV6_V6ONLY) sees its IPv4 clients
/// that way, and a policy must see them as what they are, IPv4, to choose IPv4 addresses to dial from and to.
[[nodiscard]] inline asio::ip::tcp::endpoint unmapped(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (!address.is_v6() || !address.to_v6().is_v4_mapped()) return endpoint;
  return {asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()), endpoint.port()};
}

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

}  // namespace podproxy
