// Parsers for the flag values of `init` and `check-binds` that cli_util.hpp does not have (ids, marks,
// port lists with "*"). Each throws CLI::ValidationError naming the flag, as cli_util.hpp's do.
#pragma once

#include "capture_rules.hpp"
#include "cli_util.hpp"

#include <asio/ip/network_v4.hpp>
#include <asio/ip/network_v6.hpp>
#include <grp.h>
#include <net/if.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar {

/// A uid or gid: a whole number below 2^32 - 1 (the kernel's "no id").
inline std::uint32_t parse_id(std::string_view flag, std::string_view text) {
  std::uint32_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || ptr != end || value == UINT32_MAX) {
    throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not a numeric id (0-4294967294)");
  }
  return value;
}

/// A packet mark: a non-zero 32-bit number, decimal or 0x-prefixed hexadecimal (0 means "no mark").
inline std::uint32_t parse_mark(std::string_view flag, std::string_view text) {
  int base = 10;
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    base = 16;
    digits.remove_prefix(2);
  }
  std::uint32_t value = 0;
  const auto* end = digits.data() + digits.size();
  const auto [ptr, ec] = std::from_chars(digits.data(), end, value, base);
  if (digits.empty() || ec != std::errc{} || ptr != end || value == 0) {
    throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not a non-zero 32-bit mark");
  }
  return value;
}

/// "*" (every port: std::nullopt) or a comma-separated port list ("" captures none).
inline std::optional<std::vector<std::uint16_t>> parse_port_selection(std::string_view flag, std::string_view text) {
  if (text == "*") return std::nullopt;
  return parse_port_list(flag, text);
}

namespace detail {

/// The items of a comma-separated list; "" is the empty list, an empty item ("a,,b", "a,") is refused.
inline std::vector<std::string_view> split_list(std::string_view flag, std::string_view text, std::string_view what) {
  std::vector<std::string_view> items;
  if (text.empty()) return items;
  while (true) {
    const auto comma = text.find(',');
    const auto item = text.substr(0, comma);
    if (item.empty()) {
      throw CLI::ValidationError(std::string(flag), "an empty " + std::string(what) + " in the list '" +
                                                        std::string(text) + "'");
    }
    items.push_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    if (text.empty()) throw CLI::ValidationError(std::string(flag), "trailing ',' in the list");
  }
  return items;
}

}  // namespace detail

/// A comma-separated list of address ranges, IPv4 and IPv6 mixed ("10.0.0.0/8,fd00::/8"); "" is none.
/// A range with host bits set is taken as its network, as iptables does.
inline std::vector<capture::Cidr> parse_cidr_list(std::string_view flag, std::string_view text) {
  std::vector<capture::Cidr> ranges;
  for (const auto item : detail::split_list(flag, text, "range")) {
    const std::string s(item);
    std::error_code ec;
    if (s.find('/') == std::string::npos) ec = std::make_error_code(std::errc::invalid_argument);
    if (!ec && s.find(':') == std::string::npos) {
      const auto net = asio::ip::make_network_v4(s, ec);
      if (!ec) {
        ranges.push_back({capture::Family::v4, net.canonical().to_string(), net.address().is_loopback()});
        continue;
      }
    } else if (!ec) {
      const auto net = asio::ip::make_network_v6(s, ec);
      if (!ec) {
        const auto a = net.address();
        const bool loopback = a.is_loopback() || (a.is_v4_mapped() && a.to_bytes()[12] == 127);
        ranges.push_back({capture::Family::v6, net.canonical().to_string(), loopback});
        continue;
      }
    }
    throw CLI::ValidationError(std::string(flag), "'" + s + "' is not an address range (CIDR: 10.0.0.0/8, fd00::/8)");
  }
  return ranges;
}

/// "*" (every destination: std::nullopt) or a list of ranges ("" captures none).
inline std::optional<std::vector<capture::Cidr>> parse_cidr_selection(std::string_view flag, std::string_view text) {
  if (text == "*") return std::nullopt;
  return parse_cidr_list(flag, text);
}

/// A comma-separated list of interface names, each one the kernel could have (dev_valid_name: 1 to
/// IFNAMSIZ-1 bytes, not "." or "..", no '/', ':' or white space); "" is none.
inline std::vector<std::string> parse_interface_list(std::string_view flag, std::string_view text) {
  std::vector<std::string> names;
  for (const auto item : detail::split_list(flag, text, "interface name")) {
    const auto bad = [&](std::string_view why) {
      throw CLI::ValidationError(std::string(flag), "'" + std::string(item) + "' is not an interface name: " +
                                                        std::string(why));
    };
    if (item.size() >= IFNAMSIZ) bad("longer than " + std::to_string(IFNAMSIZ - 1) + " characters");
    if (item == "." || item == "..") bad("'.' and '..' are not names");
    for (const unsigned char c : item) {
      if (c == '/' || c == ':' || std::isspace(c) || std::iscntrl(c)) bad("no '/', ':' or white space allowed");
    }
    names.emplace_back(item);
  }
  return names;
}

/// A comma-separated list of groups, each a gid or the name of a group this system knows (iptables
/// resolves names when the rule is written, so an unknown one would fail there, after other rules).
inline std::vector<std::string> parse_group_list(std::string_view flag, std::string_view text) {
  std::vector<std::string> groups;
  for (const auto item : detail::split_list(flag, text, "group")) {
    const std::string s(item);
    if (std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) {
      groups.push_back(std::to_string(parse_id(flag, s)));
      continue;
    }
    const bool well_formed =
        s.size() <= 32 && (std::islower(static_cast<unsigned char>(s[0])) || s[0] == '_') &&
        std::all_of(s.begin(), s.end(), [](unsigned char c) {
          return std::islower(c) || std::isdigit(c) || c == '_' || c == '-' || c == '.';
        });
    if (!well_formed || ::getgrnam(s.c_str()) == nullptr) {
      throw CLI::ValidationError(std::string(flag), "'" + s + "' is neither a gid nor a group known here");
    }
    groups.push_back(s);
  }
  return groups;
}

}  // namespace sidecar
