// The running sidecar's side of the hints: the pod's listeners looked at no more than once per interval
// (shared by every failure in it, whatever thread it ends on), the hint for each failed inbound connect,
// a counter per reason for /stats, and GET /binds (the bind report of the sidecar's own namespace).
#pragma once

#include "bind_report.hpp"
#include "upstream_hint.hpp"

#include <podproxy/connection_record.hpp>

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace sidecar::hints {

/// Thread safety: hint_for, prometheus_text and binds_json may be called from any thread.
class UpstreamHints {
 public:
  /// Construct before dropping privileges: the capture rules that GET /binds reports need CAP_NET_ADMIN
  /// to read, and are read here, once. `interval`: the longest a look at the listeners is reused.
  UpstreamHints(Context context, std::chrono::steady_clock::duration interval = std::chrono::seconds(1))
      : context_(std::move(context)), policy_(context_.policy), interval_(interval), captures_(binds::read_captures()) {}

  /// For `run`: its inbound policy (loopback or not), its --inbound-default-endpoint pairs, its pod IPs.
  template <class DefaultEndpoints>
  UpstreamHints(bool loopback_policy, const DefaultEndpoints& default_endpoints, std::vector<asio::ip::address> pod_ips)
      : UpstreamHints(Context{.policy = loopback_policy ? "loopback" : "pod-ip",
                              .default_endpoint_ports = ports_of(default_endpoints),
                              .pod_ips = std::move(pod_ips)}) {}

  /// The hint for an inbound connection that ended as `record` says, or std::nullopt (it did not fail
  /// in a way a hint explains). Successful connections return at the first test.
  std::optional<std::string> hint_for(const podproxy::ConnectionRecord& record) {
    if ((record.end != podproxy::ConnectionEnd::upstream_connect_failed &&
         record.end != podproxy::ConnectionEnd::upstream_connect_timeout) ||
        !record.upstream) {
      return std::nullopt;
    }
    const auto& dial = record.upstream->endpoint;
    const Key key{dial, record.end, record.error == asio::error::connection_refused,
                  record.downstream.original_destination.port()};
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (!snapshot_ || now - snapshot_->taken >= interval_) {
      snapshot_ = take_snapshot(now);
      snapshots_.fetch_add(1, std::memory_order_relaxed);
    }
    auto it = snapshot_->hints.find(key);
    if (it == snapshot_->hints.end() && !snapshot_->listeners) return std::nullopt;  // could not look
    if (it == snapshot_->hints.end()) {
      auto context = context_;
      context.dual_stack = snapshot_->dual_stack;
      it = snapshot_->hints
               .emplace(key, explain(record.end, record.error, dial, std::get<3>(key), *snapshot_->listeners, context))
               .first;
    }
    if (!it->second) return std::nullopt;
    counts_[static_cast<std::size_t>(it->second->reason)].fetch_add(1, std::memory_order_relaxed);
    return it->second->text;
  }

  /// The counters in the Prometheus text format of /stats, labelled listener="inbound".
  [[nodiscard]] std::string prometheus_text() const {
    std::string out;
    for (std::size_t i = 0; i < reason_count; ++i) {
      fmt::format_to(std::back_inserter(out),
                     "# HELP podproxy_upstream_cx_hint_{0} Failed upstream connects explained as {0}.\n"
                     "# TYPE podproxy_upstream_cx_hint_{0} counter\npodproxy_upstream_cx_hint_{0}{{listener=\"inbound\"}} {1}\n",
                     name(static_cast<Reason>(i)), counts_[i].load(std::memory_order_relaxed));
    }
    fmt::format_to(std::back_inserter(out),
                   "# HELP podproxy_upstream_hint_snapshots Looks at the pod's listeners taken to explain failed connects.\n"
                   "# TYPE podproxy_upstream_hint_snapshots counter\npodproxy_upstream_hint_snapshots{{listener=\"inbound\"}} {}\n",
                   snapshots_.load(std::memory_order_relaxed));
    return out;
  }

  /// What `check-binds --json --policy POLICY` prints in this namespace (the capture rules as read at
  /// construction), or std::nullopt when the namespace cannot be read.
  [[nodiscard]] std::optional<std::string> binds_json() const {
    try {
      const auto facts = binds::read_namespace_facts(captures_);
      const auto listeners = binds::read_listeners("/proc/net/", facts.v6only);
      if (!listeners) return std::nullopt;
      auto pod_ips = context_.pod_ips.empty() ? facts.addresses : context_.pod_ips;
      return binds::report_json(binds::make_report(std::nullopt, std::move(pod_ips), policy_, facts, *listeners));
    } catch (const std::system_error&) {
      return std::nullopt;
    }
  }

 private:
  // dial, how it ended, refused or not, the original destination port: all a hint depends on.
  using Key = std::tuple<asio::ip::tcp::endpoint, podproxy::ConnectionEnd, bool, std::uint16_t>;
  struct Snapshot {
    std::chrono::steady_clock::time_point taken;
    std::optional<std::vector<binds::TcpListener>> listeners;  // nullopt: /proc/net/tcp* unreadable
    bool dual_stack = true;
    std::map<Key, std::optional<Hint>> hints;  // each explained once per snapshot
  };

  template <class DefaultEndpoints>
  static std::vector<std::uint16_t> ports_of(const DefaultEndpoints& pairs) {
    std::vector<std::uint16_t> ports;
    for (const auto& [port, target] : pairs) ports.push_back(port);
    return ports;
  }

  static std::unique_ptr<Snapshot> take_snapshot(std::chrono::steady_clock::time_point now) {
    auto s = std::make_unique<Snapshot>();
    s->taken = now;
    // sock_diag, not /proc/net/tcp: reading the latter walks every socket of the host (the namespaces
    // share the kernel's table): under a storm on a busy host it was the hints' main cost.
    auto v4 = binds::sock_diag_listeners(AF_INET);
    auto v6 = binds::sock_diag_listeners(AF_INET6);
    if (v4 && v6) {
      v4->insert(v4->end(), v6->begin(), v6->end());
      s->listeners = std::move(v4);
    }
    s->dual_stack = binds::dual_stack_here();
    return s;
  }

  const Context context_;
  const std::string policy_;
  const std::chrono::steady_clock::duration interval_;
  const std::array<families::ReadCapture, 2> captures_;
  std::mutex mutex_;
  std::unique_ptr<Snapshot> snapshot_;
  std::atomic<std::uint64_t> snapshots_{0};
  std::array<std::atomic<std::uint64_t>, reason_count> counts_{};
};

}  // namespace sidecar::hints
