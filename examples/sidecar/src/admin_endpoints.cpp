// The admin and health servers (see admin_endpoints.hpp).
#include "admin_endpoints.hpp"

#include "lifecycle_endpoints.hpp"

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

AdminEndpoints::AdminEndpoints(asio::any_io_executor executor, Options options, DrainControl& control,
                               const IstioTcpMetrics& istio)
    : options_(std::move(options)), control_(control), istio_(istio) {
  const http::ServerOptions bounds = http_server_options();
  // The admin and metrics servers take POST for the lifecycle paths; the health server stays GET only.
  http::ServerOptions any_method = bounds;
  any_method.any_method = true;
  admin_ = std::make_unique<http::Server>(
      executor, options_.admin, [this](const http::Request& request) { return on_admin(request); }, any_method);
  health_ = std::make_unique<http::Server>(
      executor, options_.health, [this](const http::Request& request) { return on_health(request); }, bounds);
  metrics_ = std::make_unique<http::Server>(
      executor, options_.metrics, [this](const http::Request& request) { return on_metrics(request); }, any_method);
}

void AdminEndpoints::start() {
  admin_->start();
  health_->start();
  metrics_->start();
}

void AdminEndpoints::close() {
  admin_->close();
  health_->close();
  metrics_->close();
}

std::string AdminEndpoints::envoy_stats() const {
  return prometheus_text(options_.stats, options_.pool) + (options_.hints ? options_.hints->prometheus_text() : "");
}

http::Response AdminEndpoints::readiness() const {
  const bool draining = control_.draining();
  // A captured family that no listener serves: never ready, and the body says why and what to change.
  if (!options_.not_ready.empty() && !draining) return {503, "NOT_READY: " + options_.not_ready + "\n"};
  if (draining) return {503, "DRAINING\n"};
  return ready_.load() ? http::Response{200, "LIVE\n"} : http::Response{503, "PRE_INITIALIZING\n"};
}

http::Response AdminEndpoints::on_admin(const http::Request& request) const {
  if (auto r = lifecycle_endpoint(request, control_, /*drain_listeners=*/true, /*loopback_only=*/false)) return *r;
  if (auto r = only_get(request)) return *r;
  if (request.path == "/stats") return {200, envoy_stats(), "text/plain; version=0.0.4; charset=utf-8"};
  if (request.path == "/ready") return readiness();
  if (request.path == "/binds" && options_.hints) {
    const auto json = options_.hints->binds_json();
    return json ? http::Response{200, *json, "application/json"} : http::Response{503, "cannot read the listeners\n"};
  }
  return {404, "not found: try /stats, /ready, /binds, POST /quitquitquit or POST /drain_listeners\n"};
}

// pilot-agent's merged metrics: Istio's TCP metrics, then the Envoy-named counters.
http::Response AdminEndpoints::on_metrics(const http::Request& request) const {
  if (auto r = lifecycle_endpoint(request, control_, /*drain_listeners=*/false, /*loopback_only=*/true)) return *r;
  if (auto r = only_get(request)) return *r;
  if (request.path == "/stats/prometheus") {
    return {200, istio_.prometheus_text() + envoy_stats(), "text/plain; version=0.0.4; charset=utf-8"};
  }
  return {404, "not found: try /stats/prometheus\n"};
}

http::Response AdminEndpoints::on_health(const http::Request& request) const {
  if (request.path == "/healthz/ready") return readiness();
  return {404, "not found: try /healthz/ready\n"};
}

}  // namespace sidecar
