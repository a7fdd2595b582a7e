// PortOverridePolicy: per-port upstreams on top of another policy (Istio's Sidecar ingress defaultEndpoint).
#pragma once

#include <podproxy/concepts/upstream_policy.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <cstdint>
#include <utility>
#include <vector>

namespace podproxy {

/// For connections whose original destination port has an override, dial the override's target;
/// every other connection goes where `Inner` says. Overrides are fixed at construction, so lookups
/// need no lock.
template <concepts::UpstreamPolicy Inner>
class PortOverridePolicy {
 public:
  using Override = std::pair<std::uint16_t, UpstreamTarget>;

  /// Throws std::invalid_argument when a port appears twice (a configuration error).
  explicit PortOverridePolicy(Inner inner, std::vector<Override> overrides = {})
      : inner_(std::move(inner)), overrides_(std::move(overrides)) {
    std::ranges::sort(overrides_, {}, &Override::first);
    const auto duplicate =
        std::ranges::adjacent_find(overrides_, {}, &Override::first);
    if (duplicate != overrides_.end()) {
      throw std::invalid_argument("port " + std::to_string(duplicate->first) + " is overridden twice");
    }
  }

  [[nodiscard]] std::optional<UpstreamTarget> upstream_for(const Downstream& downstream) const {
    const auto port = downstream.original_destination.port();
    const auto found = std::ranges::lower_bound(overrides_, port, {}, &Override::first);
    if (found != overrides_.end() && found->first == port) {
      return found->second;
    }
    return inner_.upstream_for(downstream);
  }

  [[nodiscard]] const Inner& inner() const noexcept { return inner_; }
  [[nodiscard]] const std::vector<Override>& overrides() const noexcept { return overrides_; }

 private:
  Inner inner_;
  std::vector<Override> overrides_;
};

}  // namespace podproxy
