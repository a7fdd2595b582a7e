// RedirectedOrLocal: the destination source for REDIRECT capture (SO_ORIGINAL_DST, else the local address).
#pragma once

#include <podproxy/original_dst.hpp>

#include <asio/ip/tcp.hpp>

#include <system_error>

namespace podproxy {

/// Destination source for REDIRECT capture: SO_ORIGINAL_DST when netfilter rewrote the connection, the
/// accepted socket's local address otherwise (a direct connection, or TPROXY, where the local address
/// is what the client dialed).
struct RedirectedOrLocal {
  [[nodiscard]] asio::ip::tcp::endpoint original_destination(int fd, const asio::ip::tcp::endpoint& local) const {
    std::error_code ec;
    if (auto redirected = redirected_destination(fd, local, ec)) {
      return *redirected;
    }
    return local;
  }
};

}  // namespace podproxy
