// Parsers for the values only `run` and `wait` take (cli_util.hpp and init_flags.hpp have the shared ones). Each throws
// CLI::ValidationError naming the flag, so a bad value ends in a clear message and exit status 2.
#pragma once

#include "cli_util.hpp"
#include "init_flags.hpp"  // parse_id, parse_mark: the same values as init's --proxy-uid, --proxy-mark

#include <podproxy/proxy_protocol.hpp>

#include <asio/ip/tcp.hpp>

#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sidecar {

/// A whole number in [min, max].
inline std::uint64_t parse_number(std::string_view flag, std::string_view text, std::uint64_t min,
                                  std::uint64_t max) {
  std::uint64_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || ptr != end || value < min || value > max) {
    throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not a whole number in " +
                                                      std::to_string(min) + ".." + std::to_string(max));
  }
  return value;
}

/// `--inbound-default-endpoint PORT=HOST:PORT`: connections whose original destination port is PORT go to
/// HOST:PORT instead of where the inbound policy says (Istio's Sidecar `ingress[].defaultEndpoint`).
inline std::pair<std::uint16_t, asio::ip::tcp::endpoint> parse_default_endpoint(std::string_view flag,
                                                                                  std::string_view text) {
  const auto equals = text.find('=');
  if (equals == std::string_view::npos) {
    throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not PORT=HOST:PORT");
  }
  return {parse_port(flag, text.substr(0, equals)), parse_endpoint(flag, text.substr(equals + 1))};
}

/// `--inbound-proxy-protocol-send`, `--outbound-proxy-protocol-send`: off, v1 or v2.
inline std::optional<podproxy::ProxyProtocolVersion> parse_proxy_protocol_send(std::string_view flag,
                                                                                std::string_view text) {
  if (text == "off") return std::nullopt;
  if (text == "v1") return podproxy::ProxyProtocolVersion::v1;
  if (text == "v2") return podproxy::ProxyProtocolVersion::v2;
  throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not off, v1 or v2");
}

/// `--inbound-proxy-protocol-accept`, `--outbound-proxy-protocol-accept`: off, v1, v2 or any (either).
inline podproxy::ProxyProtocolAccept parse_proxy_protocol_accept(std::string_view flag, std::string_view text) {
  if (text == "off") return podproxy::ProxyProtocolAccept::off;
  if (text == "v1") return podproxy::ProxyProtocolAccept::v1;
  if (text == "v2") return podproxy::ProxyProtocolAccept::v2;
  if (text == "any") return podproxy::ProxyProtocolAccept::any;
  throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not off, v1, v2 or any");
}

/// An http://HOST:PORT/PATH URL with an IP address for HOST (what `wait --url` polls). No https: the
/// readiness endpoint is plain HTTP inside the pod.
struct HttpUrl {
  asio::ip::tcp::endpoint endpoint;
  std::string host_header;  ///< HOST:PORT as written
  std::string target;       ///< the path and query, "/" at least
};

inline HttpUrl parse_http_url(std::string_view flag, std::string_view text) {
  constexpr std::string_view scheme = "http://";
  if (text.substr(0, scheme.size()) != scheme) {
    throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not an http://HOST:PORT/PATH URL");
  }
  auto rest = text.substr(scheme.size());
  const auto slash = rest.find('/');
  const auto authority = rest.substr(0, slash);
  HttpUrl url{parse_endpoint(flag, authority), std::string(authority),
              slash == std::string_view::npos ? "/" : std::string(rest.substr(slash))};
  for (const char c : url.target) {
    if (c <= ' ' || c == 0x7f) {
      throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "': the path has a space or control character");
    }
  }
  return url;
}

}  // namespace sidecar
