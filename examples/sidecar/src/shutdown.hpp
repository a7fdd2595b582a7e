// How `run` ends: a drain on SIGTERM/SIGINT, cut short by a second signal.
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include "admin_endpoints.hpp"

#include <podproxy/worker_group.hpp>

#include <asio/signal_set.hpp>
#include <spdlog/logger.h>

#include <chrono>
#include <string_view>

namespace sidecar {

/// On SIGTERM or SIGINT (or drain()): readiness says DRAINING, the listeners stop accepting, and open
/// connections have the drain timeout to finish; when the last one is done the endpoints close and the
/// workers stop, so WorkerGroup::run returns with exit_status() 0. A second signal stops everything at
/// once, exit_status() 1. Lives on the first worker's io_context, like the endpoints.
class Shutdown {
 public:
  Shutdown(podproxy::WorkerGroup& workers, AdminEndpoints& endpoints, std::chrono::milliseconds drain_timeout,
           spdlog::logger& log);

  /// Starts waiting for the signals.
  void start();
  /// Begins the drain, `why` naming the cause in the log; false when one has already begun. Call on the
  /// first worker's io_context.
  bool drain(std::string_view why);
  [[nodiscard]] int exit_status() const { return exit_status_; }

 private:
  void on_signal(std::error_code ec, int number);

  podproxy::WorkerGroup& workers_;
  AdminEndpoints& endpoints_;
  std::chrono::milliseconds drain_timeout_;
  spdlog::logger& log_;
  asio::signal_set signals_;
  int exit_status_ = 0;
};

}  // namespace sidecar
