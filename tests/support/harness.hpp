// A proxy running on its own thread (optionally inside a network namespace), and blocking test peers.
#pragma once

#include "test_support.hpp"

#include <podproxy/podproxy.hpp>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace podproxy::test {

using asio::ip::tcp;
using namespace std::chrono_literals;

/// Deterministic test data: the bytes of stream `seed`, position by position.
inline std::uint8_t pattern_byte(std::uint64_t seed, std::uint64_t position) {
  std::uint64_t x = (position / 8 + 1) * 0x9E3779B97F4A7C15ULL ^ (seed * 0xBF58476D1CE4E5B9ULL);
  x ^= x >> 31;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 29;
  return static_cast<std::uint8_t>(x >> ((position % 8) * 8));
}

/// A running FNV-1a checksum.
struct Checksum {
  std::uint64_t value = 0xcbf29ce484222325ULL;
  std::uint64_t bytes = 0;
  void add(const std::uint8_t* data, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) value = (value ^ data[i]) * 0x100000001b3ULL;
    bytes += n;
  }
  friend bool operator==(const Checksum&, const Checksum&) = default;
};

inline Checksum expected_checksum(std::uint64_t seed, std::uint64_t size) {
  Checksum c;
  std::vector<std::uint8_t> block(64 * 1024);
  for (std::uint64_t done = 0; done < size;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), size - done));
    for (std::size_t i = 0; i < n; ++i) block[i] = pattern_byte(seed, done + i);
    c.add(block.data(), n);
    done += n;
  }
  return c;
}

/// Blocking socket timeouts for the test's own recv(2) and send(2) calls. Asio's synchronous reads and
/// writes do not honour them (after the EAGAIN a timeout returns, Asio polls with no limit): read with
/// read_some_within and read_within, which do.
inline void set_timeouts(tcp::socket& socket, std::chrono::seconds limit = 60s) {
  timeval tv{static_cast<time_t>(limit.count()), 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/// Like `socket.read_some(buffer, ec)`, but a read that finds nothing for `limit` fails with timed_out
/// instead of hanging the test: a stalled transfer is reported, with what had arrived.
inline std::size_t read_some_within(tcp::socket& socket, asio::mutable_buffer buffer, std::error_code& ec,
                                    std::chrono::milliseconds limit = 60s) {
  ec.clear();
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const ssize_t n = ::recv(socket.native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n > 0) return static_cast<std::size_t>(n);
    if (n == 0) {
      ec = asio::error::eof;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec.assign(errno, asio::error::get_system_category());
      return 0;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{socket.native_handle(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) {
      ec = asio::error::timed_out;
      return 0;
    }
  }
}

/// Like `asio::read(socket, buffer)` (throws on error or EOF before the buffer is full), bounded as
/// read_some_within is for each read.
inline void read_within(tcp::socket& socket, asio::mutable_buffer buffer, std::chrono::milliseconds limit = 60s) {
  auto* data = static_cast<std::uint8_t*>(buffer.data());
  for (std::size_t done = 0; done < buffer.size();) {
    std::error_code ec;
    done += read_some_within(socket, asio::buffer(data + done, buffer.size() - done), ec, limit);
    if (ec) throw std::system_error(ec, "read_within");
  }
}

/// Sends `size` bytes of pattern `seed`; throws on error.
inline void send_pattern(tcp::socket& socket, std::uint64_t seed, std::uint64_t size) {
  std::vector<std::uint8_t> block(256 * 1024);
  for (std::uint64_t done = 0; done < size;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), size - done));
    for (std::size_t i = 0; i < n; ++i) block[i] = pattern_byte(seed, done + i);
    asio::write(socket, asio::buffer(block.data(), n));
    done += n;
  }
}

/// Reads until EOF; returns the checksum. Throws on any error but EOF (a reset included).
inline Checksum receive_all(tcp::socket& socket) {
  Checksum c;
  std::vector<std::uint8_t> block(256 * 1024);
  for (;;) {
    std::error_code ec;
    const auto n = read_some_within(socket, asio::buffer(block), ec);
    if (ec == asio::error::eof) return c;
    if (ec) throw std::system_error(ec, "receive_all");
    c.add(block.data(), n);
  }
}

/// Reads until EOF or error; returns what was read and the error (eof counts as none).
inline std::pair<std::string, std::error_code> read_to_end(tcp::socket& socket) {
  std::string text;
  char block[4096];
  for (;;) {
    std::error_code ec;
    const auto n = read_some_within(socket, asio::buffer(block), ec);
    text.append(block, n);
    if (ec == asio::error::eof) return {text, {}};
    if (ec) return {text, ec};
  }
}

/// Resets the connection (SO_LINGER {1, 0} then close).
inline void abort_connection(tcp::socket& socket) {
  socket.set_option(asio::socket_base::linger(true, 0));
  socket.close();
}

