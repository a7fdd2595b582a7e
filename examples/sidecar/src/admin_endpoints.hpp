// The sidecar's HTTP endpoints and the readiness they report: the admin server (127.0.0.1 only: /stats,
// /ready, /binds, POST /quitquitquit and /drain_listeners), the health server (the kubelet's: /healthz/ready) and
// the merged-metrics server (Prometheus': /stats/prometheus; POST /quitquitquit from the pod itself).
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include "drain_control.hpp"
#include "http.hpp"
#include "istio_metrics.hpp"
#include "prometheus.hpp"
#include "upstream_hints.hpp"

#include <podproxy/relay/pipe_pool.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace sidecar {

/// The three servers, bound at construction (throws std::system_error naming the endpoint) and served on
/// the executor given, with the bounds of http_server_options(). Readiness goes from PRE_INITIALIZING (503)
/// to LIVE (200) at set_ready(), and to DRAINING (503) once the drain control drains; a sidecar with a
/// reason never to be ready (`not_ready`: a captured address family that no listener serves) answers 503
/// with that reason until it drains. Not movable: the servers' handlers point at it.
class AdminEndpoints {
 public:
  struct Options {
    asio::ip::tcp::endpoint admin;
    asio::ip::tcp::endpoint health;
    asio::ip::tcp::endpoint metrics;
    std::vector<LabelledStats> stats;          ///< each listener's counters, for /stats
    const podproxy::PipePool* pool = nullptr;  ///< the splice relay's pipes, for /stats; null otherwise
    const hints::UpstreamHints* hints = nullptr;  ///< its counters on /stats, and GET /binds; null: neither
    std::string not_ready;                     ///< why the sidecar must never be ready, or ""
  };

  /// `control` ends the sidecar on POST /quitquitquit and /drain_listeners, and says when it drains;
  /// `istio` has Istio's TCP metrics for /stats/prometheus. Both outlive the endpoints.
  AdminEndpoints(asio::any_io_executor executor, Options options, DrainControl& control, const IstioTcpMetrics& istio);
  AdminEndpoints(const AdminEndpoints&) = delete;
  AdminEndpoints& operator=(const AdminEndpoints&) = delete;

  void start();
  /// Stops accepting on every server; requests being answered finish. Any thread.
  void close();

  /// Every listener accepts: readiness says 200 (unless not_ready). Any thread.
  void set_ready() { ready_ = true; }

  [[nodiscard]] asio::ip::tcp::endpoint admin_endpoint() const { return admin_->local_endpoint(); }
  [[nodiscard]] asio::ip::tcp::endpoint health_endpoint() const { return health_->local_endpoint(); }
  [[nodiscard]] asio::ip::tcp::endpoint metrics_endpoint() const { return metrics_->local_endpoint(); }

 private:
  [[nodiscard]] http::Response readiness() const;
  [[nodiscard]] http::Response on_admin(const http::Request& request) const;
  [[nodiscard]] http::Response on_health(const http::Request& request) const;
  [[nodiscard]] http::Response on_metrics(const http::Request& request) const;
  [[nodiscard]] std::string envoy_stats() const;

  Options options_;
  DrainControl& control_;
  const IstioTcpMetrics& istio_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<http::Server> admin_;
  std::unique_ptr<http::Server> health_;
  std::unique_ptr<http::Server> metrics_;
};

/// The servers' bounds: ServerOptions' defaults, with fewer connections when the descriptor limit is low,
/// so that clients of the two servers can never take the descriptors the proxies need (each held
/// connection is one descriptor).
[[nodiscard]] http::ServerOptions http_server_options();

}  // namespace sidecar
