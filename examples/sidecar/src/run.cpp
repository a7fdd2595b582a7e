// `run`: the sidecar proper. An inbound listener (15006) and an outbound listener (15001) built from the
// library, the admin endpoint (127.0.0.1:15000: /stats, /ready), the health endpoint (15021:
// /healthz/ready), one access-log line per connection on stdout, and a drain on SIGTERM.
//
// Threads: a podproxy::WorkerGroup of --threads workers, each an io_context with an inbound and an outbound
// Proxy of its own on SO_REUSEPORT listeners (the group's comment says why). The admin and health servers
// and the signals run on the first worker.
#include "access_log.hpp"
#include "cli_util.hpp"
#include "commands.hpp"
#include "http.hpp"
#include "ip_families.hpp"
#include "process.hpp"
#include "prometheus.hpp"
#include "run_flags.hpp"
#include "tproxy_policy.hpp"
#include "upstream_hints.hpp"

#include <podproxy/podproxy.hpp>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sidecar {

namespace {

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
  std::uint16_t inbound_port = 0, outbound_port = 0, admin_port = 0, health_port = 0;
  std::chrono::milliseconds connect_timeout{}, idle_timeout{}, drain_timeout{};
  unsigned threads = 1;
  std::chrono::microseconds batch_pause{};
  std::uint32_t uid = 0, gid = 0;
  std::optional<std::uint32_t> mark;
  std::uint32_t tproxy_mark = 0;
  bool access_log = true;
  bool upstream_hints = true;
};

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

/// Compares the capture rules of this namespace with the families the listeners serve. Returns why the
/// sidecar must not become ready ("" when nothing is wrong, or when the rules cannot be read). Runs
/// before privileges are dropped: reading netfilter's tables needs CAP_NET_ADMIN.
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
        endpoint_text({s.listen_address, s.inbound_port}), s.served.text(), v6 ? "IPv4" : "IPv6", v6 ? "ipv4" : "ipv6");
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
  const std::vector<std::pair<const char*, std::uint16_t>> named{{"--inbound-port", s.inbound_port},
                                                                  {"--outbound-port", s.outbound_port},
                                                                  {"--admin-port", s.admin_port},
                                                                  {"--health-port", s.health_port}};
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
  return s;
}

