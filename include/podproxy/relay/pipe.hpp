// Pipe: an owned pipe(2) pair sized with F_SETPIPE_SZ, the kernel buffer splice(2) moves pages through.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <system_error>
#include <utility>

namespace podproxy {

/// An owned, non-blocking pipe. Move-only; closes both ends on destruction.
class Pipe {
 public:
  Pipe() = default;

  /// Creates a pipe and asks for `requested_size` bytes of capacity (0 keeps the kernel's default).
  /// The kernel may grant less (fs.pipe-max-size, fs.pipe-user-pages-soft for unprivileged users):
  /// `capacity()` says what was granted. Throws std::system_error when no pipe can be created.
  static Pipe create(std::size_t requested_size) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
      throw std::system_error(errno, std::system_category(), "pipe2");
    }
    Pipe pipe(fds[0], fds[1]);
    if (requested_size > 0) {
      (void)::fcntl(pipe.write_, F_SETPIPE_SZ, static_cast<int>(requested_size));  // checked just below
    }
    const int granted = ::fcntl(pipe.write_, F_GETPIPE_SZ);
    pipe.capacity_ = granted > 0 ? static_cast<std::size_t>(granted) : 0;
    return pipe;
  }

  Pipe(Pipe&& other) noexcept
      : read_(std::exchange(other.read_, -1)),
        write_(std::exchange(other.write_, -1)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  Pipe& operator=(Pipe&& other) noexcept {
    if (this != &other) {
      close();
      read_ = std::exchange(other.read_, -1);
      write_ = std::exchange(other.write_, -1);
      capacity_ = std::exchange(other.capacity_, 0);
    }
    return *this;
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  ~Pipe() { close(); }

  [[nodiscard]] int read_end() const noexcept { return read_; }
  [[nodiscard]] int write_end() const noexcept { return write_; }
  /// Capacity in bytes as the kernel granted it (F_GETPIPE_SZ).
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] bool valid() const noexcept { return read_ >= 0; }

 private:
  Pipe(int read_end, int write_end) noexcept : read_(read_end), write_(write_end) {}

  void close() noexcept {
    if (read_ >= 0) ::close(read_);
    if (write_ >= 0) ::close(write_);
    read_ = write_ = -1;
  }

  int read_ = -1;
  int write_ = -1;
  std::size_t capacity_ = 0;
};

}  // namespace podproxy
