// What the acceptor learns about an accepted connection: the facts every upstream policy decides from.
#pragma once

#include <asio/ip/tcp.hpp>

namespace podproxy {

/// The downstream (client) side of one accepted connection.
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
