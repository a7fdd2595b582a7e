// Socket plumbing shared by the proxy and the relays: abortive close, half-close.
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/socket_base.hpp>

#include <system_error>

namespace podproxy::detail {

/// Closes with a RST instead of a FIN (SO_LINGER {1, 0}), so the peer sees ECONNRESET: how a proxy
/// tells a client that its upstream failed or reset, deterministically and whatever is left unread.
inline void abort_socket(asio::ip::tcp::socket& socket) noexcept {
  if (!socket.is_open()) return;
  std::error_code ignored;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
}

/// Closes normally (a FIN, unless unread data makes the kernel send a RST).
inline void close_socket(asio::ip::tcp::socket& socket) noexcept {
  if (!socket.is_open()) return;
  std::error_code ignored;
  socket.close(ignored);
}

/// Half-close: no more data will be sent (a FIN), while receiving goes on.
inline void shutdown_send(asio::ip::tcp::socket& socket) noexcept {
  std::error_code ignored;
  socket.shutdown(asio::socket_base::shutdown_send, ignored);
}

}  // namespace podproxy::detail