/// The endpoints that are this sidecar, on every address it may be dialed at: a proxy must never dial
/// one of them (the loop guard). A listener on an unspecified address matches loopback too (see
/// Proxy::is_self); the pod IPs are listed explicitly because an outbound connection arrives on
/// 127.0.0.1 and would not match them otherwise.
std::vector<asio::ip::tcp::endpoint> own_endpoints(const Settings& s, std::uint16_t except) {
  std::vector<asio::ip::tcp::endpoint> out;
  for (const std::uint16_t port : {s.inbound_port, s.outbound_port, s.health_port}) {
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

/// Sources for delivering to a per-port default endpoint: a loopback target is reached from loopback (the
/// application sees 127.0.0.1, as Istio's defaultEndpoint does); a target on one of the pod's own
/// addresses is dialed from 127.0.0.6 (::6) like PodIpPolicy, so the capture rules let it through
/// instead of redirecting it back into the inbound listener; anything else leaves the source to the kernel.
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

/// The admin and health servers' bounds: ServerOptions' defaults, with fewer connections when the
/// descriptor limit is low, so that clients of the two servers can never take the descriptors the proxies
/// need (each held connection is one descriptor).
http::ServerOptions http_server_options() {
  http::ServerOptions options;
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY) {
    options.max_connections =
        std::clamp<std::size_t>(files.rlim_cur / 8, 16, options.max_connections);
  }
  return options;
}

/// Everything `run` serves, for one combination of destination source, inbound policy and relay.
template <class Source, class InboundPolicy, class Relay>
int serve(const Settings& s, InboundPolicy inbound_policy, Relay relay, const podproxy::PipePool* pool) {
  auto log = spdlog::default_logger();
  std::shared_ptr<spdlog::logger> access;
  if (s.access_log) {
    access = std::make_shared<spdlog::logger>("access", std::make_shared<spdlog::sinks::stdout_sink_mt>());
    access->set_pattern("%v");
    access->flush_on(spdlog::level::info);
  }
  hints::UpstreamHints upstream_hints(s.loopback_policy, s.default_endpoints, s.pod_ips);  // as root: see its comment
  const auto access_logger = [&](std::string_view listener, bool hinted) -> std::function<void(const podproxy::ConnectionRecord&)> {
    hints::UpstreamHints* explain = hinted && s.upstream_hints ? &upstream_hints : nullptr;
    if (!access && !explain) return {};
    return [access, listener, explain](const podproxy::ConnectionRecord& record) {
      const auto hint = explain ? explain->hint_for(record) : std::nullopt;
      if (access) access->info(access_log_line(listener, record, hint));
    };
  };

  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};

  const podproxy::ProxyOptions inbound_options{.connect_timeout = s.connect_timeout,
                                               .idle_timeout = s.idle_timeout,
                                               .upstream_mark = s.tproxy ? std::optional(s.tproxy_mark) : s.mark,
                                               .own_endpoints = own_endpoints(s, s.inbound_port),
                                               .on_complete = access_logger("inbound", true),
                                               .batch_pause = s.batch_pause};
  const podproxy::ProxyOptions outbound_options{.connect_timeout = s.connect_timeout,
                                                .idle_timeout = s.idle_timeout,
                                                .upstream_mark = s.mark,
                                                .own_endpoints = own_endpoints(s, s.outbound_port),
                                                .on_complete = access_logger("outbound", false),
                                                .batch_pause = s.batch_pause};

  // Bind everything first (as root, if we are), so that a port in use or a missing privilege fails here,
  // before any listener is announced ready. Each of the --threads workers gets a proxy per listener.
  podproxy::WorkerGroup workers(s.threads);
  podproxy::WorkerListener inbound, outbound;
  std::unique_ptr<http::Server> admin, health;
  const auto status_text = [&] {
    return draining.load() ? "DRAINING\n" : ready.load() ? "LIVE\n" : "PRE_INITIALIZING\n";
  };
  const auto readiness = [&](const http::Request&) {
    // A captured family that no listener serves: never ready, and the body says why and what to change.
    if (!s.not_ready.empty() && !draining.load()) return http::Response{503, "NOT_READY: " + s.not_ready + "\n"};
    return http::Response{ready.load() && !draining.load() ? 200 : 503, status_text()};
  };
  try {
    inbound = workers.add<Source>(
        {.endpoint = {s.listen_address, s.inbound_port}, .transparent = s.tproxy, .v6_only = s.v6_only},
        inbound_policy, relay, inbound_options);
    outbound = workers.add({.endpoint = {s.listen_address, s.outbound_port}, .v6_only = s.v6_only},
                           podproxy::PodIpPolicy::without_source_bind(), relay, outbound_options);
    const http::ServerOptions http_options = http_server_options();
    admin = std::make_unique<http::Server>(
        workers.context(0).get_executor(), asio::ip::tcp::endpoint{asio::ip::address_v4::loopback(), s.admin_port},
        [&](const http::Request& request) -> http::Response {
          if (request.path == "/stats") {
            return {200, prometheus_text({{"inbound", inbound.stats.get()}, {"outbound", outbound.stats.get()}}, pool) +
                             upstream_hints.prometheus_text(),
                    "text/plain; version=0.0.4; charset=utf-8"};
          }
          if (request.path == "/binds") {
            const auto json = upstream_hints.binds_json();
            return json ? http::Response{200, *json, "application/json"} : http::Response{503, "cannot read the listeners\n"};
          }
          if (request.path == "/ready") return readiness(request);
          return {404, "not found: try /stats, /ready or /binds\n"};
        },
        http_options);
    health = std::make_unique<http::Server>(workers.context(0).get_executor(),
                                            asio::ip::tcp::endpoint{s.listen_address, s.health_port},
                                            [&](const http::Request& request) -> http::Response {
                                              if (request.path == "/healthz/ready") return readiness(request);
                                              return {404, "not found: try /healthz/ready\n"};
                                            },
                                            http_options);
  } catch (const std::system_error& e) {
    log->error("{}", e.what());
    if (e.code() == std::errc::operation_not_permitted) {
      log->error("--mode tproxy needs CAP_NET_ADMIN (IP_TRANSPARENT)");
    }
    return 1;
  }

  // Every socket is bound: now become the proxy user, whose connections the capture rules let through.
  const bool keep_net_admin = s.tproxy || s.mark.has_value();
  if (const auto error = drop_privileges(s.uid, s.gid, keep_net_admin); !error.empty()) {
    log->error("{}", error);
    return usage_exit;
  }
  if (::geteuid() == 0 && !s.mark) {
    log->warn("running as root without --mark: unless the capture rules exempt uid 0, this proxy's own "
              "connections will be captured again (use --uid/--gid, or --mark with init --proxy-mark)");
  }
  if (keep_net_admin && !has_net_admin()) {
    log->error("{} needs CAP_NET_ADMIN on every upstream socket, and this process does not have it",
               s.tproxy ? "--mode tproxy" : "--mark");
    return usage_exit;
  }

  // The admin and health servers and the signals run on the first worker's io_context.
  asio::io_context& io = workers.context(0);
  asio::signal_set signals(io, SIGTERM, SIGINT);
  int exit_status = 0;
  std::function<void(std::error_code, int)> on_signal = [&](std::error_code ec, int number) {
    if (ec) return;
    if (draining.exchange(true)) {
      log->warn("signal {} again: exiting without waiting for {} connection(s)", number, workers.active());
      exit_status = 1;
      workers.halt();
      return;
    }
    log->info("signal {}: no longer accepting; draining {} connection(s) for up to {} ms", number,
              workers.active(), s.drain_timeout.count());
    // Called from the thread of the proxy that finished last.
    workers.stop(s.drain_timeout, [&] {
      log->info("drained: every connection is done; exiting");
      admin->close();
      health->close();
      workers.halt();
    });
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);

  workers.start();
  admin->start();
  health->start();
  // Ready once the io_context runs the accept loops (the listening sockets queue connections already).
  asio::post(io, [&] {
    ready = true;
    if (!s.not_ready.empty()) {
      log->error("serving, but NOT ready (/healthz/ready answers 503): {}", s.not_ready);
    }
    log->info("{}: inbound {} ({}; {} policy{}{}), outbound {}, admin {}, health {}; relay {}, {} thread(s), pod IPs {}{}",
              s.not_ready.empty() ? "ready" : "listening", endpoint_text(inbound.local_endpoint),
              s.served.text(), s.loopback_policy ? "loopback" : "pod-ip",
              s.default_endpoints.empty() ? "" : fmt::format(", {} default endpoint(s)", s.default_endpoints.size()),
              s.tproxy ? ", tproxy" : "", endpoint_text(outbound.local_endpoint),
              endpoint_text(admin->local_endpoint()), endpoint_text(health->local_endpoint()),
              s.buffered_relay ? "buffered" : "splice", s.threads, join(s.pod_ips),
              s.pod_ips_detected ? " (detected)" : "");
  });

  workers.run();
  return exit_status;
}

