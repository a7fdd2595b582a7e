// SessionRegistry: the live connections of a proxy, so that a drain deadline can cancel the rest.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/post.hpp>

#include <atomic>
#include <list>
#include <memory>
#include <mutex>

namespace podproxy::detail {

/// One connection's cancellation handle. The signal may only be emitted on the connection's strand.
struct SessionControl {
  explicit SessionControl(asio::any_io_executor executor) : strand(std::move(executor)) {}
  asio::any_io_executor strand;
  asio::cancellation_signal signal;
  std::atomic<bool> cut{false};  ///< set before the signal is emitted: the session checks it between phases
};

/// Thread-safe list of live sessions.
class SessionRegistry {
 public:
  using Handle = std::list<std::shared_ptr<SessionControl>>::iterator;

  Handle add(std::shared_ptr<SessionControl> control) {
    std::lock_guard lock(mutex_);
    return sessions_.insert(sessions_.end(), std::move(control));
  }

  void remove(Handle handle) {
    std::shared_ptr<SessionControl> keep;  // released outside the lock
    std::lock_guard lock(mutex_);
    keep = std::move(*handle);
    sessions_.erase(handle);
  }

  /// Asks every live session to stop at once (terminal cancellation on its own strand).
  void cancel_all() {
    std::lock_guard lock(mutex_);
    for (const auto& control : sessions_) {
      control->cut.store(true, std::memory_order_relaxed);
      asio::post(control->strand, [control] { control->signal.emit(asio::cancellation_type::terminal); });
    }
  }

 private:
  std::mutex mutex_;
  std::list<std::shared_ptr<SessionControl>> sessions_;
};

}  // namespace podproxy::detail
