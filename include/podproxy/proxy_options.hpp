// ProxyOptions: how a Proxy connects, times out, guards and reports its connections.
#pragma once

#include <podproxy/connection_record.hpp>
#include <podproxy/proxy_protocol.hpp>
#include <podproxy/stats.hpp>
#include <podproxy/detail/event_poller.hpp>

#include <asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace podproxy {

struct ProxyOptions {
  /// How long an upstream connect may take (Envoy's default is 5 s, Istio's 10 s).
  std::chrono::steady_clock::duration connect_timeout = std::chrono::seconds(10);
  /// Close a connection after this long without a byte either way (Envoy's default, 1 h); zero disables.
  std::chrono::steady_clock::duration idle_timeout = std::chrono::hours(1);
  /// SO_MARK for upstream sockets, so capture rules can exempt the proxy's own traffic (CAP_NET_ADMIN).
  std::optional<std::uint32_t> upstream_mark{};
  /// Endpoints that are this proxy besides its own listener (the sidecar's other listeners): the loop
  /// guard refuses upstreams that name any of them.
  std::vector<asio::ip::tcp::endpoint> own_endpoints{};
  /// Refuse a connection whose original destination is a loopback address (127.0.0.0/8, ::1, or their
  /// IPv4-mapped form) when its client is not on loopback (crosses_into_loopback()), whatever the policy
  /// says. Without a proxy the kernel drops such packets arriving from the network; a REDIRECT rule in
  /// PREROUTING rewrites them before that check, so without this guard a neighbour that routes 127.0.0.0/8
  /// to the pod would reach its loopback-only services. Turn off only in a proxy meant to expose them.
  bool loopback_guard = true;
  /// Write a PROXY protocol header of this version to each upstream, before any relayed byte (HAProxy's
  /// `send-proxy`/`send-proxy-v2`): the client's address (the one a header from the client named, under
  /// `accept_proxy_protocol`) and the original destination. Empty: none.
  std::optional<ProxyProtocolVersion> send_proxy_protocol{};
  /// Read a PROXY protocol header of these versions from each client before anything else (HAProxy's
  /// `accept-proxy`); a connection without a valid one within `proxy_protocol_timeout` is reset. The client
  /// address it names becomes Downstream::peer (for the policy, the access log and a header sent on);
  /// the loopback guard still judges the socket's own peer.
  ProxyProtocolAccept accept_proxy_protocol = ProxyProtocolAccept::off;
  /// Let the destination a received header names replace Downstream::original_destination, and so pick
  /// the upstream. Off by default: whoever can reach the listener could then send connections anywhere
  /// the proxy can dial; the original destination comes from the socket.
  bool trust_proxy_protocol_destination = false;
  /// How long a client may take to send its whole PROXY header (Envoy's listener filter timeout is 15 s).
  std::chrono::steady_clock::duration proxy_protocol_timeout = std::chrono::seconds(5);
  /// Called once per finished connection, on that connection's poller (so possibly from several threads
  /// at once). Must not block.
  std::function<void(const ConnectionRecord&)> on_complete{};
  /// Called once per connection whose upstream connected, on that connection's poller, before any byte
  /// is relayed; the record has its downstream and upstream (its end and byte counts are not known yet).
  /// For metrics that count a connection as opened while it lasts (Istio's tcp_connections_opened_total).
  /// Must not block.
  std::function<void(const ConnectionRecord&)> on_connected{};
  /// After a wake-up that handled events, pause this long and look again before blocking (one pause per
  /// wake-up, none when idle, none when a direction moved 16 KiB or more in one step, as bulk does): what
  /// arrives meanwhile is taken in the same batch, and the processes that sent it need not wake the
  /// proxy's thread. It costs a connection at most this much latency and buys fewer cross-CPU wake-ups
  /// under load (docs/design.md, "Benchmarks: experiments and decisions"). Zero disables; at most 1 ms.
  std::chrono::microseconds batch_pause{15};
  static constexpr std::chrono::microseconds max_batch_pause = detail::EventPoller::max_pause;
  /// Counters to update; shared by several proxies when they serve one port from several threads. Null:
  /// the proxy makes its own.
  std::shared_ptr<ProxyStats> stats{};
};

}  // namespace podproxy
