// OriginalSourcePolicy: deliver with the client's own source address (TPROXY deployments, Istio ztunnel).
#pragma once

#include <podproxy/concepts/upstream_policy.hpp>

#include <utility>

namespace podproxy {

/// Takes the upstream address from `Inner` and binds the upstream socket to the client's own address
/// with IP_TRANSPARENT, so the application sees the real client instead of the proxy. Needs
/// CAP_NET_ADMIN and routing that sends the replies back through this host's proxy (TPROXY's fwmark
/// rule and local route table).
template <concepts::UpstreamPolicy Inner>
class OriginalSourcePolicy {
 public:
  explicit OriginalSourcePolicy(Inner inner) : inner_(std::move(inner)) {}

  [[nodiscard]] std::optional<UpstreamTarget> upstream_for(const Downstream& downstream) const {
    auto target = inner_.upstream_for(downstream);
    if (target) {
      target->source = downstream.peer.address();
      target->transparent = true;
    }
    return target;
  }

 private:
  Inner inner_;
};

}  // namespace podproxy
