// The admin and health servers (see admin_endpoints.hpp).
#include "admin_endpoints.hpp"

#include <sys/resource.h>

#include <algorithm>

namespace sidecar {

http::ServerOptions http_server_options() {
  http::ServerOptions options;
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY) {
    options.max_connections = std::clamp<std::size_t>(files.rlim_cur / 8, 16, options.max_connections);
  }
  return options;
}

AdminEndpoints::AdminEndpoints(asio::any_io_executor executor, Options options) : options_(std::move(options)) {
  const http::ServerOptions bounds = http_server_options();
  admin_ = std::make_unique<http::Server>(
      executor, options_.admin, [this](const http::Request& request) { return on_admin(request); }, bounds);
  health_ = std::make_unique<http::Server>(
      executor, options_.health, [this](const http::Request& request) { return on_health(request); }, bounds);
}

void AdminEndpoints::start() {
  admin_->start();
  health_->start();
}

void AdminEndpoints::close() {
  admin_->close();
  health_->close();
}

http::Response AdminEndpoints::readiness() const {
  const bool draining = draining_.load();
  // A captured family that no listener serves: never ready, and the body says why and what to change.
  if (!options_.not_ready.empty() && !draining) return {503, "NOT_READY: " + options_.not_ready + "\n"};
  if (draining) return {503, "DRAINING\n"};
  return ready_.load() ? http::Response{200, "LIVE\n"} : http::Response{503, "PRE_INITIALIZING\n"};
}

http::Response AdminEndpoints::on_admin(const http::Request& request) const {
  if (request.path == "/stats") {
    return {200, prometheus_text(options_.stats, options_.pool), "text/plain; version=0.0.4; charset=utf-8"};
  }
  if (request.path == "/ready") return readiness();
  return {404, "not found: try /stats or /ready\n"};
}

http::Response AdminEndpoints::on_health(const http::Request& request) const {
  if (request.path == "/healthz/ready") return readiness();
  return {404, "not found: try /healthz/ready\n"};
}

}  // namespace sidecar
