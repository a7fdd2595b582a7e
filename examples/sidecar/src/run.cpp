// `run`: the sidecar proper. An inbound listener (15006) and an outbound listener (15001) built from the
// library, the admin endpoint (127.0.0.1:15000: /stats, /ready, POST /quitquitquit and /drain_listeners),
// the health endpoint (15021: /healthz/ready), the merged-metrics endpoint (15020: /stats/prometheus, with
// Istio's TCP metrics), one access-log line per connection on stdout, and a drain on SIGTERM.
//
// One connection's path, a header per step: the acceptor (podproxy/acceptor.hpp) takes it with its
// original destination (destination/redirected_or_local.hpp, or local_address.hpp under TPROXY); the proxy
// (proxy.hpp) asks the inbound policy (policy/*_policy.hpp, tproxy_policy.hpp) where to deliver it; a
// session (detail/session.hpp) connects and relays it (relay/splice_relay.hpp or buffered_relay.hpp) and
// hands its record (connection_record.hpp) to the access log (access_log.hpp).
//
// Threads: a podproxy::WorkerGroup of --threads workers, each an io_context with an inbound and an outbound
// Proxy of its own on SO_REUSEPORT listeners (the group's comment says why). The admin and health servers
// (admin_endpoints.hpp), the drain (drain_control.hpp) and the signals (shutdown.hpp) run on the first worker.
#include "access_log.hpp"
#include "admin_endpoints.hpp"
#include "cli_util.hpp"
#include "commands.hpp"
#include "process.hpp"
#include "run_settings.hpp"
#include "shutdown.hpp"
#include "tproxy_policy.hpp"
#include "upstream_hints.hpp"

#include <podproxy/podproxy.hpp>

#include <asio/post.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sidecar {

namespace {

/// The listeners `run` serves, by name: for /stats and the start-up line.
struct Listeners {
  std::vector<std::pair<std::string_view, podproxy::WorkerListener>> all;

  void add(std::string_view name, podproxy::WorkerListener listener) { all.emplace_back(name, std::move(listener)); }

