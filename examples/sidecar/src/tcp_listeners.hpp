// Reading a namespace's TCP listeners from /proc/net/tcp and /proc/net/tcp6 (what `ss -ltn` shows),
// for `check-binds`.
#pragma once

#include <asio/ip/address.hpp>

#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar::binds {

struct TcpListener {
  asio::ip::address address;
  std::uint16_t port = 0;
  std::uint32_t uid = 0;
  /// IPV6_V6ONLY of an IPv6 listener, when known (from sock_diag; /proc does not show it).
  std::optional<bool> v6_only = std::nullopt;
};

namespace detail {

inline std::optional<std::uint32_t> hex32(std::string_view text) {
  std::uint32_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value, 16);
  if (text.empty() || ec != std::errc{} || ptr != end) return std::nullopt;
  return value;
}

/// The kernel prints each 32-bit word of the address as `%08X` of its in-memory (network order) value,
/// so copying the parsed word back into memory restores the address bytes on either endianness.
inline std::optional<asio::ip::address> proc_address(std::string_view hex) {
  if (hex.size() != 8 && hex.size() != 32) return std::nullopt;
  if (hex.size() == 8) {
    const auto word = hex32(hex);
    if (!word) return std::nullopt;
    asio::ip::address_v4::bytes_type bytes{};
    std::memcpy(bytes.data(), &*word, 4);
    return asio::ip::address_v4(bytes);
  }
  asio::ip::address_v6::bytes_type bytes{};
  for (std::size_t i = 0; i < 4; ++i) {
    const auto word = hex32(hex.substr(i * 8, 8));
    if (!word) return std::nullopt;
    std::memcpy(bytes.data() + i * 4, &*word, 4);
  }
  return asio::ip::address_v6(bytes);
}

inline std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  while (true) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos) break;
    line.remove_prefix(start);
    const auto end = line.find_first_of(" \t");
    out.push_back(line.substr(0, end));
    if (end == std::string_view::npos) break;
    line.remove_prefix(end);
  }
  return out;
}

}  // namespace detail

/// The listening sockets (state 0A) in the text of /proc/net/tcp or /proc/net/tcp6. Lines that do not
/// parse are skipped: the header, and anything a future kernel might add.
inline std::vector<TcpListener> parse_proc_net_tcp(std::string_view text) {
  constexpr std::string_view listen_state = "0A";
  std::vector<TcpListener> listeners;
  while (!text.empty()) {
    const auto eol = text.find('\n');
    const auto line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    const auto f = detail::fields(line);
    if (f.size() < 8 || f[3] != listen_state) continue;
    const auto colon = f[1].find(':');
    if (colon == std::string_view::npos) continue;
    const auto address = detail::proc_address(f[1].substr(0, colon));
    const auto port = detail::hex32(f[1].substr(colon + 1));
    std::uint32_t uid = 0;
    const auto [ptr, ec] = std::from_chars(f[7].data(), f[7].data() + f[7].size(), uid);
    if (!address || !port || *port > 0xffff || ec != std::errc{}) continue;
    (void)ptr;
    listeners.push_back({*address, static_cast<std::uint16_t>(*port), uid, std::nullopt});
  }
  return listeners;
}

}  // namespace sidecar::binds
