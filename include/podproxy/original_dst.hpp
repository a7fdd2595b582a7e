// redirected_destination(): where a REDIRECTed client meant to go, as netfilter recorded it (SO_ORIGINAL_DST).
#pragma once

#include <asio/ip/tcp.hpp>

#include <linux/netfilter_ipv4.h>      // SO_ORIGINAL_DST
#include <linux/netfilter_ipv6/ip6_tables.h>  // IP6T_SO_ORIGINAL_DST
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>
#include <system_error>

namespace podproxy {

/// The destination that netfilter's NAT rewrote for this connection (an iptables REDIRECT or DNAT rule),
/// read with getsockopt(SOL_IP, SO_ORIGINAL_DST) or, for IPv6, getsockopt(SOL_IPV6,
/// IP6T_SO_ORIGINAL_DST). std::nullopt when the connection was not NATed (ENOENT), or on any other error,
/// which `ec` then holds.
[[nodiscard]] inline std::optional<asio::ip::tcp::endpoint> redirected_destination(
    int fd, const asio::ip::tcp::endpoint& local, std::error_code& ec) {
  ec.clear();
  sockaddr_storage storage{};
  // A dual-stack listener hands IPv4 clients over as v4-mapped IPv6: their NAT entry is an IPv4 one.
  const bool v6 = local.address().is_v6() && !local.address().to_v6().is_v4_mapped();
  // The kernel writes the address but not the length (getorigdst): ask for exactly one address.
  socklen_t length = v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  const int rc = v6 ? ::getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &storage, &length)
                    : ::getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &storage, &length);
  if (rc != 0) {
    ec.assign(errno, std::system_category());
    return std::nullopt;
  }
  asio::ip::tcp::endpoint endpoint;
  const auto size = storage.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  std::memcpy(endpoint.data(), &storage, size);
  endpoint.resize(size);
  return endpoint;
}

}  // namespace podproxy
