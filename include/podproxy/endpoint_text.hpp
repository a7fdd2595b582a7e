// Endpoints as text, both ways: 10.0.0.5:80 and [fd00::5]:80.
#pragma once

#include <podproxy/address.hpp>

#include <asio/ip/tcp.hpp>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace podproxy {

/// IPv4 as 1.2.3.4:80, IPv6 as [::1]:80, an IPv4-mapped IPv6 address as the IPv4 it stands for.
[[nodiscard]] inline std::string to_text(const asio::ip::tcp::endpoint& endpoint) {
  const auto plain = unmapped(endpoint);
  const auto address = plain.address().to_string();
  return (plain.address().is_v6() ? "[" + address + "]" : address) + ":" + std::to_string(plain.port());
}

/// HOST:PORT with an IP address for HOST (IPv6 in brackets, [::1]:80) and a port from 0 to 65535;
/// std::nullopt for anything else.
[[nodiscard]] inline std::optional<asio::ip::tcp::endpoint> parse_endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // IPv6 without brackets: which colon ends the address is a guess
  }
  std::error_code ec;
  const auto address = asio::ip::make_address(std::string(host), ec);
  const auto port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec || port_text.empty() || error != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) {
    return std::nullopt;
  }
  return asio::ip::tcp::endpoint{address, static_cast<std::uint16_t>(port)};
}

}  // namespace podproxy
