// The PROXY protocol (HAProxy's doc/proxy-protocol.txt), versions 1 and 2: a parser and a writer, pure
// functions over byte spans that never allocate.
#pragma once

#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

namespace podproxy {

enum class ProxyProtocolVersion : std::uint8_t { v1 = 1, v2 = 2 };

/// Which versions a listener accepts: HAProxy's `accept-proxy` takes either; a deployment that knows what
/// its balancer sends may accept only that.
enum class ProxyProtocolAccept : std::uint8_t { off = 0, v1 = 1, v2 = 2, any = 3 };

[[nodiscard]] constexpr bool accepts(ProxyProtocolAccept accept, ProxyProtocolVersion version) noexcept {
  return (static_cast<std::uint8_t>(accept) & static_cast<std::uint8_t>(version)) != 0;
}

/// What one header said.
struct ProxyHeader {
  ProxyProtocolVersion version = ProxyProtocolVersion::v1;
  /// Bytes the header takes on the wire: what follows belongs to the stream.
  std::size_t length = 0;
  /// v2 LOCAL: the balancer speaks for itself (a health check); the connection's own addresses stand.
  bool local = false;
  /// The client and the address it dialled, when the header names TCP over IPv4 or IPv6 (v1 TCP4/TCP6, v2
  /// PROXY with AF_INET/AF_INET6 and STREAM). Empty for LOCAL, v1 UNKNOWN, v2 AF_UNSPEC, AF_UNIX or a
  /// datagram transport: the spec has the receiver keep the connection's own addresses then.
  std::optional<asio::ip::tcp::endpoint> source{};
  std::optional<asio::ip::tcp::endpoint> destination{};
};

enum class ProxyParseStatus : std::uint8_t {
  complete,    ///< a whole, valid header: ProxyHeader::length bytes
  incomplete,  ///< a prefix of a valid header: read more (up to proxy_header_max_length)
  invalid,     ///< no more bytes can make this a valid header
};

struct ProxyParseResult {
  ProxyParseStatus status = ProxyParseStatus::invalid;
  ProxyHeader header{};
};

/// The longest v1 line, CRLF included (the spec's bound: a receiver reads no further).
inline constexpr std::size_t proxy_v1_max_length = 107;
/// The longest v2 header accepted. The spec lets the length field reach 65535; what senders emit (the
/// address block, an AWS or GCP endpoint id, ALPN, TLS facts) fits in a page, and a bound keeps a hostile
/// header from making the proxy hold many kilobytes per connection.
inline constexpr std::size_t proxy_v2_max_length = 4096;
inline constexpr std::size_t proxy_header_max_length = proxy_v2_max_length;
/// Room write_proxy_header() needs, whatever the version and families.
inline constexpr std::size_t proxy_header_max_written = proxy_v1_max_length;

namespace detail::proxy_protocol {

inline constexpr std::array<unsigned char, 12> v2_signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
inline constexpr std::string_view v1_prefix = "PROXY ";
inline constexpr std::size_t v2_fixed = 16;

/// Whether `bytes` (however short) agrees with `expected` as far as both go.
template <class Expected>
[[nodiscard]] constexpr bool agrees(std::span<const unsigned char> bytes, const Expected& expected) noexcept {
  const std::size_t n = std::min(bytes.size(), std::size(expected));
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes[i] != static_cast<unsigned char>(expected[i])) return false;
  }
  return true;
}

