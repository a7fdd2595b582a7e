// Address facts the proxy decides from, with IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack
// socket reports for an IPv4 peer) read as the IPv4 addresses they stand for.
#pragma once

#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>

namespace podproxy {

/// `a` itself, or the IPv4 address an IPv4-mapped IPv6 address stands for.
[[nodiscard]] inline asio::ip::address unmapped(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

/// `endpoint` with its address unmapped, same port. A dual-stack listener (`::` without IPV6_V6ONLY) sees its
/// IPv4 clients as `::ffff:a.b.c.d`, and a policy must see them as what they are, IPv4, to choose IPv4
/// addresses to dial from and to.
[[nodiscard]] inline asio::ip::tcp::endpoint unmapped(const asio::ip::tcp::endpoint& endpoint) {
  return {unmapped(endpoint.address()), endpoint.port()};
}

/// 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104. (Asio's own is_loopback() misses the mapped form.)
[[nodiscard]] inline bool is_loopback(const asio::ip::address& a) { return unmapped(a).is_loopback(); }

}  // namespace podproxy
