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
/// rules' `--uid-owner`/`--gid-owner` exemptions match this process's own connections. With
/// `keep_net_admin`, CAP_NET_ADMIN stays effective (and is the only capability left): TPROXY's
/// IP_TRANSPARENT and SO_MARK need it on every upstream socket. Nothing changes when the process already
/// runs as uid/gid. Returns an error message, empty on success. Call before starting other threads:
/// capabilities are per thread.
[[nodiscard]] std::string drop_privileges(std::uint32_t uid, std::uint32_t gid, bool keep_net_admin);

/// Whether this thread has CAP_NET_ADMIN in its effective set.
[[nodiscard]] bool has_net_admin();

}  // namespace sidecar
