// The addresses of a network namespace's non-loopback interfaces (the pod IPs), for check-binds: of
// this process's namespace, or of another process's, read on a thread that joined it with setns(2).
#pragma once

#include <asio/ip/address.hpp>

#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace sidecar::binds {

/// The addresses of the calling thread's namespace: IPv4 and global IPv6 addresses of every interface
/// that is not a loopback (link-local IPv6 is skipped: no Service sends traffic to it).
inline std::vector<asio::ip::address> current_pod_addresses() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) throw std::system_error(errno, std::generic_category(), "getifaddrs");
  std::vector<asio::ip::address> out;
  for (auto* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || (a->ifa_flags & IFF_LOOPBACK) != 0) continue;
    if (a->ifa_addr->sa_family == AF_INET) {
      asio::ip::address_v4::bytes_type bytes{};
      std::memcpy(bytes.data(), &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, 4);
      out.emplace_back(asio::ip::address_v4(bytes));
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      asio::ip::address_v6::bytes_type bytes{};
      std::memcpy(bytes.data(), &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr, 16);
      const asio::ip::address_v6 v6(bytes);
      if (!v6.is_link_local()) out.emplace_back(v6);
    }
  }
  ::freeifaddrs(list);
  return out;
}

/// Runs `read()` on a short-lived thread inside the network namespace of process `pid` and returns its
/// result: setns(CLONE_NEWNET) changes only the calling thread, so the process stays where it is, and
/// what `read()` opens under /proc/sys/net or asks getifaddrs is that namespace's. Throws
/// std::system_error (e.g. EPERM without CAP_SYS_ADMIN) when the namespace cannot be joined.
template <class Read>
auto read_in_netns_of(int pid, Read read) -> decltype(read()) {
  const std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
  decltype(read()) out{};
  std::exception_ptr failure;
  std::thread([&] {
    try {
      if (::setns(fd, CLONE_NEWNET) != 0) throw std::system_error(errno, std::generic_category(), "setns " + path);
      out = read();
    } catch (...) {
      failure = std::current_exception();
    }
  }).join();
  ::close(fd);
  if (failure) std::rethrow_exception(failure);
  return out;
}

}  // namespace sidecar::binds
