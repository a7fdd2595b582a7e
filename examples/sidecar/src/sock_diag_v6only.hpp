// The namespace's TCP listeners, and IPV6_V6ONLY of its IPv6 ones, asked from the kernel with sock_diag (what lets `ss`
// print `*:80` for a dual-stack listener and `[::]:80` for a v6-only one): /proc/net/tcp6 does not show
// it, and it decides whether a [::] listener answers the IPv4 dials of the inbound policies.
#pragma once

#include "tcp_listeners.hpp"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace sidecar::binds {

using ListenerKey = std::pair<asio::ip::address, std::uint16_t>;

/// The TCP listeners of one family (AF_INET or AF_INET6) of the calling thread's network namespace, from
/// the kernel's listening sockets alone (IPv6 ones with their IPV6_V6ONLY), or std::nullopt when the
/// kernel would not answer. Unlike reading /proc/net/tcp, which walks every socket of every namespace,
/// its cost does not grow with the host's established connections: what `run` looks at under a storm.
inline std::optional<std::vector<TcpListener>> sock_diag_listeners(int family) {
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return std::nullopt;
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  message.request.sdiag_family = static_cast<std::uint8_t>(family);
  message.request.sdiag_protocol = IPPROTO_TCP;
  constexpr unsigned tcp_listen = 10;  // TCP_LISTEN in the kernel's tcp_states.h
  message.request.idiag_states = 1U << tcp_listen;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &message, sizeof message, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    ::close(fd);
    return std::nullopt;
  }
  std::vector<TcpListener> out;
  alignas(nlmsghdr) std::array<char, 32768> buffer;
  bool done = false;
  bool failed = false;
  while (!done && !failed) {
    const auto n = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      failed = true;
      break;
    }
    auto length = static_cast<unsigned>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(h, length); h = NLMSG_NEXT(h, length)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        failed = true;
        break;
      }
      const auto* diag = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      TcpListener l{.address = {}, .port = ntohs(diag->id.idiag_sport), .uid = diag->idiag_uid, .v6_only = std::nullopt};
      if (family == AF_INET6) {
        asio::ip::address_v6::bytes_type bytes{};
        std::memcpy(bytes.data(), diag->id.idiag_src, bytes.size());
        l.address = asio::ip::address_v6(bytes);
      } else {
        asio::ip::address_v4::bytes_type bytes{};
        std::memcpy(bytes.data(), diag->id.idiag_src, bytes.size());
        l.address = asio::ip::address_v4(bytes);
      }
      auto attributes_length = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *diag));
      for (auto* a = reinterpret_cast<rtattr*>(const_cast<inet_diag_msg*>(diag) + 1); RTA_OK(a, attributes_length);
           a = RTA_NEXT(a, attributes_length)) {
        if (a->rta_type == INET_DIAG_SKV6ONLY) l.v6_only = *static_cast<const std::uint8_t*>(RTA_DATA(a)) != 0;
      }
      out.push_back(l);
    }
  }
  ::close(fd);
  if (failed) return std::nullopt;
  return out;
}

/// IPV6_V6ONLY per IPv6 listening (address, port) of the calling thread's network namespace, or
/// std::nullopt when the kernel would not answer (no sock_diag): callers fall back to the sysctl default.
inline std::optional<std::map<ListenerKey, bool>> ipv6_listener_v6only() {
  const auto listeners = sock_diag_listeners(AF_INET6);
  if (!listeners) return std::nullopt;
  std::map<ListenerKey, bool> out;
  for (const auto& l : *listeners) {
    if (l.v6_only) out[{l.address, l.port}] = *l.v6_only;
  }
  return out;
}

}  // namespace sidecar::binds
