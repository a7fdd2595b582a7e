// Test support: deadlines, network namespaces made by the test itself, and small blocking clients.
#pragma once

#include <catch2/catch.hpp>

#include <asio/io_context.hpp>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

namespace podproxy::test {

/// Runs `io` until it has no more work or `limit` passes; a test that overruns fails instead of hanging.
inline void run_for(asio::io_context& io, std::chrono::steady_clock::duration limit) {
  io.restart();
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!io.stopped()) {
    io.run_for(std::chrono::milliseconds(50));
    if (std::chrono::steady_clock::now() > deadline) {
      io.stop();
      FAIL("test deadline passed");
    }
  }
}

/// Runs a shell command; returns its exit status.
inline int sh(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// Whether this process may create network namespaces (root with CAP_SYS_ADMIN and `ip` present).
inline bool can_make_namespaces() {
  static const bool ok = [] {
    if (::geteuid() != 0) return false;
    const std::string name = "podproxy-probe-" + std::to_string(::getpid());
    if (sh("ip netns add " + name + " >/dev/null 2>&1") != 0) return false;
    sh("ip netns del " + name + " >/dev/null 2>&1");
    return true;
  }();
  return ok;
}

/// A network namespace that exists for the lifetime of this object, named with the pid so that parallel
/// runs never collide. Its lo is up. Removed in the destructor, on every exit path.
class NetNs {
 public:
  explicit NetNs(const std::string& tag) : name_("podproxy-" + tag + "-" + std::to_string(::getpid())) {
    sh("ip netns del " + name_ + " >/dev/null 2>&1");
    if (sh("ip netns add " + name_) != 0) throw std::runtime_error("ip netns add " + name_ + " failed");
    exec("ip link set lo up");
  }
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;
  ~NetNs() { sh("ip netns del " + name_ + " >/dev/null 2>&1"); }

  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  /// Runs a shell command inside the namespace; throws when it fails.
  void exec(const std::string& command) const {
    if (sh("ip netns exec " + name_ + " " + command) != 0) {
      throw std::runtime_error("in " + name_ + ": '" + command + "' failed");
    }
  }

  /// Runs `body` on a thread that has entered the namespace: every socket it creates lives there (and
  /// stays there when used later from other threads). Rethrows what `body` throws.
  void run_inside(const std::function<void()>& body) const {
    std::exception_ptr failure;
    std::thread thread([&] {
      try {
        const int fd = ::open(("/var/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) throw std::runtime_error("setns " + name_);
        ::close(fd);
        body();
      } catch (...) {
        failure = std::current_exception();
      }
    });
    thread.join();
    if (failure) std::rethrow_exception(failure);
  }

 private:
  std::string name_;
};

}  // namespace podproxy::test
