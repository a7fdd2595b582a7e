// NativeSocket: a socket descriptor the proxy owns outright, with the closes a proxy needs.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <utility>

namespace podproxy {

/// Owns one socket descriptor that no Asio service knows (the acceptor takes connections with accept4(2),
/// the proxy registers them in its own epoll set): closed on destruction.
class NativeSocket {
 public:
  NativeSocket() noexcept = default;
  explicit NativeSocket(int fd) noexcept : fd_(fd) {}
  NativeSocket(NativeSocket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  NativeSocket& operator=(NativeSocket&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  NativeSocket(const NativeSocket&) = delete;
  NativeSocket& operator=(const NativeSocket&) = delete;
  ~NativeSocket() { close(); }

  [[nodiscard]] int native_handle() const noexcept { return fd_; }
  [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }

  /// Gives up ownership: the caller closes the descriptor.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

  /// Closes normally (a FIN, unless unread data makes the kernel send a RST).
  void close() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

  /// Closes with a RST instead of a FIN (SO_LINGER {1, 0}), so the peer sees ECONNRESET: how a proxy
  /// tells a client that its upstream failed or reset, deterministically and whatever is left unread.
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

}  // namespace podproxy
