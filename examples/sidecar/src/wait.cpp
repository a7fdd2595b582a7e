// `wait`: blocks until the sidecar's readiness endpoint answers 200 (Istio's `pilot-agent wait`), so that
// a pod can start its application only once the proxy listens (holdApplicationUntilProxyStarts).
#include "cli_util.hpp"
#include "commands.hpp"
#include "http.hpp"
#include "run_flags.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>

namespace sidecar {

namespace {

struct WaitFlags {
  std::string url = "http://127.0.0.1:15021/healthz/ready";
  std::string timeout = "60s";
  std::string interval = "500ms";
  std::string request_timeout = "1s";
  bool quiet = false;
};

int wait_ready(const WaitFlags& flags) {
  const HttpUrl url = parse_http_url("--url", flags.url);
  const auto timeout = parse_duration("--timeout", flags.timeout);
  const auto interval = parse_duration("--interval", flags.interval);
  if (interval.count() == 0) throw CLI::ValidationError("--interval", "must be more than 0");
  const auto request_timeout = parse_duration("--request-timeout", flags.request_timeout);
  if (request_timeout.count() == 0) throw CLI::ValidationError("--request-timeout", "must be more than 0");

  asio::io_context io;
  int status = 1;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const auto started = std::chrono::steady_clock::now();
        const auto deadline = started + timeout;
        asio::steady_timer pause(io);
        std::string last;
        for (unsigned attempt = 1;; ++attempt) {
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
          const auto result = co_await http::get_status(url.endpoint, url.host_header, url.target,
                                                        std::max(std::chrono::milliseconds(1), std::min(request_timeout, left)));
          const auto now = std::chrono::steady_clock::now();
          const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count();
          if (result.status == 200) {
            if (!flags.quiet) std::cerr << fmt::format("wait: {} is ready (200 after {} ms, attempt {})\n", flags.url, elapsed, attempt);
            status = 0;
            co_return;
          }
          last = result.status ? fmt::format("status {}", *result.status) : result.error;
          if (attempt == 1 && !flags.quiet) {
            std::cerr << fmt::format("wait: {} not ready yet ({}); polling every {} ms for up to {} ms\n", flags.url,
                                     last, interval.count(), timeout.count());
          }
          if (now + interval > deadline) break;
          pause.expires_after(interval);
          co_await pause.async_wait(asio::use_awaitable);
        }
        std::cerr << fmt::format("wait: {} not ready after {} ms (last: {})\n", flags.url, timeout.count(), last);
      },
      [](std::exception_ptr failure) {
        if (failure) std::rethrow_exception(failure);
      });
  io.run();
  return status;
}

}  // namespace

void add_wait_command(CLI::App& app) {
  auto flags = std::make_shared<WaitFlags>();
  auto* cmd = app.add_subcommand("wait", "Block until the sidecar is ready (GET /healthz/ready answers 200)");
  cmd->footer("Exit status: 0 when ready, 1 on timeout, 2 for a bad flag.");
  cmd->add_option("--url", flags->url, "readiness URL, http://IP:PORT/PATH")->type_name("URL")->capture_default_str();
  cmd->add_option("--timeout", flags->timeout, "give up after this long (ms, s, m, h)")->type_name("DURATION")->capture_default_str();
  cmd->add_option("--interval", flags->interval, "pause between attempts")->type_name("DURATION")->capture_default_str();
  cmd->add_option("--request-timeout", flags->request_timeout, "limit for one attempt")->type_name("DURATION")->capture_default_str();
  cmd->add_flag("--quiet", flags->quiet, "say nothing on success");
  cmd->callback([flags] {
    const int status = wait_ready(*flags);
    if (status != 0) throw CLI::RuntimeError(status);
  });
}

}  // namespace sidecar