/// An upstream in another process: accepts one connection on `listener` and writes `block` to it over and
/// over, never reading, until it is killed (by kill() or the destructor). Another process, as upstreams
/// are, so that the kernel, not a clean close, ends its socket: bytes sent to it and unread at its death
/// make that end a RST.
class WritingProcess {
 public:
  WritingProcess(tcp::acceptor& listener, const std::vector<std::uint8_t>& block) : pid_(::fork()) {
    if (pid_ < 0) throw std::system_error(errno, std::system_category(), "fork");
    if (pid_ == 0) {
      // Only async-signal-safe calls here (the parent has threads).
      const int fd = ::accept(listener.native_handle(), nullptr, nullptr);
      if (fd < 0) ::_exit(1);
      for (;;) {
        if (::write(fd, block.data(), block.size()) < 0) ::_exit(2);
      }
    }
  }
  WritingProcess(const WritingProcess&) = delete;
  WritingProcess& operator=(const WritingProcess&) = delete;
  ~WritingProcess() { kill(); }

  /// SIGKILL, and waits until it is gone.
  void kill() noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_;
};

/// Reads a stream that repeats `block` (as WritingProcess sends it) and checks every byte.
class RepeatedBlockReader {
 public:
  explicit RepeatedBlockReader(const std::vector<std::uint8_t>& block) : block_(block), in_(256 * 1024) {}

  /// Reads until `until` bytes arrived in all, or an error (EOF included) that it returns; a read that
  /// waits longer than `limit` fails with timed_out.
  std::error_code read(tcp::socket& socket, std::uint64_t until, std::chrono::milliseconds limit = 60s) {
    std::error_code ec;
    while (received_ < until) {
      const auto n = read_some_within(socket, asio::buffer(in_), ec, limit);
      for (std::size_t i = 0; i < n; ++i) intact_ = intact_ && in_[i] == block_[(received_ + i) % block_.size()];
      received_ += n;
      if (ec) break;
    }
    return ec;
  }

  [[nodiscard]] std::uint64_t received() const noexcept { return received_; }
  /// Whether every byte read so far was the right one.
  [[nodiscard]] bool intact() const noexcept { return intact_; }

 private:
  const std::vector<std::uint8_t>& block_;
  std::vector<std::uint8_t> in_;
  std::uint64_t received_ = 0;
  bool intact_ = true;
};

/// A blocking listener whose connections are served one thread each by `serve(socket)`.
class Upstream {
 public:
  template <class Serve>
  Upstream(tcp::endpoint where, Serve serve) : acceptor_(io_, where) {
    endpoint_ = acceptor_.local_endpoint();
    thread_ = std::thread([this, serve] {
      for (;;) {
        tcp::socket socket(io_);
        std::error_code ec;
        acceptor_.accept(socket, ec);
        if (ec) return;
        set_timeouts(socket);
        std::lock_guard lock(mutex_);
        if (closing_) return;
        workers_.emplace_back([serve, s = std::move(socket)]() mutable {
          try {
            serve(s);
          } catch (const std::exception&) {
            // A peer the test resets on purpose.
          }
        });
      }
    });
  }
  Upstream(const Upstream&) = delete;
  ~Upstream() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes the blocking accept
    thread_.join();
    for (auto& worker : workers_) worker.join();
  }
  [[nodiscard]] tcp::endpoint endpoint() const { return endpoint_; }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  tcp::endpoint endpoint_;
  std::thread thread_;
  std::mutex mutex_;
  bool closing_ = false;
  std::vector<std::thread> workers_;
};

/// A port on `address` where nothing listens (bound, then closed).
inline tcp::endpoint closed_port(asio::ip::address address = asio::ip::address_v4::loopback()) {
  asio::io_context io;
  tcp::acceptor probe(io, {address, 0});
  const auto endpoint = probe.local_endpoint();
  probe.close();
  return endpoint;
}

/// A Proxy running on its own thread; built on that thread, so inside `netns` when one is given (every
/// socket the proxy opens, listener and upstreams, then lives in that namespace).
template <class Policy, class Relay, class Source = RedirectedOrLocal>
class RunningProxy {
 public:
  using ProxyType = Proxy<Acceptor<Source>, Policy, Relay>;

  RunningProxy(Policy policy, Relay relay, ProxyOptions options = {}, AcceptorOptions acceptor = {},
               const NetNs* netns = nullptr, int threads = 1) {
    std::promise<void> ready;
    auto started = ready.get_future();
    runners_.emplace_back([&, netns] {
      try {
        if (netns) enter(*netns);
        proxy_.emplace(Acceptor<Source>(io_.get_executor(), acceptor), std::move(policy), std::move(relay),
                       std::move(options));
        proxy_->start();
        ready.set_value();
      } catch (...) {
        ready.set_exception(std::current_exception());
        return;
      }
      io_.run();
    });
    try {
      started.get();
    } catch (...) {
      runners_.back().join();
      throw;
    }
    for (int i = 1; i < threads; ++i) {
      runners_.emplace_back([this, netns] {
        if (netns) enter(*netns);
        io_.run();
      });
    }
  }
  RunningProxy(const RunningProxy&) = delete;

  ~RunningProxy() { stop(0s); }

