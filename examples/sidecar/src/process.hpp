// Process-level plumbing for `run`: finding the pod's addresses, dropping privileges after binding.
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include <asio/ip/address.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sidecar {

/// The namespace's own addresses: every IPv4 address and global IPv6 address of the interfaces that are
/// not loopback, in interface order (eth0's first in a pod). Empty when there are none.
[[nodiscard]] std::vector<asio::ip::address> detect_pod_ips();

/// Becomes `uid`/`gid` with no supplementary groups (setgroups, setgid, setuid), so that the capture
/// rules' `--uid-owner`/`--gid-owner` exemptions match this process's own connections, and keeps exactly
/// the capabilities the mode needs, whether or not the ids change: none, or with `keep_net_admin`
/// CAP_NET_ADMIN alone (TPROXY's IP_TRANSPARENT and SO_MARK need it on every upstream socket), permitted
/// and effective; nothing inheritable or ambient; the bounding set cut to the same when CAP_SETPCAP allows;
/// and no_new_privs. Without CAP_NET_ADMIN to keep it keeps none (the caller checks has_net_admin). Returns
/// an error message, empty on success. Call before starting other threads: capabilities are per thread.
[[nodiscard]] std::string drop_privileges(std::uint32_t uid, std::uint32_t gid, bool keep_net_admin);

/// Whether this thread has CAP_NET_ADMIN in its effective set.
[[nodiscard]] bool has_net_admin();

}  // namespace sidecar
