// LoopbackPolicy: deliver to 127.0.0.1 (or ::1) on the original port, as Istio did up to 1.9.
#pragma once

#include <podproxy/concepts/upstream_policy.hpp>

namespace podproxy {

/// Dials `127.0.0.1:<original port>` (`[::1]:<original port>` when the original destination is IPv6),
/// so the application is reached over `lo`: servers bound to 127.0.0.1 or to every address answer,
/// servers bound only to the pod IP do not. No source bind: the application sees peer 127.0.0.1.
struct LoopbackPolicy {
  [[nodiscard]] std::optional<UpstreamTarget> upstream_for(const Downstream& downstream) const {
    const auto& original = downstream.original_destination;
    const asio::ip::address loopback = original.address().is_v6()
                                           ? asio::ip::address{asio::ip::address_v6::loopback()}
                                           : asio::ip::address{asio::ip::address_v4::loopback()};
    return UpstreamTarget{.endpoint = {loopback, original.port()}};
  }
};
static_assert(concepts::UpstreamPolicy<LoopbackPolicy>);

}  // namespace podproxy
