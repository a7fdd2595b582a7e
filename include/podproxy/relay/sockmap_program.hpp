// SockmapProgram: the loaded eBPF half of SockmapRelay (a sockhash, a peer map and the verdict program).
#pragma once

#include <memory>
#include <string>

namespace podproxy {

/// What the kernel holds for SockmapRelay: a SOCKHASH of relayed sockets (keyed by SO_COOKIE), a HASH map
/// from a socket's cookie to its peer's, and an sk_skb stream-verdict program attached to the sockhash
/// that redirects every segment a socket in it receives to its peer's send queue (bpf_sk_redirect_hash).
///
/// Loading needs CAP_BPF and CAP_NET_ADMIN (or root); using the maps afterwards needs only their
/// descriptors, so a process may load, then drop its privileges, and keep relaying. Part of the optional
/// component podproxy::sockmap (links libbpf); the program is embedded, nothing is read from disk.
/// Thread safety: immutable after load; the maps are updated with bpf(2) from any thread.
class SockmapProgram {
 public:
  /// Loads and attaches the program. Null, with `why` saying what failed (a missing capability, a kernel
  /// without sockmap, a verifier refusal), when it cannot: the caller decides what to fall back to.
  static std::shared_ptr<const SockmapProgram> load(std::string& why);

  SockmapProgram(const SockmapProgram&) = delete;
  SockmapProgram& operator=(const SockmapProgram&) = delete;
  ~SockmapProgram();

  /// The SOCKHASH: cookie -> socket.
  [[nodiscard]] int sockets_fd() const noexcept { return sockets_fd_; }
  /// The HASH: a socket's cookie -> its peer's cookie.
  [[nodiscard]] int peers_fd() const noexcept { return peers_fd_; }

 private:
  struct Loaded;
  explicit SockmapProgram(Loaded* loaded, int sockets_fd, int peers_fd) noexcept
      : loaded_(loaded), sockets_fd_(sockets_fd), peers_fd_(peers_fd) {}

  Loaded* loaded_;
  int sockets_fd_;
  int peers_fd_;
};

}  // namespace podproxy
