// The kernel half of SockmapRelay: a stream-verdict program that sends each segment a socket receives
// out of the socket the proxy paired it with.
//
// Built with clang -target bpf; bpftool gen skeleton embeds the object in sockmap_relay.skel.h.
// Only UAPI headers: no vmlinux.h, so the object does not depend on the build host's kernel.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// Both sockets of every relayed connection, keyed by socket cookie (SO_COOKIE). A socket leaves the
// map by itself when it is closed.
struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, __u64);
} sockets SEC(".maps");

// Where a socket's bytes go: its cookie to its peer's. Written before the socket enters `sockets`, so
// every byte the program sees has a destination.
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, __u64);
} peers SEC(".maps");

SEC("sk_skb/stream_verdict")
int relay_verdict(struct __sk_buff* skb) {
  // A segment without data is the FIN (tcp_read_skb hands it over too). Redirected, it would reach the
  // peer's backlog, whose send of zero bytes counts as a hard error: EPIPE on the peer's socket and its
  // redirects stopped (sk_psock_backlog). Passed, it stays on this socket, whose reader sees EOF.
  if (skb->len == 0) return SK_PASS;
  __u64 cookie = bpf_get_socket_cookie(skb);
  __u64* peer = bpf_map_lookup_elem(&peers, &cookie);
  // No peer, or 0 (the map refused the connection): hand the bytes to the socket's reader (the proxy),
  // which copies them itself.
  if (!peer || *peer == 0) return SK_PASS;
  // SK_PASS with the redirect set moves the segment to the peer's send side. When the peer is not in the
  // map (yet, or any more) the helper sets none and says SK_DROP, which would lose the bytes: SK_PASS
  // then hands them to this socket's reader instead.
  (void)bpf_sk_redirect_hash(skb, &sockets, peer, 0);
  return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
