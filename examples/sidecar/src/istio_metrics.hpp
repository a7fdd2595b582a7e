// Istio's standard TCP metrics (istio_tcp_connections_opened_total, ..._closed_total, istio_tcp_sent_bytes_total,
// istio_tcp_received_bytes_total), with Istio's label names, for the merged-metrics endpoint
// (:15020/stats/prometheus) that Istio's dashboards and Kiali read.
//
// What varies from one series to another is only what the sidecar knows of a connection without a control
// plane or mTLS: which listener reported it (reporter) and its response flags. Every other label is the pod's
// own identity (the same for every connection) or "unknown", so the number of series is bounded by
// construction (2 reporters x the response flags), whatever the clients and their ports: the counters are a
// fixed array of atomics, indexed by listener and ConnectionEnd, and never a map that connections could grow.
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include "cli_util.hpp"  // CLI::ValidationError

#include <podproxy/connection_record.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sidecar {

/// What Istio knows of the pod a sidecar serves, from what its injector passes (POD_NAMESPACE,
/// ISTIO_META_WORKLOAD_NAME and ISTIO_META_CLUSTER_ID in the environment; the pod's labels in the
/// downward-API file it mounts at /etc/istio/pod/labels). "unknown" where nothing says.
struct PodIdentity {
  std::string workload = "unknown";
  std::string namespace_name = "unknown";
  std::string app = "unknown";
  std::string version = "unknown";
  std::string canonical_service = "unknown";
  std::string canonical_revision = "latest";  // Istio's value when no label gives one
  std::string cluster = "unknown";
};

/// The downward API's rendering of metadata.labels: one `key="value"` a line, the value quoted with Go's
/// %q (backslash escapes \" \\ \n \t ...). Lines that do not parse are skipped.
inline std::map<std::string, std::string> parse_downward_labels(std::string_view text) {
  std::map<std::string, std::string> out;
  while (!text.empty()) {
    const auto end = text.find('\n');
    auto line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    const auto equals = line.find('=');
    if (equals == std::string_view::npos || equals == 0) continue;
    auto quoted = line.substr(equals + 1);
    while (!quoted.empty() && (quoted.back() == '\r' || quoted.back() == ' ')) quoted.remove_suffix(1);
    if (quoted.size() < 2 || quoted.front() != '"' || quoted.back() != '"') continue;
    quoted = quoted.substr(1, quoted.size() - 2);
    std::string value;
    bool ok = true;
    for (std::size_t i = 0; i < quoted.size(); ++i) {
      if (quoted[i] != '\\') {
        value += quoted[i];
        continue;
      }
      if (++i == quoted.size()) {
        ok = false;
        break;
      }
      switch (quoted[i]) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case '"': value += '"'; break;
        case '\\': value += '\\'; break;
        default: value += '\\'; value += quoted[i];  // kept as written: a label value cannot need more
      }
    }
    if (ok) out.emplace(std::string(line.substr(0, equals)), std::move(value));
  }
  return out;
}

/// The pod's identity from its environment (`env(NAME)`, empty when unset) and labels, with the fallbacks
/// of Istio's injector: canonical service from service.istio.io/canonical-name, else app.kubernetes.io/name,
/// else app, else the workload name; canonical revision from service.istio.io/canonical-revision, else
/// app.kubernetes.io/version, else version, else "latest".
inline PodIdentity pod_identity(const std::function<std::optional<std::string>(const char*)>& env,
                                const std::map<std::string, std::string>& labels) {
  PodIdentity id;
  const auto set_from_env = [&](std::string& field, const char* name) {
    if (auto value = env(name); value && !value->empty()) field = std::move(*value);
  };
  set_from_env(id.workload, "ISTIO_META_WORKLOAD_NAME");
  set_from_env(id.namespace_name, "POD_NAMESPACE");
  set_from_env(id.cluster, "ISTIO_META_CLUSTER_ID");
  const auto first_label = [&](std::initializer_list<const char*> keys) -> std::optional<std::string> {
    for (const char* key : keys) {
      if (const auto it = labels.find(key); it != labels.end() && !it->second.empty()) return it->second;
    }
    return std::nullopt;
  };
  if (auto v = first_label({"app", "app.kubernetes.io/name"})) id.app = *v;
  if (auto v = first_label({"version", "app.kubernetes.io/version"})) id.version = *v;
  if (auto v = first_label({"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"})) {
    id.canonical_service = *v;
  } else if (id.workload != "unknown") {
    id.canonical_service = id.workload;
  }
  if (auto v = first_label({"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"})) {
    id.canonical_revision = *v;
  }
  return id;
}

