// Parsers for the flag values of `init` and `check-binds` that cli_util.hpp does not have (ids, marks,
// port lists with "*"). Each throws CLI::ValidationError naming the flag, as cli_util.hpp's do.
#pragma once

#include "cli_util.hpp"

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

}  // namespace sidecar
