// Socket plumbing shared by the proxy and the relays: an owned descriptor, abortive close, half-close.
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/socket_base.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <system_error>
#include <utility>

namespace podproxy::detail {

/// Closes with a RST instead of a FIN (SO_LINGER {1, 0}), so the peer sees ECONNRESET: how a proxy
/// tells a client that its upstream failed or reset, deterministically and whatever is left unread.
inline void abort_socket(asio::ip::tcp::socket& socket) noexcept {
  if (!socket.is_open()) return;
  std::error_code ignored;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
}

/// A socket descriptor the proxy owns outright (no Asio service knows it): closed on destruction.
class Socket {
 public:
  Socket() noexcept = default;
  explicit Socket(int fd) noexcept : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { close(); }

  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }

  /// Closes normally (a FIN, unless unread data makes the kernel send a RST).
  void close() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

  /// Closes with a RST (SO_LINGER {1, 0}).
  void abort() noexcept {
    if (fd_ < 0) return;
    const ::linger reset{1, 0};
    (void)::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close();
  }

  /// Half-close: no more data will be sent (a FIN), while receiving goes on.
  void shutdown_send() noexcept {
    if (fd_ >= 0) (void)::shutdown(fd_, SHUT_WR);
  }

 private:
  int fd_ = -1;
};

}  // namespace podproxy::detail