  [[nodiscard]] std::vector<LabelledStats> stats() const {
    std::vector<LabelledStats> out;
    for (const auto& [name, listener] : all) out.push_back({name, listener.stats.get()});
    return out;
  }
};

/// What a listener reports to: the access log, Istio's TCP metrics, and (inbound, unless --upstream-hints
/// off) the upstream hints that explain a failed connect.
struct Reporting {
  const AccessLog& access_log;
  IstioTcpMetrics& istio;
  hints::UpstreamHints* hints;
};

/// A listener's proxy options: the timeouts, the mark on its upstream sockets, the loop guard's list of
/// every other endpoint of this sidecar, its PROXY protocol on either side, and its access-log line and
/// metrics.
podproxy::ProxyOptions proxy_options(const Settings& s, std::uint16_t port, std::optional<std::uint32_t> mark,
                                     Reporting reporting, std::string_view name) {
  const bool inbound = name == "inbound";
  const auto which = inbound ? IstioTcpMetrics::inbound : IstioTcpMetrics::outbound;
  return {.connect_timeout = s.connect_timeout,
          .idle_timeout = s.idle_timeout,
          .upstream_mark = mark,
          .own_endpoints = own_endpoints(s, port),
          .send_proxy_protocol = inbound ? s.inbound_pp_send : s.outbound_pp_send,
          .accept_proxy_protocol = inbound ? s.inbound_pp_accept : s.outbound_pp_accept,
          .proxy_protocol_timeout = s.proxy_protocol_timeout,
          .on_complete = [&log = reporting.access_log, &istio = reporting.istio, hints = inbound ? reporting.hints : nullptr,
                          which, name](const podproxy::ConnectionRecord& record) {
            istio.completed(which, record);
            log.write(name, record, hints ? hints->hint_for(record) : std::nullopt);
          },
          .on_connected = [&istio = reporting.istio, which](const podproxy::ConnectionRecord&) { istio.connected(which); },
          .batch_pause = s.batch_pause};
}

/// Every socket is bound: become the proxy user, whose connections the capture rules let through, with
/// exactly the capability the mode needs. Returns 0, or the exit status when that cannot be done.
int become_proxy_user(const Settings& s, spdlog::logger& log) {
  const bool keep_net_admin = s.tproxy || s.mark.has_value();
  if (const auto error = drop_privileges(s.uid, s.gid, keep_net_admin); !error.empty()) {
    log.error("{}", error);
    return usage_exit;
  }
  if (::geteuid() == 0 && !s.mark) {
    log.warn("running as root without --mark: unless the capture rules exempt uid 0, this proxy's own "
             "connections will be captured again (use --uid/--gid, or --mark with init --proxy-mark)");
  }
  if (keep_net_admin && !has_net_admin()) {
    log.error("{} needs CAP_NET_ADMIN on every upstream socket, and this process does not have it",
              s.tproxy ? "--mode tproxy" : "--mark");
    return usage_exit;
  }
  return 0;
}

/// The line that says the sidecar serves, and with what.
std::string startup_line(const Settings& s, const Listeners& listeners, const AdminEndpoints& endpoints) {
  std::string serving;
  for (const auto& [name, listener] : listeners.all) {
    serving += fmt::format("{}{} {}", serving.empty() ? "" : ", ", name, endpoint_text(listener.local_endpoint));
    if (name == "inbound") {
      serving += fmt::format(" ({}; {} policy{}{})", s.served.text(), s.loopback_policy ? "loopback" : "pod-ip",
                             s.default_endpoints.empty() ? ""
                                                         : fmt::format(", {} default endpoint(s)", s.default_endpoints.size()),
                             s.tproxy ? ", tproxy" : "");
    }
  }
  return fmt::format("{}: {}, admin {}, health {}, metrics {}; relay {}, {} thread(s), pod IPs {}{}",
                     s.not_ready.empty() ? "ready" : "listening", serving, endpoint_text(endpoints.admin_endpoint()),
                     endpoint_text(endpoints.health_endpoint()), endpoint_text(endpoints.metrics_endpoint()),
                     s.buffered_relay ? "buffered" : "splice", s.threads,
                     join(s.pod_ips), s.pod_ips_detected ? " (detected)" : "");
}

/// Everything `run` serves, for one combination of destination source, inbound policy and relay. A new
/// listener is one more `listeners.add` here.
template <class Source, class InboundPolicy, class Relay>
int serve(const Settings& s, InboundPolicy inbound_policy, Relay relay, const podproxy::PipePool* pool) {
  auto& log = *spdlog::default_logger();
  const AccessLog access_log(s.access_log);
  IstioTcpMetrics istio(s.pod);
  hints::UpstreamHints upstream_hints(s.loopback_policy, s.default_endpoints, s.pod_ips);  // as root: see its comment
  const Reporting reporting{access_log, istio, s.upstream_hints ? &upstream_hints : nullptr};
  podproxy::WorkerGroup workers(s.threads);
  Listeners listeners;
  std::optional<AdminEndpoints> endpoints;
  // SIGTERM, POST /quitquitquit and POST /drain_listeners: one drain, which ends by closing the endpoints.
  DrainControl control(workers, s.drain_timeout, [&] {
    endpoints->close();
    workers.halt();
  }, log);

  // Bind everything first (as root, if we are), so that a port in use or a missing privilege fails here,
  // before any listener is announced ready. Each of the --threads workers gets a proxy per listener.
  try {
    listeners.add("inbound",
                  workers.add<Source>({.endpoint = {s.listen_address, s.inbound_port}, .transparent = s.tproxy,
                                       .v6_only = s.v6_only},
                                      std::move(inbound_policy), relay,
                                      proxy_options(s, s.inbound_port, s.tproxy ? std::optional(s.tproxy_mark) : s.mark,
                                                    reporting, "inbound")));
    listeners.add("outbound",
                  workers.add({.endpoint = {s.listen_address, s.outbound_port}, .v6_only = s.v6_only},
                              podproxy::PodIpPolicy::without_source_bind(), relay,
                              proxy_options(s, s.outbound_port, s.mark, reporting, "outbound")));
    endpoints.emplace(workers.context(0).get_executor(),
                      AdminEndpoints::Options{.admin = {asio::ip::address_v4::loopback(), s.admin_port},
                                              .health = {s.listen_address, s.health_port},
                                              .metrics = {s.listen_address, s.metrics_port},
                                              .stats = listeners.stats(),
                                              .pool = pool,
                                              .hints = &upstream_hints,
                                              .not_ready = s.not_ready},
                      control, istio);
  } catch (const std::system_error& e) {
    log.error("{}", e.what());
    if (e.code() == std::errc::operation_not_permitted) log.error("--mode tproxy needs CAP_NET_ADMIN (IP_TRANSPARENT)");
    return 1;
  }
  if (const int status = become_proxy_user(s, log); status != 0) return status;

  Shutdown shutdown(workers.context(0), control, log);
  shutdown.start();
  workers.start();
  endpoints->start();
  // Ready once the io_context runs the accept loops (the listening sockets queue connections already).
  asio::post(workers.context(0), [&] {
    endpoints->set_ready();
    if (!s.not_ready.empty()) log.error("serving, but NOT ready (/healthz/ready answers 503): {}", s.not_ready);
    log.info("{}", startup_line(s, listeners, *endpoints));
  });
  workers.run();
  return shutdown.exit_status();
}

template <class Source, class Policy>
int with_relay(const Settings& s, Policy policy) {
  if (s.buffered_relay) return serve<Source>(s, std::move(policy), podproxy::BufferedRelay{}, nullptr);
  auto pool = std::make_shared<podproxy::PipePool>();
  return serve<Source>(s, std::move(policy), podproxy::SpliceRelay{pool}, pool.get());
}

template <class Inner>
int with_mode(const Settings& s, Inner inner) {
  podproxy::PortOverridePolicy<Inner> policy(std::move(inner), override_targets(s));
  if (s.tproxy) {
    // TPROXY: the listener is transparent, the original destination is the accepted socket's local
    // address, and the application is dialed from the client's own address (from loopback when the
    // target is loopback: see OriginalSourceOffLoopbackPolicy).
    using Policy = OriginalSourceOffLoopbackPolicy<podproxy::PortOverridePolicy<Inner>>;
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
      "  (rx: bytes from the client, tx: bytes to it; flags as Envoy's: - UF,URX NR UR DR SI DT OM DPE; end= says refused vs\n"
      "  timed out), then via=HOST:PORT (the balancer) when a PROXY protocol header named the client, then hint=\"...\"\n"
      "  when a failed inbound connect has an explanation (--upstream-hints). Logs go to stderr.\n"
      "Metrics: Istio's istio_tcp_* from POD_NAMESPACE, ISTIO_META_WORKLOAD_NAME, ISTIO_META_CLUSTER_ID and the pod's labels.\n"
      "Exit status: 0 after a drain (SIGTERM/SIGINT, POST /quitquitquit), 1 when a listener cannot be opened, 2 for a bad flag or\n"
      "a privilege that cannot be had.");
  add_run_flags(*run_cmd, *flags);
  run_cmd->callback([flags] {
    const int status = run(*flags);
    if (status != 0) throw CLI::RuntimeError(status);
  });
}

}  // namespace sidecar
