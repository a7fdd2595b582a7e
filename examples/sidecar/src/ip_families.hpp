// Which address families the sidecar captures and serves: the --ip-families flag that `init` and `run`
// share, the families a pod can use (its addresses), and the families the capture rules of a network
// namespace actually capture (read back with iptables-save / ip6tables-save), for `run` and `check-binds`
// to find a captured family that no listener serves.
#pragma once

#include "capture_rules.hpp"
#include "cli_util.hpp"
#include "host_tools.hpp"

#include <asio/ip/address.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar::families {

using capture::Family;

/// The value of --ip-families.
enum class Choice { automatic, ipv4, ipv6, dual };

inline constexpr std::string_view choices_text = "auto, ipv4, ipv6 or dual";

inline Choice parse_choice(std::string_view flag, std::string_view text) {
  if (text == "auto") return Choice::automatic;
  if (text == "ipv4") return Choice::ipv4;
  if (text == "ipv6") return Choice::ipv6;
  if (text == "dual") return Choice::dual;
  throw CLI::ValidationError(std::string(flag), "'" + std::string(text) + "' is not an address family choice (" +
                                                    std::string(choices_text) + ")");
}

/// A set of address families.
struct Set {
  bool v4 = false;
  bool v6 = false;

  [[nodiscard]] bool has(Family family) const { return family == Family::v6 ? v6 : v4; }
  [[nodiscard]] bool empty() const { return !v4 && !v6; }
  [[nodiscard]] std::string text() const {
    return v4 && v6 ? "IPv4 and IPv6" : v4 ? "IPv4 only" : v6 ? "IPv6 only" : "none";
  }
};

inline const char* name(Family family) { return family == Family::v6 ? "IPv6" : "IPv4"; }

/// The families an explicit choice names (automatic names none: the caller decides).
inline Set of_choice(Choice choice) {
  return {.v4 = choice == Choice::ipv4 || choice == Choice::dual, .v6 = choice == Choice::ipv6 || choice == Choice::dual};
}

/// The families of a pod's addresses (as binds::current_pod_addresses lists them: no loopback, no
/// link-local IPv6): the families the pod can use, as Istio decides from the pod's IPs.
inline Set of_addresses(const std::vector<asio::ip::address>& addresses) {
  Set set;
  for (const auto& a : addresses) {
    if (a.is_v4() || a.to_v6().is_v4_mapped()) set.v4 = true;
    else set.v6 = true;
  }
  return set;
}

/// Whether this process's network namespace can have IPv6 rules and addresses at all: a kernel without
/// IPv6 (or booted with ipv6.disable=1) has no /proc/net/if_inet6.
inline bool kernel_has_ipv6() { return ::access("/proc/net/if_inet6", F_OK) == 0; }

/// Whether an IPv6 socket can be opened (what a `::` listener needs).
inline bool can_open_ipv6_socket() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

/// What the capture rules of one family do, as read back from iptables-save.
struct Capture {
  /// Some built-in chain jumps to a PODPROXY_ chain: traffic of this family is captured.
  bool captured = false;
  /// Where captured inbound connections go (nat REDIRECT --to-ports, or mangle TPROXY --on-port).
  std::optional<std::uint16_t> inbound_port;
  /// Where captured outbound connections go (nat REDIRECT --to-ports).
  std::optional<std::uint16_t> outbound_port;
};

namespace detail {

/// The number after `option ` in `rule`, if any (`--to-ports 15006`, `--on-port 15006`).
inline std::optional<std::uint16_t> port_after(std::string_view rule, std::string_view option) {
  const auto at = rule.find(option);
  if (at == std::string_view::npos) return std::nullopt;
  auto rest = rule.substr(at + option.size());
  unsigned value = 0;
  const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value);
  if (ec != std::errc{} || value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

}  // namespace detail

/// What `saved` (iptables-save or ip6tables-save output) captures. Only the hooks and the targets of the
/// redirecting chains are read, not the rest of the rules, so that rules added to the chains later
/// change nothing here.
inline Capture capture_of(std::string_view saved) {
  const auto state = capture::parse_saved(saved);
  Capture out;
  for (const auto& [table, t] : state.tables) {
    if (!t.hooks.empty()) out.captured = true;
    for (const std::string_view rule : t.rules) {
      if (rule.starts_with("-A PODPROXY_IN_REDIRECT ")) out.inbound_port = detail::port_after(rule, "--to-ports ");
      if (rule.starts_with("-A PODPROXY_TPROXY ")) out.inbound_port = detail::port_after(rule, "--on-port ");
      if (rule.starts_with("-A PODPROXY_REDIRECT ")) out.outbound_port = detail::port_after(rule, "--to-ports ");
    }
  }
  return out;
}

/// The capture of one family in the calling thread's network namespace, or why it cannot be known (no
/// iptables-save in PATH, no privilege to read the rules: reading netfilter's tables needs CAP_NET_ADMIN).
struct ReadCapture {
  std::optional<Capture> capture;
  std::string why_unknown;
};

inline ReadCapture read_capture(Family family) {
  const std::string tool = family == Family::v6 ? "ip6tables-save" : "iptables-save";
  if (family == Family::v6 && !kernel_has_ipv6()) return {Capture{}, {}};  // nothing can be captured
  if (host::find_in_path(tool).empty()) return {std::nullopt, "'" + tool + "' not found in PATH"};
  const auto result = host::run_tool({tool});
  if (result.status != 0) {
    auto err = result.err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    return {std::nullopt, fmt::format("'{}' failed (exit {}){}{}", tool, result.status,
                                      host::looks_like_permission_error(err) ? ", it needs CAP_NET_ADMIN" : "",
                                      err.empty() ? "" : ": " + err)};
  }
  return {capture_of(result.out), {}};
}

}  // namespace sidecar::families
