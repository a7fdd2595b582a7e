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
#include <fstream>
#include <string>

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

constexpr std::uint32_t cap_bit(int cap) { return 1U << (cap % 32); }
bool effective(const __user_cap_data_struct (&data)[2], int cap) { return (data[cap / 32].effective & cap_bit(cap)) != 0; }
bool permitted(const __user_cap_data_struct (&data)[2], int cap) { return (data[cap / 32].permitted & cap_bit(cap)) != 0; }

/// setgroups(2) to just `gid`; also true where this user namespace forbids setgroups (its
/// /proc/self/setgroups says "deny", as `unshare --map-root-user` leaves it). There the supplementary
/// groups are those of the user who made the namespace, which the kernel keeps so that dropping one
/// cannot bypass a permission denied to that group: the process holds no more than that user.
bool set_groups(gid_t gid) {
  if (::setgroups(1, &gid) == 0) return true;
  const int error = errno;
  bool denied = false;
  if (error == EPERM) {
    std::ifstream file("/proc/self/setgroups");
    std::string word;
    denied = (file >> word) && word == "deny";
  }
  errno = error;  // what the caller reports when it was not that
  return denied;
}

}  // namespace

bool has_net_admin() {
  __user_cap_data_struct data[2]{};
  return capget_self(data) && effective(data, CAP_NET_ADMIN);
}

std::string drop_privileges(std::uint32_t uid, std::uint32_t gid, bool keep_net_admin) {
  const auto failed = [](const std::string& what) { return fmt::format("{}: {}", what, std::strerror(errno)); };
  const bool switch_ids = !(::getuid() == uid && ::geteuid() == uid && ::getgid() == gid && ::getegid() == gid);
  if (switch_ids && ::geteuid() != 0) {
    return fmt::format("--uid {} --gid {}: running as uid {} gid {}, and only root can switch; run as the proxy "
                       "user itself, or as root",
                       uid, gid, ::geteuid(), ::getegid());
  }
  __user_cap_data_struct held[2]{};
  if (!capget_self(held)) return failed("capget");
  // What stays: CAP_NET_ADMIN when the mode needs it and the process has it (when it does not, the caller
  // says which flag needs it); nothing otherwise, whether or not the ids change (a root that stays root
  // would keep every capability).
  const bool keep = keep_net_admin && permitted(held, CAP_NET_ADMIN);

  // The bounding set first, while CAP_SETPCAP may still be effective: it caps what any later execve could
  // grant. Without CAP_SETPCAP it cannot shrink; no_new_privs below covers execve then.
  if (effective(held, CAP_SETPCAP)) {
    for (int cap = 0; ::prctl(PR_CAPBSET_READ, cap, 0L, 0L, 0L) >= 0; ++cap) {
      if (keep && cap == CAP_NET_ADMIN) continue;
      if (::prctl(PR_CAPBSET_DROP, cap, 0L, 0L, 0L) != 0) return failed(fmt::format("prctl(PR_CAPBSET_DROP, {})", cap));
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0L, 0L, 0L) != 0 && errno != EINVAL) {
    return failed("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  }

  const gid_t group = gid;
  if (switch_ids) {
    if (keep && ::prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0) return failed("prctl(PR_SET_KEEPCAPS)");
    if (!set_groups(group)) return failed("setgroups");
    if (::setresgid(gid, gid, gid) != 0) return failed(fmt::format("setgid({})", gid));
    if (::setresuid(uid, uid, uid) != 0) return failed(fmt::format("setuid({})", uid));
  } else if (effective(held, CAP_SETGID) && !set_groups(group)) {
    return failed("setgroups");  // staying root: the supplementary groups go all the same
  }

  // Exactly the kept set, permitted and effective; nothing inheritable. Across setuid, KEEPCAPS kept the
  // permitted set and cleared the effective one; staying the same uid, this is what drops the rest.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (keep) data[CAP_NET_ADMIN / 32].effective = data[CAP_NET_ADMIN / 32].permitted = cap_bit(CAP_NET_ADMIN);
  if (::syscall(SYS_capset, &header, data) != 0) return failed(keep ? "capset(CAP_NET_ADMIN)" : "capset(none)");
  if (keep) (void)::prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);

  // No execve may grant more than this (setuid binaries, file capabilities, root's own on exec).
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) != 0) return failed("prctl(PR_SET_NO_NEW_PRIVS)");
  return {};
}

}  // namespace sidecar
