// FixedPolicy: one upstream for every connection, for a plain reverse proxy.
#pragma once

#include <podproxy/concepts/upstream_policy.hpp>

namespace podproxy {

/// Dials the same target whatever the client dialed (socat, nginx `stream`, HAProxy `server`).
struct FixedPolicy {
  UpstreamTarget target;

  [[nodiscard]] std::optional<UpstreamTarget> upstream_for(const Downstream& /*downstream*/) const {
    return target;
  }
};
static_assert(concepts::UpstreamPolicy<FixedPolicy>);

}  // namespace podproxy
