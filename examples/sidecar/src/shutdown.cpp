// The drain on SIGTERM/SIGINT (see shutdown.hpp).
#include "shutdown.hpp"

#include <csignal>

namespace sidecar {

Shutdown::Shutdown(podproxy::WorkerGroup& workers, AdminEndpoints& endpoints, std::chrono::milliseconds drain_timeout,
                   spdlog::logger& log)
    : workers_(workers),
      endpoints_(endpoints),
      drain_timeout_(drain_timeout),
      log_(log),
      signals_(workers.context(0), SIGTERM, SIGINT) {}

void Shutdown::start() {
  signals_.async_wait([this](std::error_code ec, int number) { on_signal(ec, number); });
}

bool Shutdown::drain(std::string_view why) {
  if (!endpoints_.begin_draining()) return false;
  log_.info("{}: no longer accepting; draining {} connection(s) for up to {} ms", why, workers_.active(),
            drain_timeout_.count());
  // Called from the thread of the proxy that finished last.
  workers_.stop(drain_timeout_, [this] {
    log_.info("drained: every connection is done; exiting");
    endpoints_.close();
    workers_.halt();
  });
  return true;
}

void Shutdown::on_signal(std::error_code ec, int number) {
  if (ec) return;
  if (!drain(fmt::format("signal {}", number))) {
    log_.warn("signal {} again: exiting without waiting for {} connection(s)", number, workers_.active());
    exit_status_ = 1;
    workers_.halt();
    return;
  }
  start();
}

}  // namespace sidecar
