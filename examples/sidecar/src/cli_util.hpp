// Parsers for the sidecar's flag values. Each throws CLI::ValidationError naming the flag and the value,
// so a bad value ends in a clear message and exit status 2.
#pragma once

#include <CLI/CLI.hpp>
#include <podproxy/endpoint_text.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar {

/// Exit status for bad flags and values, and for missing privileges or tools.
inline constexpr int usage_exit = 2;

/// A port, 1..65535.
inline std::uint16_t parse_port(std::string_view flag, std::string_view text) {
  unsigned value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || ptr != end || value == 0 || value > 65535) {
    throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not a port (1-65535)");
  }
  return static_cast<std::uint16_t>(value);
}

/// A comma-separated list of ports ("" is the empty list; "*" is not accepted here).
inline std::vector<std::uint16_t> parse_port_list(std::string_view flag, std::string_view text) {
  std::vector<std::uint16_t> ports;
  while (!text.empty()) {
    const auto comma = text.find(',');
    ports.push_back(parse_port(flag, text.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    if (text.empty()) throw CLI::ValidationError(std::string(flag), "trailing ',' in the port list");
  }
  return ports;
}

/// An IPv4 or IPv6 address (no brackets, no port).
inline asio::ip::address parse_address(std::string_view flag, std::string_view text) {
  std::error_code ec;
  const auto address = asio::ip::make_address(std::string(text), ec);
  if (ec) throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not an IP address");
  return address;
}

/// HOST:PORT with an IP address for HOST; IPv6 as [::1]:80; port 1-65535. podproxy::parse_endpoint reads
/// it; on a refusal, this works out which part is wrong, for the message.
inline asio::ip::tcp::endpoint parse_endpoint(std::string_view flag, std::string_view text) {
  if (auto endpoint = podproxy::parse_endpoint(text); endpoint && endpoint->port() != 0) return *endpoint;
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not HOST:PORT");
  }
  auto host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "': write IPv6 as [ADDR]:PORT");
  }
  (void)parse_address(flag, host);                   // throws naming the address
  (void)parse_port(flag, text.substr(colon + 1));     // throws naming the port
  throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not HOST:PORT");
}

/// A duration: a whole number followed by ms, s, m or h ("10s", "500ms", "1h"); "0" alone means zero.
inline std::chrono::milliseconds parse_duration(std::string_view flag, std::string_view text) {
  const auto bad = [&] {
    return CLI::ValidationError(std::string(flag),
                                "'" + std::string(text) + "' is not a duration (e.g. 500ms, 10s, 5m, 1h, or 0)");
  };
  if (text == "0") return std::chrono::milliseconds::zero();
  std::uint64_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr == text.data()) throw bad();
  const std::string_view unit(ptr, static_cast<std::size_t>(end - ptr));
  std::uint64_t factor = 0;
  if (unit == "ms") factor = 1;
  else if (unit == "s") factor = 1000;
  else if (unit == "m") factor = 60'000;
  else if (unit == "h") factor = 3'600'000;
  else throw bad();
  constexpr std::uint64_t limit = 365ULL * 24 * 3'600'000;  // a year: anything longer is a typo
  if (value > limit / factor) throw bad();
  return std::chrono::milliseconds(value * factor);
}

}  // namespace sidecar
