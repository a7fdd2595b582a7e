// What an upstream policy answers: where to dial, and from which source address.
#pragma once

#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>

#include <optional>

namespace podproxy {

/// One upstream connection attempt, as chosen by a policy.
struct UpstreamTarget {
  /// The address and port the proxy dials.
  asio::ip::tcp::endpoint endpoint;
  /// Bind the upstream socket to this source address (port 0) before connecting: PodIpPolicy binds
  /// 127.0.0.6 so that the capture rules let the delivery through instead of redirecting it again.
  std::optional<asio::ip::address> source{};
  /// Set IP_TRANSPARENT on the upstream socket, so that `source` may be a non-local address (the
  /// client's own, as TPROXY deployments deliver it). Needs CAP_NET_ADMIN.
  bool transparent = false;

  friend bool operator==(const UpstreamTarget&, const UpstreamTarget&) = default;
};

}  // namespace podproxy
