// The endpoints a mesh user scripts against, with Envoy's and pilot-agent's paths and methods:
// POST /quitquitquit and POST /drain_listeners (admin port), GET /stats/prometheus and POST /quitquitquit
// (the merged-metrics port, 15020).
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include "drain_control.hpp"
#include "http.hpp"

#include <podproxy/address.hpp>

#include <optional>
#include <string_view>

namespace sidecar {

/// Answers a request for the lifecycle paths, or nullopt for another path. Only POST acts (405 otherwise,
/// Allow: POST), as in Envoy, so that a GET from a crawler or a probe never ends a pod's sidecar.
/// `loopback_only`: the port is reachable from outside the pod (15020, for Prometheus), so like
/// pilot-agent it takes these only from the pod itself.
inline std::optional<http::Response> lifecycle_endpoint(const http::Request& request, DrainControl& control,
                                                        bool drain_listeners, bool loopback_only) {
  const bool quit = request.path == "/quitquitquit";
  if (!quit && !(drain_listeners && request.path == "/drain_listeners")) return std::nullopt;
  if (request.method != "POST") return http::Response{405, "use POST\n", "text/plain; charset=utf-8", "POST"};
  if (loopback_only && !podproxy::is_loopback(request.peer.address())) {
    return http::Response{403, "only from the pod itself (loopback)\n"};
  }
  if (quit) {
    control.quit("POST /quitquitquit");
  } else {
    control.drain_listeners();
  }
  return http::Response{200, "OK\n"};
}

/// Any other method than GET and HEAD on a path that is not a lifecycle one: 405, as the server answers
/// when it does not hand every method to its handler.
inline std::optional<http::Response> only_get(const http::Request& request) {
  if (request.method == "GET" || request.method == "HEAD") return std::nullopt;
  return http::Response{405, "only GET and HEAD\n"};
}

}  // namespace sidecar
