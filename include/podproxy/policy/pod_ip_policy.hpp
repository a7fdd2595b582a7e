// PodIpPolicy: deliver to the original destination itself, from 127.0.0.6, as Istio does since 1.10.
#pragma once

#include <podproxy/concepts/upstream_policy.hpp>

namespace podproxy {

/// Dials the original destination (`<pod IP>:<port>`) with the source bound to 127.0.0.6 (`::6` for
/// IPv6), the address Istio's capture rules let through on `lo` without redirecting it again. Servers
/// bound to the pod IP or to every address answer, servers bound only to 127.0.0.1 do not.
struct PodIpPolicy {
  /// Source for IPv4 deliveries; std::nullopt leaves the choice to the kernel.
  std::optional<asio::ip::address> source_v4 = asio::ip::make_address_v4("127.0.0.6");
  /// Source for IPv6 deliveries (Istio adds ::6/128 to lo for this); std::nullopt leaves it to the kernel.
  std::optional<asio::ip::address> source_v6 = asio::ip::make_address_v6("::6");

  /// The 1.10 behaviour without any source bind (what a proxy outside Istio's rules wants).
  [[nodiscard]] static PodIpPolicy without_source_bind() { return PodIpPolicy{std::nullopt, std::nullopt}; }

  [[nodiscard]] std::optional<UpstreamTarget> upstream_for(const Downstream& downstream) const {
    const auto& original = downstream.original_destination;
    return UpstreamTarget{.endpoint = original,
                          .source = original.address().is_v6() ? source_v6 : source_v4};
  }
};
static_assert(concepts::UpstreamPolicy<PodIpPolicy>);

}  // namespace podproxy
