// concepts::DestinationSource: how an acceptor learns a connection's original destination.
#pragma once

#include <asio/ip/tcp.hpp>

#include <concepts>

namespace podproxy::concepts {

/// Given an accepted socket's descriptor and its local address, names the address the client dialed. Models:
/// RedirectedOrLocal (SO_ORIGINAL_DST, for REDIRECT capture) and LocalAddress (TPROXY, plain listeners).
template <class S>
concept DestinationSource = std::copy_constructible<S> &&
    requires(const S& source, int fd, const asio::ip::tcp::endpoint& local) {
      { source.original_destination(fd, local) } -> std::same_as<asio::ip::tcp::endpoint>;
    };

}  // namespace podproxy::concepts