template <class Source, class Policy>
int with_relay(const Settings& s, Policy policy) {
  if (s.buffered_relay) return serve<Source>(s, std::move(policy), podproxy::BufferedRelay{}, nullptr);
  auto pool = std::make_shared<podproxy::PipePool>();
  return serve<Source>(s, std::move(policy), podproxy::SpliceRelay{pool}, pool.get());
}

template <class Inner>
int with_mode(const Settings& s, Inner inner) {
  podproxy::PortOverride<Inner> policy(std::move(inner), override_targets(s));
  if (s.tproxy) {
    // TPROXY: the listener is transparent, the original destination is the accepted socket's local
    // address, and the application is dialed from the client's own address (from loopback when the
    // target is loopback: see OriginalSourceOffLoopback).
    using Policy = OriginalSourceOffLoopback<podproxy::PortOverride<Inner>>;
    static_assert(podproxy::concepts::UpstreamPolicy<Policy>);
    return with_relay<podproxy::LocalAddress>(s, Policy(std::move(policy)));
  }
  return with_relay<podproxy::RedirectedOrLocal>(s, std::move(policy));
}

int run(const RunFlags& flags) {
  Settings s = resolve(flags);
  auto log = spdlog::stderr_color_mt("podproxy-sidecar");
  log->set_pattern("[%Y-%m-%dT%H:%M:%S.%eZ] [%^%l%$] %v", spdlog::pattern_time_type::utc);
  log->set_level(spdlog::level::from_str(flags.log_level));
  spdlog::set_default_logger(log);
  s.not_ready = check_captured_families(s, *log);
  if (!s.not_ready.empty()) log->error("{}", s.not_ready);
  if (s.pod_ips.empty()) {
    s.pod_ips = detect_pod_ips();
    s.pod_ips_detected = true;
    if (s.pod_ips.empty()) {
      log->warn("no pod IP given (--pod-ip) or found on a non-loopback interface: the loop guard knows only "
                "loopback and the listener addresses");
    }
  }
  if (s.loopback_policy) return with_mode(s, podproxy::LoopbackPolicy{});
  return with_mode(s, podproxy::PodIpPolicy{});
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto flags = std::make_shared<RunFlags>();
  auto* run_cmd = app.add_subcommand("run", "Serve the inbound and outbound listeners, the admin and the health endpoints");
  run_cmd->footer(
      "Access log: one line per connection on stdout,\n"
      "  [TIME] LISTENER PEER -> ORIGINAL_DST upstream=HOST:PORT src=HOST:PORT rx=N tx=N dur_ms=N flags=F end=E error=\"...\"|-\n"
      "  (rx: bytes from the client, tx: bytes to it; flags: - UF UT NR UR DR SI DT), then hint=\"...\" when a failed\n"
      "  inbound connect has an explanation (--upstream-hints). Logs go to stderr.\n"
      "Exit status: 0 after a drain (SIGTERM/SIGINT), 1 when a listener cannot be opened, 2 for a bad flag or\n"
      "a privilege that cannot be had.");
  run_cmd->add_option("--mode", flags->mode, "redirect (iptables REDIRECT capture) or tproxy (TPROXY: the application sees the real client)")
      ->check(CLI::IsMember({"redirect", "tproxy"}))->type_name("MODE")->capture_default_str();
  run_cmd->add_option("--inbound-policy", flags->inbound_policy,
                      "loopback: dial 127.0.0.1:PORT (Istio <= 1.9); pod-ip: dial the original destination from 127.0.0.6 (Istio >= 1.10)")
      ->check(CLI::IsMember({"loopback", "pod-ip"}))->type_name("POLICY")->capture_default_str();
  run_cmd->add_option("--inbound-default-endpoint", flags->default_endpoints,
                      "PORT=HOST:PORT: send inbound connections for PORT there instead (repeatable; Istio's Sidecar defaultEndpoint)")
      ->allow_extra_args(false)->type_name("PORT=HOST:PORT");
  run_cmd->add_option("--relay", flags->relay, "splice (zero-copy) or buffered")
      ->check(CLI::IsMember({"splice", "buffered"}))->type_name("RELAY")->capture_default_str();
  run_cmd->add_option("--pod-ip", flags->pod_ips,
                      "the pod's address (repeatable; default: the addresses of the non-loopback interfaces), for the loop guard")
      ->allow_extra_args(false)->type_name("IP");
  run_cmd->add_option("--ip-families", flags->ip_families,
                      "address families the listeners serve: auto (both, on :: with IPv4 v4-mapped, where the kernel has "
                      "IPv6; else IPv4), ipv4 (0.0.0.0), ipv6 (:: IPv6 only) or dual (::); init --ip-families takes the same values")
      ->type_name("FAMILIES")->capture_default_str();
  run_cmd->add_option("--listen-address", flags->listen_address,
                      "address of the inbound, outbound and health listeners (default: from --ip-families; :: serves both families)")
      ->type_name("IP");
  run_cmd->add_option("--inbound-port", flags->inbound_port, "inbound listener port")->type_name("PORT")->capture_default_str();
  run_cmd->add_option("--outbound-port", flags->outbound_port, "outbound listener port")->type_name("PORT")->capture_default_str();
  run_cmd->add_option("--admin-port", flags->admin_port, "admin port on 127.0.0.1 (GET /stats, /ready)")->type_name("PORT")->capture_default_str();
  run_cmd->add_option("--health-port", flags->health_port, "health port (GET /healthz/ready)")->type_name("PORT")->capture_default_str();
  run_cmd->add_option("--connect-timeout", flags->connect_timeout, "upstream connect timeout (ms, s, m, h)")->type_name("DURATION")->capture_default_str();
  run_cmd->add_option("--idle-timeout", flags->idle_timeout, "close a connection idle this long; 0 disables")->type_name("DURATION")->capture_default_str();
  run_cmd->add_option("--drain-timeout", flags->drain_timeout, "on SIGTERM, how long in-flight connections may finish")->type_name("DURATION")->capture_default_str();
  run_cmd->add_option("--threads", flags->threads, "threads, each with its own io_context and SO_REUSEPORT listeners (1-256)")->type_name("N")->capture_default_str();
  run_cmd->add_option("--batch-pause-us", flags->batch_pause_us,
                      "after a wake-up that handled events, pause this long (0-1000 us) and look again before blocking; 0 disables")
      ->type_name("US")->capture_default_str();
  run_cmd->add_option("--uid", flags->uid, "after binding, become this uid (init's --proxy-uid); the current uid keeps it")->type_name("UID")->capture_default_str();
  run_cmd->add_option("--gid", flags->gid, "after binding, become this gid (init's --proxy-gid)")->type_name("GID")->capture_default_str();
  run_cmd->add_option("--mark", flags->mark, "SO_MARK on upstream sockets (init's --proxy-mark); keeps CAP_NET_ADMIN")->type_name("MARK");
  run_cmd->add_option("--tproxy-mark", flags->tproxy_mark,
                      "with --mode tproxy: SO_MARK on inbound deliveries, so the application's replies route back to the proxy")
      ->type_name("MARK")->capture_default_str();
  run_cmd->add_option("--log-level", flags->log_level, "stderr log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))->type_name("LEVEL")->capture_default_str();
  run_cmd->add_flag("--no-access-log", flags->no_access_log, "do not write the access log");
  run_cmd->add_option("--upstream-hints", flags->upstream_hints,
                      "on: a failed inbound connect's access-log line says why (hint=\"...\"), from the pod's listeners, "
                      "counted per reason on /stats; off: neither")
      ->check(CLI::IsMember({"on", "off"}))->type_name("on|off")->capture_default_str();
  run_cmd->callback([flags] {
    const int status = run(*flags);
    if (status != 0) throw CLI::RuntimeError(status);
  });
}

}  // namespace sidecar
