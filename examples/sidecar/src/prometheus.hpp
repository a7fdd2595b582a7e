// Prometheus text exposition (format 0.0.4) of the proxies' counters, for the admin endpoint GET /stats.
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include <podproxy/relay/pipe_pool.hpp>
#include <podproxy/stats.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar {

/// One listener's counters, labelled listener="NAME".
struct LabelledStats {
  std::string_view listener;
  const podproxy::ProxyStats* stats;
};

/// Every ProxyStats statistic as `podproxy_<envoy name>{listener="..."} VALUE`, one family per statistic
/// with its `# HELP` and `# TYPE` (counter or gauge) lines, then the splice pipe pool's figures when a
/// pool is given (it is shared by every listener, so it has no label).
inline std::string prometheus_text(const std::vector<LabelledStats>& listeners, const podproxy::PipePool* pool) {
  struct Sample {
    std::string_view name;
    podproxy::ProxyStats::Kind kind;
    std::vector<std::uint64_t> values;
  };
  std::vector<Sample> families;
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    std::size_t index = 0;
    listeners[i].stats->for_each([&](std::string_view name, std::uint64_t value, podproxy::ProxyStats::Kind kind) {
      if (i == 0) families.push_back({name, kind, {}});
      families[index++].values.push_back(value);
    });
  }
  std::string out;
  for (const auto& family : families) {
    const bool gauge = family.kind == podproxy::ProxyStats::Kind::gauge;
    fmt::format_to(std::back_inserter(out), "# HELP podproxy_{0} Envoy's {0}, per listener.\n# TYPE podproxy_{0} {1}\n",
                   family.name, gauge ? "gauge" : "counter");
    for (std::size_t i = 0; i < family.values.size(); ++i) {
      fmt::format_to(std::back_inserter(out), "podproxy_{}{{listener=\"{}\"}} {}\n", family.name,
                     listeners[i].listener, family.values[i]);
    }
  }
  if (pool != nullptr) {
    const auto s = pool->stats();
    const auto emit = [&](std::string_view name, std::string_view kind, std::string_view help, std::uint64_t value) {
      fmt::format_to(std::back_inserter(out), "# HELP podproxy_pipe_pool_{0} {1}\n# TYPE podproxy_pipe_pool_{0} {2}\npodproxy_pipe_pool_{0} {3}\n",
                     name, help, kind, value);
    };
    emit("created", "counter", "Pipes created by the splice relay's pool.", s.created);
    emit("reused", "counter", "Pipe loans served from the idle list.", s.reused);
    emit("exhausted", "counter", "Loans refused because the pool was full (the relay copied instead).", s.exhausted);
    emit("discarded", "counter", "Pipes closed on return because they were not empty.", s.discarded);
    emit("create_failed", "counter", "pipe2 failures (the relay copied instead).", s.create_failed);
    emit("lent", "gauge", "Pipes lent out now.", s.lent);
    emit("idle", "gauge", "Empty pipes waiting in the pool now.", s.idle);
    emit("pipe_capacity_bytes", "gauge", "Capacity the kernel granted the last pipe created.", s.pipe_capacity);
  }
  return out;
}

}  // namespace sidecar