/// Istio's default place for the pod's labels (its injector's istio-podinfo downward-API volume).
inline constexpr const char* istio_pod_labels_file = "/etc/istio/pod/labels";

/// This process's pod identity: its environment, and the labels file `--pod-labels-file` names (refused,
/// naming the flag, when it cannot be read), or Istio's default file when it exists.
inline PodIdentity pod_identity_of_process(const std::optional<std::string>& labels_file) {
  std::map<std::string, std::string> labels;
  const std::string path = labels_file.value_or(istio_pod_labels_file);
  std::ifstream in(path);
  if (!in && labels_file) {
    throw CLI::ValidationError("--pod-labels-file", "cannot read '" + path + "'");
  }
  if (in) {
    std::ostringstream text;
    text << in.rdbuf();
    labels = parse_downward_labels(text.str());
  }
  return pod_identity(
      [](const char* name) -> std::optional<std::string> {
        const char* value = std::getenv(name);
        return value ? std::optional<std::string>(value) : std::nullopt;
      },
      labels);
}

/// A label value escaped for the Prometheus text format: backslash, double quote and newline.
inline std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

/// `name="value",...` (escaped), in the order given.
inline std::string render_labels(const std::vector<std::pair<std::string_view, std::string_view>>& labels) {
  std::string out;
  for (const auto& [name, value] : labels) {
    if (!out.empty()) out += ',';
    fmt::format_to(std::back_inserter(out), "{}=\"{}\"", name, escape_label_value(value));
  }
  return out;
}

/// The labels of every series of one listener but response_flags, in the order Istio's stats filter emits
/// them. Inbound (reporter="destination"): the pod is the destination; the source is unknown, because
/// Istio learns it from its peer's metadata exchange over mTLS, which a plain TCP sidecar does not have;
/// connection_security_policy "none" (plaintext). Outbound (reporter="source"): the pod is the source;
/// the destination's workload is unknown for the same reason, and so is the security policy (Istio writes
/// "unknown" for it on the source side). The destination Service is unknown either way: without a control
/// plane the sidecar sees addresses, not Services.
inline std::string istio_listener_labels(const PodIdentity& pod, bool inbound) {
  static const std::string unknown = "unknown";
  static const std::string latest = "latest";
  const PodIdentity none{};  // every field "unknown", revision "latest"
  const PodIdentity& source = inbound ? none : pod;
  const PodIdentity& destination = inbound ? pod : none;
  return render_labels({
      {"reporter", inbound ? "destination" : "source"},
      {"source_workload", source.workload},
      {"source_canonical_service", source.canonical_service},
      {"source_canonical_revision", source.canonical_revision},
      {"source_workload_namespace", source.namespace_name},
      {"source_principal", unknown},
      {"source_app", source.app},
      {"source_version", source.version},
      {"source_cluster", source.cluster},
      {"destination_workload", destination.workload},
      {"destination_workload_namespace", destination.namespace_name},
      {"destination_principal", unknown},
      {"destination_app", destination.app},
      {"destination_version", destination.version},
      {"destination_service", unknown},
      {"destination_canonical_service", destination.canonical_service},
      {"destination_canonical_revision", destination.canonical_revision},
      {"destination_service_name", unknown},
      {"destination_service_namespace", unknown},
      {"destination_cluster", destination.cluster},
      {"request_protocol", "tcp"},
  });
}

/// The four counters per listener and response flags. Updated from the proxies' callbacks on any worker
/// thread (relaxed atomics: each value is consistent, a scrape is not a snapshot of all of them at once).
class IstioTcpMetrics {
 public:
  enum Listener : std::size_t { inbound = 0, outbound = 1 };

