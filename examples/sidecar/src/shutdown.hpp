// How `run` ends on a signal: a drain on SIGTERM/SIGINT, cut short by a second signal.
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include "drain_control.hpp"

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <fmt/format.h>
#include <spdlog/logger.h>

#include <csignal>

namespace sidecar {

/// The first SIGTERM or SIGINT asks the drain control to quit (drain, then exit 0, as POST /quitquitquit
/// does); a second one stops everything at once, exit_status() 1. Lives on the first worker's io_context,
/// like the drain control and the endpoints.
class Shutdown {
 public:
  Shutdown(asio::io_context& io, DrainControl& control, spdlog::logger& log)
      : control_(control), log_(log), signals_(io, SIGTERM, SIGINT) {}

  /// Starts waiting for the signals.
  void start() {
    signals_.async_wait([this](std::error_code ec, int number) { on_signal(ec, number); });
  }
  [[nodiscard]] int exit_status() const { return exit_status_; }

 private:
  void on_signal(std::error_code ec, int number) {
    if (ec) return;
    if (signalled_) {
      log_.warn("signal {} again: exiting without waiting for the open connections", number);
      exit_status_ = 1;
      control_.halt();
      return;
    }
    signalled_ = true;
    control_.quit(fmt::format("signal {}", number));
    start();
  }

  DrainControl& control_;
  spdlog::logger& log_;
  asio::signal_set signals_;
  bool signalled_ = false;
  int exit_status_ = 0;
};

}  // namespace sidecar
