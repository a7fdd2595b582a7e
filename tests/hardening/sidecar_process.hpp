// Helpers of the hardening tests: descriptor counts, an async upstream driven by its first byte, and
// podproxy-sidecar run as a child process inside a test namespace.
#pragma once

#include "harness.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

#include <dirent.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <string>
#include <vector>

extern char** environ;

namespace podproxy::test {

/// Descriptors this process holds now.
inline std::size_t open_descriptors() {
  std::size_t n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) throw std::runtime_error("opendir /proc/self/fd");
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;  // the directory stream itself
}

/// An async upstream. The first byte a connection sends says what it does: 'E' echoes until EOF then
/// half-closes; 'R' reads once more and resets.
inline asio::awaitable<void> serve_upstream(tcp::acceptor& acceptor) {
  using asio::experimental::as_tuple;
  auto executor = co_await asio::this_coro::executor;
  for (;;) {
    auto [ec, s] = co_await acceptor.async_accept(as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
    if (ec) continue;  // EMFILE and the like: the test will see the connection fail
    asio::co_spawn(executor, [s = std::move(s)]() mutable -> asio::awaitable<void> {
      char command = 0;
      auto [cec, c] = co_await asio::async_read(s, asio::buffer(&command, 1), as_tuple(asio::use_awaitable));
      if (cec) co_return;
      std::vector<char> block(16 * 1024);
      if (command == 'R') {
        (void)co_await s.async_read_some(asio::buffer(block), as_tuple(asio::use_awaitable));
        abort_connection(s);
        co_return;
      }
      for (;;) {
        auto [rec, n] = co_await s.async_read_some(asio::buffer(block), as_tuple(asio::use_awaitable));
        if (rec) break;
        auto [wec, w] = co_await asio::async_write(s, asio::buffer(block.data(), n), as_tuple(asio::use_awaitable));
        if (wec) co_return;
      }
      std::error_code ignored;
      s.shutdown(tcp::socket::shutdown_send, ignored);
    }, asio::detached);
  }
}

/// An upstream on a thread of its own (serve_upstream), listening on loopback in the calling thread's
/// namespace.
class ThreadedUpstream {
 public:
  ThreadedUpstream() : acceptor_(io_, {asio::ip::address_v4::loopback(), 0}, true) {
    acceptor_.listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(io_, serve_upstream(acceptor_), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ThreadedUpstream() {
    io_.stop();
    thread_.join();
  }
  [[nodiscard]] tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  [[nodiscard]] std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::thread thread_;
};

/// `podproxy-sidecar run ARGS` inside `ns` (optionally behind PREFIX, e.g. prlimit), as a child process;
/// SIGTERMed and reaped on destruction.
class SidecarProcess {
 public:
  SidecarProcess(const NetNs& ns, const std::vector<std::string>& run_args, const std::vector<std::string>& prefix = {}) {
    std::vector<std::string> args{"ip", "netns", "exec", ns.name()};
    args.insert(args.end(), prefix.begin(), prefix.end());
    args.push_back(PODPROXY_SIDECAR_PATH);
    args.push_back("run");
    args.insert(args.end(), run_args.begin(), run_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawnp(&pid_, "ip", nullptr, nullptr, argv.data(), environ) != 0) {
      throw std::runtime_error("cannot start podproxy-sidecar");
    }
  }
  SidecarProcess(const SidecarProcess&) = delete;
  ~SidecarProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  /// Sends `signal` (SIGTERM: the drain).
  void signal(int number) const { ::kill(pid_, number); }
  /// Waits for the exit; the exit status, or -1 when it died of a signal.
  int wait() {
    if (pid_ <= 0) return status_;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return status_;
  }
  /// SIGTERM, then wait().
  int stop() {
    if (pid_ > 0) signal(SIGTERM);
    return wait();
  }
  /// Whether it still runs (not reaped).
  [[nodiscard]] bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      return false;
    }
    return true;
  }

 private:
  pid_t pid_ = 0;
  int status_ = -1;
};

/// Blocking: connects to `to`, sends 'E' and `text`, reads `text` back (within the socket timeouts).
/// Returns the connected socket, still open, or throws.
inline tcp::socket echo_once(asio::io_context& io, const tcp::endpoint& to, const std::string& text,
                             std::chrono::seconds limit = 30s) {
  tcp::socket s(io);
  s.connect(to);
  set_timeouts(s, limit);
  asio::write(s, asio::buffer("E" + text));
  std::string back(text.size(), '\0');
  read_within(s, asio::buffer(back), limit);
  if (back != text) throw std::runtime_error("echo mismatch");
  return s;
}

/// Waits (bounded) until the sidecar echoes through `to`.
inline bool wait_echo(asio::io_context& io, const tcp::endpoint& to, std::chrono::seconds limit = 20s) {
  return eventually([&] {
    try {
      echo_once(io, to, "probe", 2s);
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }, limit);
}

}  // namespace podproxy::test