  explicit IstioTcpMetrics(const PodIdentity& pod)
      : labels_{istio_listener_labels(pod, true), istio_listener_labels(pod, false)} {}

  /// ProxyOptions::on_connected: an opened connection, flags "-" (as Istio counts it at its first report).
  void connected(Listener listener) { bump(at(listener, podproxy::ConnectionEnd::completed).opened, 1); }

  /// ProxyOptions::on_complete: closed, with its bytes and flags; opened too when its upstream never
  /// connected (Istio reports such a connection once, at its end, with the flags it ended with).
  void completed(Listener listener, const podproxy::ConnectionRecord& record) {
    auto& c = at(listener, record.end);
    if (!record.upstream_connected) bump(c.opened, 1);
    bump(c.closed, 1);
    bump(c.received, record.bytes_from_downstream);  // the request side: what the client sent
    bump(c.sent, record.bytes_from_upstream);        // the response side: what the client was sent
  }

  /// The four families in the Prometheus text format. A series appears once it has counted something, as
  /// Istio's do: opened once a connection opened, the others once one closed (bytes are counted at close).
  [[nodiscard]] std::string prometheus_text() const {
    // Ends that share response flags (NR: policy, loop and loopback guard) are one series.
    struct Sums {
      std::string_view flags;
      std::uint64_t opened = 0, closed = 0, sent = 0, received = 0;
    };
    std::array<std::vector<Sums>, 2> sums;
    for (std::size_t l = 0; l < 2; ++l) {
      for (std::size_t e = 0; e < ends; ++e) {
        const Cell& cell = cells_[l][e];
        const auto flags = podproxy::response_flags(static_cast<podproxy::ConnectionEnd>(e));
        auto it = std::find_if(sums[l].begin(), sums[l].end(), [&](const Sums& x) { return x.flags == flags; });
        if (it == sums[l].end()) it = sums[l].insert(sums[l].end(), Sums{flags});
        it->opened += cell.opened.load(std::memory_order_relaxed);
        it->closed += cell.closed.load(std::memory_order_relaxed);
        it->sent += cell.sent.load(std::memory_order_relaxed);
        it->received += cell.received.load(std::memory_order_relaxed);
      }
    }
    struct Family {
      std::string_view name, help;
      std::uint64_t Sums::*value;
      bool at_open;
    };
    static constexpr std::array<Family, 4> families{{
        {"istio_tcp_connections_opened_total", "TCP connections opened (Istio standard metric).", &Sums::opened, true},
        {"istio_tcp_connections_closed_total", "TCP connections closed (Istio standard metric).", &Sums::closed, false},
        {"istio_tcp_sent_bytes_total", "Bytes sent to the client, counted at close (Istio standard metric).",
         &Sums::sent, false},
        {"istio_tcp_received_bytes_total", "Bytes received from the client, counted at close (Istio standard metric).",
         &Sums::received, false},
    }};
    std::string out;
    for (const auto& family : families) {
      fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} counter\n", family.name, family.help);
      for (std::size_t l = 0; l < 2; ++l) {
        for (const Sums& x : sums[l]) {
          if ((family.at_open ? x.opened : x.closed) == 0) continue;
          fmt::format_to(std::back_inserter(out), "{}{{{},response_flags=\"{}\",connection_security_policy=\"{}\"}} {}\n",
                         family.name, labels_[l], x.flags, l == inbound ? "none" : "unknown", x.*family.value);
        }
      }
    }
    return out;
  }

 private:
  struct Cell {
    std::atomic<std::uint64_t> opened{0}, closed{0}, sent{0}, received{0};
  };
  // ConnectionEnd's values are 0..resource_exhausted, the last one (to_string lists them all).
  static constexpr std::size_t ends = static_cast<std::size_t>(podproxy::ConnectionEnd::resource_exhausted) + 1;

  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by) {
    counter.fetch_add(by, std::memory_order_relaxed);
  }
  Cell& at(Listener listener, podproxy::ConnectionEnd end) {
    return cells_[listener][static_cast<std::size_t>(end)];
  }

  std::array<std::string, 2> labels_;
  std::array<std::array<Cell, ends>, 2> cells_{};
};

}  // namespace sidecar