  /// Stops the proxy (drain as given) and waits for its threads; returns whether on_stopped was called.
  bool stop(std::chrono::steady_clock::duration drain, std::chrono::seconds limit = 30s) {
    if (stopped_) return true;
    stopped_ = true;
    std::promise<void> done;
    auto finished = done.get_future();
    proxy_->stop(drain, [&done] { done.set_value(); });
    const bool ok = finished.wait_for(drain + limit) == std::future_status::ready;
    if (!ok) {
      io_.stop();
      UNSCOPED_INFO("proxy did not stop within the drain and " << limit.count() << " s: " << proxy_->active()
                    << " connection(s) still active");
    }
    for (auto& t : runners_) t.join();
    return ok;
  }

  [[nodiscard]] ProxyType& proxy() { return *proxy_; }
  [[nodiscard]] tcp::endpoint endpoint() const { return proxy_->local_endpoint(); }
  [[nodiscard]] const ProxyStats& stats() const { return proxy_->stats(); }

  static void enter(const NetNs& netns) {
    const int fd = ::open(("/var/run/netns/" + netns.name()).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) throw std::runtime_error("setns " + netns.name());
    ::close(fd);
  }

 private:
  asio::io_context io_;
  std::optional<ProxyType> proxy_;
  std::vector<std::thread> runners_;
  bool stopped_ = false;
};

/// Collects ConnectionRecords from ProxyOptions::on_complete (any thread) for the test to inspect.
class Records {
 public:
  std::function<void(const ConnectionRecord&)> callback() {
    return [this](const ConnectionRecord& r) {
      std::lock_guard lock(mutex_);
      records_.push_back(r);
      changed_.notify_all();
    };
  }
  /// Waits until `n` records arrived (or `limit` passed); returns a copy.
  std::vector<ConnectionRecord> wait(std::size_t n, std::chrono::seconds limit = 30s) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, limit, [&] { return records_.size() >= n; });
    return records_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<ConnectionRecord> records_;
};

/// Connects a blocking client socket (in the calling thread's namespace).
inline tcp::socket connect_client(asio::io_context& io, const tcp::endpoint& to) {
  tcp::socket socket(io);
  socket.connect(to);
  set_timeouts(socket);
  return socket;
}

/// Waits (bounded) until `predicate()` holds.
template <class Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

/// Waits (bounded) until a writer's byte count is above zero and has not moved for 200 ms: every buffer
/// on its way is full.
inline bool stalls(const std::atomic<std::uint64_t>& written, std::chrono::milliseconds limit = 20s) {
  std::uint64_t last = 0;
  return eventually([&] {
    const auto now = written.load();
    const bool still = now > 0 && now == last;
    last = now;
    std::this_thread::sleep_for(200ms);
    return still;
  }, limit);
}

/// Answers `pong\n` to whoever connects, and remembers the peer address it saw.
struct PongServer {
  std::mutex mutex;
  std::vector<tcp::endpoint> peers;
  Upstream server;

  explicit PongServer(tcp::endpoint where)
      : server(where, [this](tcp::socket& s) {
          {
            std::lock_guard lock(mutex);
            peers.push_back(s.remote_endpoint());
          }
          read_to_end(s);
          asio::write(s, asio::buffer(std::string_view("pong\n")));
          s.shutdown(tcp::socket::shutdown_send);
        }) {}

  tcp::endpoint last_peer() {
    std::lock_guard lock(mutex);
    return peers.empty() ? tcp::endpoint{} : peers.back();
  }
};

/// `echo ping | nc HOST PORT`: what the client printed, or the error it got.
inline std::string ping(const tcp::endpoint& to, std::optional<asio::ip::address> from = std::nullopt) {
  asio::io_context io;
  tcp::socket client(io);
  std::error_code ec;
  if (from) {
    client.open(to.protocol());
    client.bind({*from, 0});
  }
  client.connect(to, ec);
  if (ec) return "connect: " + ec.message();
  set_timeouts(client, 20s);
  // A reset that arrives before the request is reported by the write, as ncat reports it.
  asio::write(client, asio::buffer(std::string_view("ping\n")), ec);
  if (ec) return "error: " + ec.message();
  // A reset that arrives between the write and the shutdown closes the socket: the shutdown fails with
  // ENOTCONN and the reset stays pending on the socket, so the read below reports it.
  client.shutdown(tcp::socket::shutdown_send, ec);
  const auto [text, error] = read_to_end(client);
  return error ? "error: " + error.message() : text;
}

/// A proxy to one upstream, whatever the client dialed.
template <class Relay>
using FixedProxy = RunningProxy<FixedPolicy, Relay>;

inline FixedPolicy to(const tcp::endpoint& upstream) { return FixedPolicy{{.endpoint = upstream}}; }

/// An upstream that echoes whatever it reads until the client closes.
inline void echo(tcp::socket& s) {
  char block[4096];
  for (;;) {
    std::error_code ec;
    const auto n = read_some_within(s, asio::buffer(block), ec);
    if (ec) return;
    asio::write(s, asio::buffer(block, n), ec);
    if (ec) return;
  }
}

}  // namespace podproxy::test
