// `run`'s flags as typed (RunFlags), what they mean once checked (Settings), and what follows from them
// alone: the proxy's own endpoints for the loop guard, the per-port default endpoints' targets.
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include "ip_families.hpp"
#include "istio_metrics.hpp"

#include <podproxy/proxy_options.hpp>
#include <podproxy/proxy_protocol.hpp>
#include <podproxy/upstream_target.hpp>

#include <CLI/CLI.hpp>
#include <asio/ip/tcp.hpp>
#include <spdlog/logger.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sidecar {

/// The flags as typed; `resolve` turns them into Settings (or a ValidationError naming the flag).
struct RunFlags {
  std::string mode = "redirect";
  std::string inbound_policy = "pod-ip";
  std::string relay = "splice";
  std::vector<std::string> default_endpoints;
  std::vector<std::string> pod_ips;
  std::optional<std::string> listen_address;  // unset: chosen from --ip-families
  std::string ip_families = "auto";
  std::string inbound_port = "15006";
  std::string outbound_port = "15001";
  std::string admin_port = "15000";
  std::string health_port = "15021";
  std::string metrics_port = "15020";
  std::optional<std::string> pod_labels_file;  // unset: Istio's /etc/istio/pod/labels when it exists
  std::string connect_timeout = "10s";
  std::string idle_timeout = "1h";
  std::string drain_timeout = "5s";
  std::string threads = "1";
  std::string batch_pause_us = std::to_string(podproxy::ProxyOptions{}.batch_pause.count());
  std::string uid = "1337";
  std::string gid = "1337";
  std::string mark;
  std::string tproxy_mark = "1337";
  std::string log_level = "info";
  bool no_access_log = false;
  std::string upstream_hints = "on";
  std::string inbound_pp_send = "off", inbound_pp_accept = "off", outbound_pp_send = "off", outbound_pp_accept = "off";
  std::string proxy_protocol_timeout = "5s";
};

struct Settings {
  bool tproxy = false;
  bool loopback_policy = false;
  bool buffered_relay = false;
  std::vector<std::pair<std::uint16_t, asio::ip::tcp::endpoint>> default_endpoints;
  std::vector<asio::ip::address> pod_ips;
  bool pod_ips_detected = false;
  asio::ip::address listen_address;
  /// IPV6_V6ONLY of the inbound and outbound listeners (an IPv6 listen address only).
  bool v6_only = false;
  /// The families the inbound and outbound listeners accept.
  families::Set served;
  /// Why /healthz/ready must not say 200 (a captured family that no listener serves), or "".
  std::string not_ready;
  std::uint16_t inbound_port = 0, outbound_port = 0, admin_port = 0, health_port = 0, metrics_port = 0;
  /// The labels of Istio's TCP metrics that describe this pod.
  PodIdentity pod;
  std::chrono::milliseconds connect_timeout{}, idle_timeout{}, drain_timeout{};
  unsigned threads = 1;
  std::chrono::microseconds batch_pause{};
  std::uint32_t uid = 0, gid = 0;
  std::optional<std::uint32_t> mark;
  std::uint32_t tproxy_mark = 0;
  bool access_log = true;
  bool upstream_hints = true;
  std::optional<podproxy::ProxyProtocolVersion> inbound_pp_send, outbound_pp_send;
  podproxy::ProxyProtocolAccept inbound_pp_accept{}, outbound_pp_accept{};
  std::chrono::milliseconds proxy_protocol_timeout{};
};

/// Declares every `run` flag on `cmd`, writing into `flags` (kept alive by the caller).
void add_run_flags(CLI::App& cmd, RunFlags& flags);

/// Checks the flags; throws CLI::ValidationError naming the first bad one.
[[nodiscard]] Settings resolve(const RunFlags& flags);

/// Compares the capture rules of this namespace with the families the listeners serve. Returns why the
/// sidecar must not become ready ("" when nothing is wrong, or when the rules cannot be read). Runs
/// before privileges are dropped: reading netfilter's tables needs CAP_NET_ADMIN.
[[nodiscard]] std::string check_captured_families(const Settings& s, spdlog::logger& log);

/// The endpoints that are this sidecar, on every address it may be dialed at: a proxy must never dial
/// one of them (the loop guard). A listener on an unspecified address matches loopback too (see
/// Proxy::is_self); the pod IPs are listed explicitly because an outbound connection arrives on
/// 127.0.0.1 and would not match them otherwise.
[[nodiscard]] std::vector<asio::ip::tcp::endpoint> own_endpoints(const Settings& s, std::uint16_t except);

/// Sources for delivering to a per-port default endpoint: a loopback target is reached from loopback (the
/// application sees 127.0.0.1, as Istio's defaultEndpoint does); a target on one of the pod's own
/// addresses is dialed from 127.0.0.6 (::6) like PodIpPolicy, so the capture rules let it through
/// instead of redirecting it back into the inbound listener; anything else leaves the source to the kernel.
[[nodiscard]] std::vector<std::pair<std::uint16_t, podproxy::UpstreamTarget>> override_targets(const Settings& s);

/// "10.0.0.5,fd00::5", or "none".
[[nodiscard]] std::string join(const std::vector<asio::ip::address>& addresses);

}  // namespace sidecar
