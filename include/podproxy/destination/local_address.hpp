// LocalAddress: the destination source for TPROXY capture and plain listeners (the accepted socket's address).
#pragma once

#include <asio/ip/tcp.hpp>

namespace podproxy {

/// Destination source for TPROXY capture and plain listeners: the accepted socket's local address.
/// Saves the getsockopt of RedirectedOrLocal where no NAT rule can apply.
struct LocalAddress {
  [[nodiscard]] asio::ip::tcp::endpoint original_destination(int /*fd*/, const asio::ip::tcp::endpoint& local) const {
    return local;
  }
};

}  // namespace podproxy
