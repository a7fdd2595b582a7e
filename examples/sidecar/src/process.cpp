// Pod address detection and the privilege drop (see process.hpp).
#include "process.hpp"

#include <fmt/format.h>

#include <grp.h>
#include <ifaddrs.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sidecar {

std::vector<asio::ip::address> detect_pod_ips() {
  std::vector<asio::ip::address> v4, v6;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return {};
  for (const ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || (entry->ifa_flags & IFF_LOOPBACK) != 0) continue;
    if (entry->ifa_addr->sa_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(entry->ifa_addr);
      v4.emplace_back(asio::ip::address_v4(ntohl(in->sin_addr.s_addr)));
    } else if (entry->ifa_addr->sa_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(entry->ifa_addr);
      asio::ip::address_v6::bytes_type bytes;
      std::memcpy(bytes.data(), in6->sin6_addr.s6_addr, bytes.size());
      const asio::ip::address_v6 address(bytes);
      if (!address.is_link_local()) v6.emplace_back(address);
    }
  }
  ::freeifaddrs(list);
  v4.insert(v4.end(), v6.begin(), v6.end());
  return v4;
}

namespace {

bool capget_self(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return ::syscall(SYS_capget, &header, data) == 0;
}

}  // namespace

bool has_net_admin() {
  __user_cap_data_struct data[2]{};
  return capget_self(data) && (data[CAP_NET_ADMIN / 32].effective & (1U << (CAP_NET_ADMIN % 32))) != 0;
}

std::string drop_privileges(std::uint32_t uid, std::uint32_t gid, bool keep_net_admin) {
  if (::getuid() == uid && ::geteuid() == uid && ::getgid() == gid && ::getegid() == gid) return {};
  if (::geteuid() != 0) {
    return fmt::format("--uid {} --gid {}: running as uid {} gid {}, and only root can switch; run as the proxy "
                       "user itself, or as root",
                       uid, gid, ::geteuid(), ::getegid());
  }
  const auto failed = [](const char* what) { return fmt::format("{}: {}", what, std::strerror(errno)); };
  if (keep_net_admin && ::prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0) return failed("prctl(PR_SET_KEEPCAPS)");
  const gid_t group = gid;
  if (::setgroups(1, &group) != 0) return failed("setgroups");
  if (::setresgid(gid, gid, gid) != 0) return failed(fmt::format("setgid({})", gid).c_str());
  if (::setresuid(uid, uid, uid) != 0) return failed(fmt::format("setuid({})", uid).c_str());
  if (keep_net_admin) {
    // KEEPCAPS kept the permitted set across setuid; make CAP_NET_ADMIN the only one, and effective.
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    data[CAP_NET_ADMIN / 32].effective = data[CAP_NET_ADMIN / 32].permitted = 1U << (CAP_NET_ADMIN % 32);
    if (::syscall(SYS_capset, &header, data) != 0) return failed("capset(CAP_NET_ADMIN)");
    (void)::prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
  }
  return {};
}

}  // namespace sidecar
