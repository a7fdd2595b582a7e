// `run`'s flags: declared, checked, and what follows from them alone (see run_settings.hpp).
#include "run_settings.hpp"

#include "cli_util.hpp"
#include "run_flags.hpp"

#include <podproxy/endpoint_text.hpp>
#include <podproxy/policy/pod_ip_policy.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

namespace sidecar {

namespace {

/// The listen address and the families it serves, from --listen-address and --ip-families. Without
/// --listen-address the listeners take `::` with IPV6_V6ONLY off (IPv4 arrives v4-mapped, which the
/// acceptor unmaps), so that every family the capture rules may send is served; 0.0.0.0 only where the
/// kernel cannot open an IPv6 socket.
void resolve_listen_address(const RunFlags& f, Settings& s) {
  const auto choice = families::parse_choice("--ip-families", f.ip_families);
  const bool ipv6_works = families::can_open_ipv6_socket();
  if (!f.listen_address) {
    if (choice == families::Choice::ipv4 || (choice == families::Choice::automatic && !ipv6_works)) {
      s.listen_address = asio::ip::address_v4::any();
      s.served = {.v4 = true, .v6 = false};
      return;
    }
    if (!ipv6_works) {
      throw CLI::ValidationError("--ip-families", "'" + f.ip_families + "' needs IPv6, and this kernel cannot open an "
                                                  "IPv6 socket");
    }
    s.listen_address = asio::ip::address_v6::any();
    s.v6_only = choice == families::Choice::ipv6;
    s.served = {.v4 = !s.v6_only, .v6 = true};
    return;
  }
  s.listen_address = parse_address("--listen-address", *f.listen_address);
  const auto& a = s.listen_address;
  if (a.is_v4() || a.to_v6().is_v4_mapped()) {
    s.served = {.v4 = true, .v6 = false};
  } else if (a.is_unspecified()) {
    s.v6_only = choice == families::Choice::ipv6;
    s.served = {.v4 = !s.v6_only, .v6 = true};
  } else {
    s.served = {.v4 = false, .v6 = true};
  }
  if (choice != families::Choice::automatic) {
    const auto wanted = families::of_choice(choice);
    if (wanted.v4 != s.served.v4 || wanted.v6 != s.served.v6) {
      throw CLI::ValidationError("--listen-address", "'" + *f.listen_address + "' serves " + s.served.text() +
                                                         ", not --ip-families " + f.ip_families);
    }
  }
}

}  // namespace

std::string check_captured_families(const Settings& s, spdlog::logger& log) {
  std::string problem;
  for (const auto family : {capture::Family::v4, capture::Family::v6}) {
    const auto read = families::read_capture(family);
    if (!read.capture) {
      log.info("cannot read the {} capture rules ({}): whether this sidecar listens for every captured address "
               "family is not checked", families::name(family), read.why_unknown);
      continue;
    }
    if (!read.capture->captured || s.served.has(family)) continue;
    const bool v6 = family == capture::Family::v6;
    problem += fmt::format(
        "{}{} connections are captured ({} has PODPROXY_ rules{}) but this sidecar listens on {} ({}): every one "
        "would be refused. Fix: run with --ip-families dual (the default without --listen-address), or capture {} "
        "only (init --ip-families {})",
        problem.empty() ? "" : "; ", families::name(family), v6 ? "ip6tables" : "iptables",
        read.capture->inbound_port ? fmt::format(", inbound to port {}", *read.capture->inbound_port) : "",
        podproxy::to_text({s.listen_address, s.inbound_port}), s.served.text(), v6 ? "IPv4" : "IPv6", v6 ? "ipv4" : "ipv6");
  }
  return problem;
}

Settings resolve(const RunFlags& f) {
  Settings s;
  s.tproxy = f.mode == "tproxy";
  s.loopback_policy = f.inbound_policy == "loopback";
  s.buffered_relay = f.relay == "buffered";
  for (const auto& text : f.default_endpoints) {
    s.default_endpoints.push_back(parse_default_endpoint("--inbound-default-endpoint", text));
  }
  std::vector<std::uint16_t> ports;
  for (const auto& [port, target] : s.default_endpoints) ports.push_back(port);
  std::ranges::sort(ports);
  if (const auto twice = std::ranges::adjacent_find(ports); twice != ports.end()) {
    throw CLI::ValidationError("--inbound-default-endpoint", "port " + std::to_string(*twice) + " is given twice");
  }
  for (const auto& text : f.pod_ips) {
    const auto address = parse_address("--pod-ip", text);
    if (address.is_loopback() || address.is_unspecified() || address.is_multicast()) {
      throw CLI::ValidationError("--pod-ip", "'" + text + "' cannot be a pod's address");
    }
    s.pod_ips.push_back(address);
  }
  resolve_listen_address(f, s);
  s.inbound_port = parse_port("--inbound-port", f.inbound_port);
  s.outbound_port = parse_port("--outbound-port", f.outbound_port);
  s.admin_port = parse_port("--admin-port", f.admin_port);
  s.health_port = parse_port("--health-port", f.health_port);
  s.metrics_port = parse_port("--metrics-port", f.metrics_port);
  const std::vector<std::pair<const char*, std::uint16_t>> named{{"--inbound-port", s.inbound_port},
                                                                  {"--outbound-port", s.outbound_port},
                                                                  {"--admin-port", s.admin_port},
                                                                  {"--health-port", s.health_port},
                                                                  {"--metrics-port", s.metrics_port}};
  for (std::size_t i = 0; i < named.size(); ++i) {
    for (std::size_t j = i + 1; j < named.size(); ++j) {
      if (named[i].second == named[j].second) {
        throw CLI::ValidationError(named[j].first, std::to_string(named[j].second) + " is already " + named[i].first);
      }
    }
  }
  s.connect_timeout = parse_duration("--connect-timeout", f.connect_timeout);
  if (s.connect_timeout.count() == 0) throw CLI::ValidationError("--connect-timeout", "must be more than 0");
  s.idle_timeout = parse_duration("--idle-timeout", f.idle_timeout);
  s.drain_timeout = parse_duration("--drain-timeout", f.drain_timeout);
  s.threads = static_cast<unsigned>(parse_number("--threads", f.threads, 1, 256));
  s.batch_pause = std::chrono::microseconds(
      parse_number("--batch-pause-us", f.batch_pause_us, 0,
                   static_cast<std::uint64_t>(podproxy::ProxyOptions::max_batch_pause.count())));
  s.uid = parse_id("--uid", f.uid);
  s.gid = parse_id("--gid", f.gid);
  if (!f.mark.empty()) s.mark = parse_mark("--mark", f.mark);
  s.tproxy_mark = parse_mark("--tproxy-mark", f.tproxy_mark);
  if (s.tproxy && s.mark == s.tproxy_mark) {
    // Outbound sockets with the TPROXY mark would be routed to lo by the fwmark rule and never leave.
    throw CLI::ValidationError("--mark", std::to_string(*s.mark) + " is the --tproxy-mark; give the proxy another mark");
  }
  s.access_log = !f.no_access_log;
  s.upstream_hints = f.upstream_hints == "on";
  s.pod = pod_identity_of_process(f.pod_labels_file);
  s.inbound_pp_send = parse_proxy_protocol_send("--inbound-proxy-protocol-send", f.inbound_pp_send);
  s.outbound_pp_send = parse_proxy_protocol_send("--outbound-proxy-protocol-send", f.outbound_pp_send);
  s.inbound_pp_accept = parse_proxy_protocol_accept("--inbound-proxy-protocol-accept", f.inbound_pp_accept);
  s.outbound_pp_accept = parse_proxy_protocol_accept("--outbound-proxy-protocol-accept", f.outbound_pp_accept);
  s.proxy_protocol_timeout = parse_duration("--proxy-protocol-timeout", f.proxy_protocol_timeout);
  if (s.proxy_protocol_timeout.count() == 0) throw CLI::ValidationError("--proxy-protocol-timeout", "must be more than 0");
  return s;
}

std::vector<asio::ip::tcp::endpoint> own_endpoints(const Settings& s, std::uint16_t except) {
  std::vector<asio::ip::tcp::endpoint> out;
  for (const std::uint16_t port : {s.inbound_port, s.outbound_port, s.health_port, s.metrics_port}) {
    if (port == except) continue;
    out.emplace_back(s.listen_address, port);
    for (const auto& ip : s.pod_ips) out.emplace_back(ip, port);
  }
  out.emplace_back(asio::ip::address_v4::loopback(), s.admin_port);
  return out;
}

std::string join(const std::vector<asio::ip::address>& addresses) {
  std::string out;
  for (const auto& a : addresses) out += (out.empty() ? "" : ",") + a.to_string();
  return out.empty() ? "none" : out;
}

std::vector<std::pair<std::uint16_t, podproxy::UpstreamTarget>> override_targets(const Settings& s) {
  const podproxy::PodIpPolicy pod_ip;
  std::vector<std::pair<std::uint16_t, podproxy::UpstreamTarget>> out;
  for (const auto& [port, endpoint] : s.default_endpoints) {
    podproxy::UpstreamTarget target{.endpoint = endpoint};
    if (std::ranges::find(s.pod_ips, endpoint.address()) != s.pod_ips.end()) {
      target.source = endpoint.address().is_v6() ? pod_ip.source_v6 : pod_ip.source_v4;
    }
    out.emplace_back(port, target);
  }
  return out;
}

void add_run_flags(CLI::App& cmd, RunFlags& flags) {
  cmd.add_option("--mode", flags.mode, "redirect (iptables REDIRECT capture) or tproxy (TPROXY: the application sees the real client)")
      ->check(CLI::IsMember({"redirect", "tproxy"}))->type_name("MODE")->capture_default_str();
  cmd.add_option("--inbound-policy", flags.inbound_policy,
                      "loopback: dial 127.0.0.1:PORT (Istio <= 1.9); pod-ip: dial the original destination from 127.0.0.6 (Istio >= 1.10)")
      ->check(CLI::IsMember({"loopback", "pod-ip"}))->type_name("POLICY")->capture_default_str();
  cmd.add_option("--inbound-default-endpoint", flags.default_endpoints,
                      "PORT=HOST:PORT: send inbound connections for PORT there instead (repeatable; Istio's Sidecar defaultEndpoint)")
      ->allow_extra_args(false)->type_name("PORT=HOST:PORT");
  cmd.add_option("--relay", flags.relay, "splice (zero-copy) or buffered")
      ->check(CLI::IsMember({"splice", "buffered"}))->type_name("RELAY")->capture_default_str();
  cmd.add_option("--pod-ip", flags.pod_ips,
                      "the pod's address (repeatable; default: the addresses of the non-loopback interfaces), for the loop guard")
      ->allow_extra_args(false)->type_name("IP");
  cmd.add_option("--ip-families", flags.ip_families,
                      "address families the listeners serve: auto (both, on :: with IPv4 v4-mapped, where the kernel has "
                      "IPv6; else IPv4), ipv4 (0.0.0.0), ipv6 (:: IPv6 only) or dual (::); init --ip-families takes the same values")
      ->type_name("FAMILIES")->capture_default_str();
  cmd.add_option("--listen-address", flags.listen_address,
                      "address of the inbound, outbound and health listeners (default: from --ip-families; :: serves both families)")
      ->type_name("IP");
  cmd.add_option("--inbound-port", flags.inbound_port, "inbound listener port")->type_name("PORT")->capture_default_str();
  cmd.add_option("--outbound-port", flags.outbound_port, "outbound listener port")->type_name("PORT")->capture_default_str();
  cmd.add_option("--admin-port", flags.admin_port,
                 "admin port on 127.0.0.1 (GET /stats, /ready; POST /quitquitquit: drain, then exit 0; POST "
                 "/drain_listeners: stop accepting, keep connections, readiness 503)")->type_name("PORT")->capture_default_str();
  cmd.add_option("--health-port", flags.health_port, "health port (GET /healthz/ready)")->type_name("PORT")->capture_default_str();
  cmd.add_option("--metrics-port", flags.metrics_port,
                 "merged-metrics port, Istio's (GET /stats/prometheus: Istio's TCP metrics and the counters of /stats; "
                 "POST /quitquitquit from the pod itself)")
      ->type_name("PORT")->capture_default_str();
  cmd.add_option("--pod-labels-file", flags.pod_labels_file,
                 "the pod's labels as the downward API writes them (Istio's injector mounts them at "
                 "/etc/istio/pod/labels, read when present): app, version and canonical service labels of the metrics")
      ->type_name("PATH");
  cmd.add_option("--connect-timeout", flags.connect_timeout, "upstream connect timeout (ms, s, m, h)")->type_name("DURATION")->capture_default_str();
  cmd.add_option("--idle-timeout", flags.idle_timeout, "close a connection idle this long; 0 disables")->type_name("DURATION")->capture_default_str();
  cmd.add_option("--drain-timeout", flags.drain_timeout, "on SIGTERM, how long in-flight connections may finish")->type_name("DURATION")->capture_default_str();
  cmd.add_option("--threads", flags.threads, "threads, each with its own io_context and SO_REUSEPORT listeners (1-256)")->type_name("N")->capture_default_str();
  cmd.add_option("--batch-pause-us", flags.batch_pause_us,
                      "after a wake-up that handled events, pause this long (0-1000 us) and look again before blocking; 0 disables")
      ->type_name("US")->capture_default_str();
  cmd.add_option("--uid", flags.uid, "after binding, become this uid (init's --proxy-uid); the current uid keeps it")->type_name("UID")->capture_default_str();
  cmd.add_option("--gid", flags.gid, "after binding, become this gid (init's --proxy-gid)")->type_name("GID")->capture_default_str();
  cmd.add_option("--mark", flags.mark, "SO_MARK on upstream sockets (init's --proxy-mark); keeps CAP_NET_ADMIN")->type_name("MARK");
  cmd.add_option("--tproxy-mark", flags.tproxy_mark,
                      "with --mode tproxy: SO_MARK on inbound deliveries, so the application's replies route back to the proxy")
      ->type_name("MARK")->capture_default_str();
  cmd.add_option("--log-level", flags.log_level, "stderr log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))->type_name("LEVEL")->capture_default_str();
  cmd.add_flag("--no-access-log", flags.no_access_log, "do not write the access log");
  cmd.add_option("--upstream-hints", flags.upstream_hints,
                 "on: a failed inbound connect's access-log line says why (hint=\"...\"), from the pod's listeners, "
                 "counted per reason on /stats; off: neither")
      ->check(CLI::IsMember({"on", "off"}))->type_name("on|off")->capture_default_str();
  for (const auto& [direction, send, accept] :
       {std::tuple{"inbound", &flags.inbound_pp_send, &flags.inbound_pp_accept},
        std::tuple{"outbound", &flags.outbound_pp_send, &flags.outbound_pp_accept}}) {
    cmd.add_option(fmt::format("--{}-proxy-protocol-send", direction), *send,
                   fmt::format("off, v1 or v2: write a PROXY protocol header (the client, the original destination) "
                               "to each {} upstream before its first byte (HAProxy send-proxy)", direction))
        ->type_name("VERSION")->capture_default_str();
    cmd.add_option(fmt::format("--{}-proxy-protocol-accept", direction), *accept,
                   fmt::format("off, v1, v2 or any: each {} client must send a PROXY protocol header first (HAProxy "
                               "accept-proxy); its client address is logged and passed on, its destination ignored",
                               direction))
        ->type_name("VERSION")->capture_default_str();
  }
  cmd.add_option("--proxy-protocol-timeout", flags.proxy_protocol_timeout,
                 "how long a client may take to send its PROXY protocol header")
      ->type_name("DURATION")->capture_default_str();
}

}  // namespace sidecar
