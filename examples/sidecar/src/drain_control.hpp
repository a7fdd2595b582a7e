// DrainControl: the one way `run` stops, whatever asks: SIGTERM/SIGINT, POST /quitquitquit (drain, then exit
// 0: what a Job's last step calls to end its sidecar), POST /drain_listeners (Envoy's: stop accepting, keep
// the connections open, readiness 503, keep running).
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include <podproxy/worker_group.hpp>

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string_view>

namespace sidecar {

/// Call everything on worker 0's io_context (the signals and the admin servers run there): WorkerGroup::stop
/// may be called again only from the thread of its first call.
class DrainControl {
 public:
  /// `exit` closes what is not a proxy and halts the group; called once, from any worker's thread.
  DrainControl(podproxy::WorkerGroup& workers, std::chrono::milliseconds drain_timeout, std::function<void()> exit,
               spdlog::logger& log)
      : workers_(workers), drain_timeout_(drain_timeout), exit_(std::move(exit)), log_(log) {}

  /// Listeners closed: readiness says 503.
  [[nodiscard]] bool draining() const noexcept { return draining_.load(); }

  /// Stop accepting; connections go on, without a deadline, until a quit() gives them one.
  void drain_listeners() {
    if (draining_.exchange(true)) return;
    log_.info("drain_listeners: no longer accepting; {} connection(s) go on", workers_.active());
    // "Without a deadline": a year, which no pod outlives; a quit() brings it closer.
    workers_.stop(std::chrono::hours(24 * 365), [this] { all_closed(); });
  }

  /// Stop accepting, let connections finish for up to the drain timeout (counted from now), then exit.
  void quit(std::string_view why) {
    quitting_.store(true);
    log_.info("{}: no longer accepting; draining {} connection(s) for up to {} ms", why, workers_.active(),
              drain_timeout_.count());
    if (!draining_.exchange(true)) {
      workers_.stop(drain_timeout_, [this] { all_closed(); });
      return;
    }
    workers_.stop(drain_timeout_);  // already draining: this only brings the deadline closer
    if (closed_.load()) finish();
  }

  /// Exit now, without waiting for the connections (a second signal).
  void halt() { workers_.halt(); }

 private:
  void all_closed() {
    closed_.store(true);
    if (quitting_.load()) finish();
  }
  void finish() {
    if (finished_.exchange(true)) return;
    log_.info("drained: every connection is done; exiting");
    exit_();
  }

  podproxy::WorkerGroup& workers_;
  std::chrono::milliseconds drain_timeout_;
  std::function<void()> exit_;
  spdlog::logger& log_;
  std::atomic<bool> draining_{false}, quitting_{false}, closed_{false}, finished_{false};
};

}  // namespace sidecar