/// A port: 0..65535, decimal, no sign, no leading zero (the spec's examples; any sender prints it so).
[[nodiscard]] inline std::optional<std::uint16_t> parse_port(std::string_view text) noexcept {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  std::uint32_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

/// An address in the family the line named; inet_pton is strict (no leading zeros, no scope id).
[[nodiscard]] inline std::optional<asio::ip::address> parse_address(std::string_view text, bool v6) noexcept {
  char buffer[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buffer) return std::nullopt;
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  if (v6) {
    asio::ip::address_v6::bytes_type b{};
    if (::inet_pton(AF_INET6, buffer, b.data()) != 1) return std::nullopt;
    return asio::ip::address(asio::ip::address_v6(b));
  }
  asio::ip::address_v4::bytes_type b{};
  if (::inet_pton(AF_INET, buffer, b.data()) != 1) return std::nullopt;
  return asio::ip::address(asio::ip::address_v4(b));
}

[[nodiscard]] inline ProxyParseResult parse_v1(std::span<const unsigned char> bytes) noexcept {
  ProxyParseResult result;
  // The CR is at index 105 at the latest, so that CRLF ends within 107 bytes.
  const std::size_t last_cr = proxy_v1_max_length - 2;
  const std::size_t limit = std::min(bytes.size(), last_cr + 1);
  std::size_t cr = 0;
  for (; cr < limit; ++cr) {
    if (bytes[cr] == '\r') break;
    // Only printable ASCII is on a v1 line.
    if (bytes[cr] < 0x20 || bytes[cr] > 0x7e) return result;
  }
  if (cr == limit) {
    if (limit == last_cr + 1) return result;  // no CRLF where the spec says there must be one
    result.status = ProxyParseStatus::incomplete;
    return result;
  }
  if (cr + 1 == bytes.size()) {
    result.status = ProxyParseStatus::incomplete;
    return result;
  }
  if (bytes[cr + 1] != '\n') return result;
  const std::string_view line(reinterpret_cast<const char*>(bytes.data()) + v1_prefix.size(), cr - v1_prefix.size());
  result.header.version = ProxyProtocolVersion::v1;
  result.header.length = cr + 2;
  const auto space = line.find(' ');
  const std::string_view protocol = line.substr(0, space);
  if (protocol == "UNKNOWN") {  // the rest of the line, whatever it is, is ignored
    result.status = ProxyParseStatus::complete;
    return result;
  }
  if ((protocol != "TCP4" && protocol != "TCP6") || space == std::string_view::npos) return result;
  const bool v6 = protocol == "TCP6";
  std::string_view fields[4];
  std::string_view rest = line.substr(space + 1);
  for (int i = 0; i < 4; ++i) {
    const auto next = rest.find(' ');
    if ((i < 3) != (next != std::string_view::npos)) return result;  // exactly four fields, single spaces
    fields[i] = rest.substr(0, next);
    if (i < 3) rest = rest.substr(next + 1);
  }
  const auto source = parse_address(fields[0], v6);
  const auto destination = parse_address(fields[1], v6);
  const auto source_port = parse_port(fields[2]);
  const auto destination_port = parse_port(fields[3]);
  if (!source || !destination || !source_port || !destination_port) return result;
  result.header.source = asio::ip::tcp::endpoint(*source, *source_port);
  result.header.destination = asio::ip::tcp::endpoint(*destination, *destination_port);
  result.status = ProxyParseStatus::complete;
  return result;
}

[[nodiscard]] inline std::uint16_t read16(const unsigned char* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

[[nodiscard]] inline ProxyParseResult parse_v2(std::span<const unsigned char> bytes) noexcept {
  ProxyParseResult result;
  // Version and command, then family and transport: a wrong one is known as soon as its byte is.
  if (bytes.size() > 12) {
    const unsigned char version_command = bytes[12];
    if ((version_command >> 4) != 2 || (version_command & 0x0F) > 1) return result;
  }
  if (bytes.size() > 13) {
    const unsigned char family = bytes[13] >> 4;
    const unsigned char transport = bytes[13] & 0x0F;
    if (family > 3 || transport > 2) return result;
  }
  if (bytes.size() < v2_fixed) {
    result.status = ProxyParseStatus::incomplete;
    return result;
  }
  const std::size_t total = v2_fixed + read16(bytes.data() + 14);
  if (total > proxy_v2_max_length) return result;
  const bool local = (bytes[12] & 0x0F) == 0;
  const unsigned char family = bytes[13] >> 4;
  const unsigned char transport = bytes[13] & 0x0F;
  // The address block's size for the family (AF_UNSPEC has none); the length must cover it, LOCAL or not.
  const std::size_t addresses = family == 1 ? 12 : family == 2 ? 36 : family == 3 ? 216 : 0;
  if (total - v2_fixed < addresses) return result;
  if (bytes.size() < total) {
    result.status = ProxyParseStatus::incomplete;
    return result;
  }
  // TLVs fill the rest exactly: each type, a 16-bit length, that many bytes, none past the end.
  for (std::size_t at = v2_fixed + addresses; at < total;) {
    if (total - at < 3) return result;
    const std::size_t value = read16(bytes.data() + at + 1);
    if (total - at - 3 < value) return result;
    at += 3 + value;
  }
  result.header.version = ProxyProtocolVersion::v2;
  result.header.length = total;
  result.header.local = local;
  result.status = ProxyParseStatus::complete;
  if (local || transport != 1 || (family != 1 && family != 2)) return result;
  const unsigned char* a = bytes.data() + v2_fixed;
  if (family == 1) {
    asio::ip::address_v4::bytes_type source{}, destination{};
    std::memcpy(source.data(), a, 4);
    std::memcpy(destination.data(), a + 4, 4);
    result.header.source = asio::ip::tcp::endpoint(asio::ip::address_v4(source), read16(a + 8));
    result.header.destination = asio::ip::tcp::endpoint(asio::ip::address_v4(destination), read16(a + 10));
  } else {
    asio::ip::address_v6::bytes_type source{}, destination{};
    std::memcpy(source.data(), a, 16);
    std::memcpy(destination.data(), a + 16, 16);
    result.header.source = asio::ip::tcp::endpoint(asio::ip::address_v6(source), read16(a + 32));
    result.header.destination = asio::ip::tcp::endpoint(asio::ip::address_v6(destination), read16(a + 34));
  }
  return result;
}

}  // namespace detail::proxy_protocol

/// Parses the header at the start of `bytes` (what a socket has received so far, perhaps more than the
/// header: ProxyHeader::length says where the stream begins). Strict: a version `accept` does not name, a
/// signature that differs in any byte received, a v1 line without CRLF within 107 bytes, a field out of its
/// range or a v2 TLV that overruns the header is invalid, as soon as the byte that makes it so is seen.
[[nodiscard]] inline ProxyParseResult parse_proxy_header(std::span<const unsigned char> bytes,
                                                         ProxyProtocolAccept accept = ProxyProtocolAccept::any) noexcept {
  using namespace detail::proxy_protocol;
  ProxyParseResult result;
  if (bytes.empty()) {
    result.status = accept == ProxyProtocolAccept::off ? ProxyParseStatus::invalid : ProxyParseStatus::incomplete;
    return result;
  }
  if (accepts(accept, ProxyProtocolVersion::v2) && agrees(bytes, v2_signature)) {
    if (bytes.size() < v2_signature.size()) {
      result.status = ProxyParseStatus::incomplete;
      return result;
    }
    return parse_v2(bytes);
  }
  if (accepts(accept, ProxyProtocolVersion::v1) && agrees(bytes, v1_prefix)) {
    if (bytes.size() < v1_prefix.size()) {
      result.status = ProxyParseStatus::incomplete;
      return result;
    }
    return parse_v1(bytes);
  }
  return result;
}

/// Writes a PROXY header (the PROXY command, TCP) for a connection from `source` to `destination` into
/// `out`; returns its length, or 0 if `out` has fewer than proxy_header_max_written bytes. IPv4-mapped
/// addresses are written as IPv4; when one side is IPv4 and the other IPv6, both are written as IPv6
/// (the IPv4 one mapped), since a header has one family.
[[nodiscard]] inline std::size_t write_proxy_header(ProxyProtocolVersion version, const asio::ip::tcp::endpoint& source,
                                                    const asio::ip::tcp::endpoint& destination,
                                                    std::span<unsigned char> out) noexcept {
  using namespace detail::proxy_protocol;
  if (out.size() < proxy_header_max_written) return 0;
  const auto unmap = [](const asio::ip::address& a) {
    return a.is_v6() && a.to_v6().is_v4_mapped() ? asio::ip::address(asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()))
                                                  : a;
  };
  const auto as_v6 = [](const asio::ip::address& a) {
    return a.is_v4() ? asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4()) : a.to_v6();
  };
  const asio::ip::address s = unmap(source.address());
  const asio::ip::address d = unmap(destination.address());
  const bool v4 = s.is_v4() && d.is_v4();
  if (version == ProxyProtocolVersion::v1) {
    char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
    if (v4) {
      const auto sb = s.to_v4().to_bytes(), db = d.to_v4().to_bytes();
      (void)::inet_ntop(AF_INET, sb.data(), sa, sizeof sa);
      (void)::inet_ntop(AF_INET, db.data(), da, sizeof da);
    } else {
      const auto sb = as_v6(s).to_bytes(), db = as_v6(d).to_bytes();
      (void)::inet_ntop(AF_INET6, sb.data(), sa, sizeof sa);
      (void)::inet_ntop(AF_INET6, db.data(), da, sizeof da);
    }
    std::size_t n = 0;
    const auto put = [&](std::string_view text) {
      std::memcpy(out.data() + n, text.data(), text.size());
      n += text.size();
    };
    const auto put_port = [&](std::uint16_t port) {
      char digits[5];
      int count = 0;
      do {
        digits[count++] = static_cast<char>('0' + port % 10);
        port = static_cast<std::uint16_t>(port / 10);
      } while (port != 0);
      while (count > 0) out[n++] = static_cast<unsigned char>(digits[--count]);
    };
    put(v4 ? "PROXY TCP4 " : "PROXY TCP6 ");
    put(sa);
    put(" ");
    put(da);
    put(" ");
    put_port(source.port());
    put(" ");
    put_port(destination.port());
    put("\r\n");
    return n;
  }
  std::memcpy(out.data(), v2_signature.data(), v2_signature.size());
  out[12] = 0x21;                // version 2, PROXY
  out[13] = v4 ? 0x11 : 0x21;    // AF_INET or AF_INET6, STREAM
  const std::size_t addresses = v4 ? 12 : 36;
  out[14] = 0;
  out[15] = static_cast<unsigned char>(addresses);
  unsigned char* a = out.data() + v2_fixed;
  if (v4) {
    const auto sb = s.to_v4().to_bytes(), db = d.to_v4().to_bytes();
    std::memcpy(a, sb.data(), 4);
    std::memcpy(a + 4, db.data(), 4);
    a += 8;
  } else {
    const auto sb = as_v6(s).to_bytes(), db = as_v6(d).to_bytes();
    std::memcpy(a, sb.data(), 16);
    std::memcpy(a + 16, db.data(), 16);
    a += 32;
  }
  a[0] = static_cast<unsigned char>(source.port() >> 8);
  a[1] = static_cast<unsigned char>(source.port() & 0xFF);
  a[2] = static_cast<unsigned char>(destination.port() >> 8);
  a[3] = static_cast<unsigned char>(destination.port() & 0xFF);
  return v2_fixed + addresses;
}

}  // namespace podproxy
