// The access log: one line per finished connection, on stdout, in a fixed, greppable format.
//
//   [2026-11-26T00:00:00.123Z] inbound 10.0.0.9:51234 -> 10.0.0.5:8080 upstream=127.0.0.1:8080
//     src=127.0.0.6:40000 rx=5 tx=5 dur_ms=3 flags=- end=completed error=-
//
// (one line in the log). Fields, always present and in this order:
//   [time]        when the connection was accepted, UTC, milliseconds
//   listener      inbound | outbound
//   PEER -> DST   the client's address, and the original destination it dialed
//   upstream=     what the policy chose to dial ("-" when it refused)
//   src=          the upstream socket's local address once connected ("-" when it never connected)
//   rx= tx=       bytes read from the client / written to the client
//   dur_ms=       how long the connection lived
//   flags=        response flags as Envoy's tcp_proxy writes them: - UF,URX NR UR DR SI DT OM
//                 (podproxy::response_flags; a refused upstream and a connect timeout are both UF,URX)
//   end=          how it ended (podproxy::to_string(ConnectionEnd))
//   error=        the upstream connect error, quoted, or "-"
// and, only when a PROXY protocol header named the client (PEER is that client then):
//   via=          the balancer: the address the connection came from
// and, only when a failed upstream connect has an explanation (run --upstream-hints on, upstream_hints.hpp):
//   hint=         why, quoted: "8080 listens on 127.0.0.1 only; the pod-ip policy dials 10.0.0.5:8080: ..."
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include <podproxy/endpoint_text.hpp>
#include <podproxy/connection_record.hpp>

#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sidecar {

/// IPv4 as 1.2.3.4:80, IPv6 as [::1]:80, v4-mapped IPv6 as the IPv4 it is.
inline std::string endpoint_text(const asio::ip::tcp::endpoint& ep) { return podproxy::to_text(ep); }

/// RFC 3339 UTC with milliseconds: 2026-11-26T00:00:00.123Z.
inline std::string utc_timestamp(std::chrono::system_clock::time_point when) {
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(millis / 1000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:03}Z", date, millis % 1000);
}

/// The access-log line for one connection (no trailing newline).
inline std::string access_log_line(std::string_view listener, const podproxy::ConnectionRecord& record,
                                   const std::optional<std::string>& hint = std::nullopt) {
  const auto duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(record.duration).count();
  std::string error = "-";
  if (record.error) {
    error = "\"" + record.error.message() + "\"";
  }
  return fmt::format("[{}] {} {} -> {} upstream={} src={} rx={} tx={} dur_ms={} flags={} end={} error={}{}{}{}{}",
                     utc_timestamp(record.start), listener, endpoint_text(record.downstream.peer),
                     endpoint_text(record.downstream.original_destination),
                     record.upstream ? endpoint_text(record.upstream->endpoint) : "-",
                     record.upstream_local ? endpoint_text(*record.upstream_local) : "-",
                     record.bytes_from_downstream, record.bytes_from_upstream, duration_ms,
                     podproxy::response_flags(record.end), podproxy::to_string(record.end), error,
                     record.proxied_by ? " via=" + endpoint_text(*record.proxied_by) : "",
                     hint ? " hint=\"" : "", hint ? std::string_view(*hint) : "", hint ? "\"" : "");
}

/// Where the access log goes: one line per finished connection on stdout, flushed at once; or nowhere.
class AccessLog {
 public:
  explicit AccessLog(bool enabled) {
    if (!enabled) return;
    logger_ = std::make_shared<spdlog::logger>("access", std::make_shared<spdlog::sinks::stdout_sink_mt>());
    logger_->set_pattern("%v");
    logger_->flush_on(spdlog::level::info);
  }

  /// Writes the line of one connection of the listener named `listener`, with its hint if any. Any thread.
  void write(std::string_view listener, const podproxy::ConnectionRecord& record,
             const std::optional<std::string>& hint) const {
    if (logger_) logger_->info(access_log_line(listener, record, hint));
  }

 private:
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace sidecar
