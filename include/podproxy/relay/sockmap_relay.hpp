// SockmapRelay: the kernel moves the bytes (an eBPF sockhash and stream verdict), the proxy owns the rest.
#pragma once

#include <podproxy/concepts/relay.hpp>
#include <podproxy/relay/detail/copy_pump.hpp>
#include <podproxy/relay/pump.hpp>
#include <podproxy/relay/sockmap_program.hpp>
#include <podproxy/relay/splice_relay.hpp>

#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

namespace podproxy {

/// Relays through the kernel: once both sockets of a connection are up, their first pump puts both in the
/// program's sockhash (each one's peer recorded first), and from then on every segment either socket
/// receives is redirected by the verdict program to the other's send queue (the psock backlog sends it),
/// without waking the proxy to move it. The proxy keeps what the kernel does not do for it:
/// - EOF: a socket in the map still reports its FIN (recv returns 0). The redirected bytes may still be
///   queued in the peer's psock backlog, where a FIN sent at once would overtake them (tcp_send_fin
///   queues the FIN behind what the send queue holds, not behind the backlog). So the pump reports `fin`
///   only once the sink has been handed every byte the source received (tcpi_bytes_received of the source
///   against tcpi_bytes_sent less tcpi_bytes_retrans plus tcpi_notsent_bytes of the sink), and until
///   then returns `pending`. The program passes the FIN's empty segment to the source's own reader
///   instead of redirecting it (the peer's backlog would take it for a broken pipe).
/// - RST and errors: recv on the source reports them, as for the other relays; a send error of the
///   backlog is reported on the sink's socket.
/// - Counting: `delivered` is what the sink's socket was handed since the last call (the same counters);
///   the proxy is woken when the socket receives bytes (the kernel's data-ready after each verdict), so
///   the access log, the byte counters and the idle timeout see the traffic.
/// - Memory: redirected segments stay charged to the source's receive buffer until the peer's socket
///   took them, so a slow reader closes the source's receive window: bounded by the kernel's buffers.
///
/// When the map refuses a connection (a socket whose FIN came before it could enter, a full map), the
/// program hands that connection's bytes to the proxy, which copies them as BufferedRelay does. Without a
/// program (null: it could not be loaded) every connection is relayed by the SpliceRelay given as the
/// fallback.
class SockmapRelay {
 public:
  /// One direction of one connection.
  class Pump {
   public:
    Pump(Pump&& other) noexcept
        : program_(std::exchange(other.program_, nullptr)), fallback_(std::move(other.fallback_)),
          copy_(std::move(other.copy_)), state_(other.state_), source_cookie_(std::exchange(other.source_cookie_, 0)),
          written_(other.written_) {}
    Pump& operator=(Pump&& other) noexcept {
      if (this != &other) {
        forget_peer();
        program_ = std::exchange(other.program_, nullptr);
        fallback_ = std::move(other.fallback_);
        copy_ = std::move(other.copy_);
        state_ = other.state_;
        source_cookie_ = std::exchange(other.source_cookie_, 0);
        written_ = other.written_;
      }
      return *this;
    }
    Pump(const Pump&) = delete;
    Pump& operator=(const Pump&) = delete;
    ~Pump() { forget_peer(); }

    PumpStep transfer(int source, int sink, TransferHint hint = {}) {
      if (state_ == State::unattached) state_ = attach(source, sink);
      if (state_ == State::fallback) return fallback_.transfer(source, sink, hint);
      if (state_ == State::copying) return copy_.transfer(source, sink, hint);
      PumpStep step;
      if (state_ == State::attached) {
        // Reading the source: EAGAIN while the kernel redirects; bytes only if the verdict passed them
        // to us; 0 at the FIN; the error of a RST.
        const PumpStep copied = copy_.transfer(source, sink, hint);
        step.status = copied.status;
        if (copied.status != PumpStatus::fin) {
          if (copied.status != PumpStatus::source_failed && copied.status != PumpStatus::sink_failed) {
            step.delivered = progress(sink);
          }
          return step;
        }
        state_ = State::draining;
      }
      // The source's FIN arrived: wait until the sink was handed every byte before it.
      step.delivered = progress(sink);
      const auto received = bytes_received(source);
      if (!received) return {step.delivered, PumpStatus::source_failed};
      // tcpi_bytes_received counts the FIN's sequence number too.
      if (written_ + 1 >= *received) {
        step.status = PumpStatus::fin;
        return step;
      }
      step.status = PumpStatus::pending;
      return step;
    }

    void discard() noexcept {
      copy_.discard();
      fallback_.discard();
      forget_peer();
    }

    /// Whether this direction is relayed by the kernel (false: by the fallback, or not started yet).
    [[nodiscard]] bool in_kernel() const noexcept { return state_ == State::attached || state_ == State::draining; }

   private:
    friend class SockmapRelay;
    /// attached, then draining once the source's FIN came; copying when the map refused the connection
    /// (a socket may sit in the map, but its bytes all come to the proxy); fallback without a program.
    enum class State : std::uint8_t { unattached, attached, draining, copying, fallback };

    Pump(const SockmapProgram* program, SpliceRelay::Pump fallback, detail::CopyPump copy) noexcept
        : program_(program), fallback_(std::move(fallback)), copy_(std::move(copy)),
          state_(program ? State::unattached : State::fallback) {}

    static long bpf(int command, bpf_attr& attr) noexcept {
      return ::syscall(__NR_bpf, command, &attr, sizeof attr);
    }
    static bool update(int map, std::uint64_t key, std::uint64_t value, std::uint64_t flags) noexcept {
      bpf_attr attr{};
      attr.map_fd = static_cast<std::uint32_t>(map);
      attr.key = reinterpret_cast<std::uint64_t>(&key);
      attr.value = reinterpret_cast<std::uint64_t>(&value);
      attr.flags = flags;
      return bpf(BPF_MAP_UPDATE_ELEM, attr) == 0;
    }
    static void erase(int map, std::uint64_t key) noexcept {
      bpf_attr attr{};
      attr.map_fd = static_cast<std::uint32_t>(map);
      attr.key = reinterpret_cast<std::uint64_t>(&key);
      (void)bpf(BPF_MAP_DELETE_ELEM, attr);
    }
    static std::uint64_t cookie(int fd) noexcept {
      std::uint64_t value = 0;
      socklen_t length = sizeof value;
      return ::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &value, &length) == 0 ? value : 0;
    }

    static bool lookup(int map, std::uint64_t key, std::uint64_t& value) noexcept {
      bpf_attr attr{};
      attr.map_fd = static_cast<std::uint32_t>(map);
      attr.key = reinterpret_cast<std::uint64_t>(&key);
      attr.value = reinterpret_cast<std::uint64_t>(&value);
      return bpf(BPF_MAP_LOOKUP_ELEM, attr) == 0;
    }

    /// The connection's first pump puts both sockets in the map, each one's peer recorded first; the
    /// second finds the peer recorded, or 0 when the map refused the connection. A refusal (a socket no
    /// longer ESTABLISHED: its FIN came already; the map full) is never undone by taking a socket out
    /// again (that would drop what the psock holds): the peers are set to 0, so the program passes every
    /// byte either socket receives to the proxy, in order, and both directions copy.
    State attach(int source, int sink) noexcept {
      const std::uint64_t from = cookie(source);
      const std::uint64_t to = cookie(sink);
      if (from == 0 || to == 0) return State::fallback;
      const int peers = program_->peers_fd();
      const int sockets = program_->sockets_fd();
      source_cookie_ = from;
      std::uint64_t peer = 0;
      if (lookup(peers, from, peer)) return peer != 0 ? State::attached : State::copying;
      if (update(peers, from, to, BPF_ANY) && update(peers, to, from, BPF_ANY) &&
          update(sockets, to, static_cast<std::uint64_t>(sink), BPF_NOEXIST) &&
          update(sockets, from, static_cast<std::uint64_t>(source), BPF_NOEXIST)) {
        return State::attached;
      }
      (void)update(peers, from, 0, BPF_ANY);
      (void)update(peers, to, 0, BPF_ANY);
      return State::copying;
    }

    void forget_peer() noexcept {
      if (source_cookie_ != 0 && program_) erase(program_->peers_fd(), source_cookie_);
      source_cookie_ = 0;
    }

    /// Bytes the sink's socket was handed since the last call, and moves the mark.
    std::size_t progress(int sink) noexcept {
      const std::uint64_t now = bytes_written(sink);
      if (now <= written_) return 0;
      const std::uint64_t moved = now - written_;
      written_ = now;
      return static_cast<std::size_t>(moved);
    }

    /// Linux's struct tcp_info up to tcpi_bytes_retrans (UAPI: fields are only ever appended). glibc's
    /// <netinet/tcp.h> stops before the byte counters, and <linux/tcp.h> cannot be included beside it.
    struct TcpInfo {
      std::uint8_t flags[8];
      std::uint32_t fields[24];
      std::uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
      std::uint32_t segs_out, segs_in, notsent_bytes, min_rtt, data_segs_in, data_segs_out;
      std::uint64_t delivery_rate, busy_time, rwnd_limited, sndbuf_limited;
      std::uint32_t delivered, delivered_ce;
      std::uint64_t bytes_sent, bytes_retrans;
    };
    static_assert(sizeof(TcpInfo) == 216);
    static bool tcp_info(int fd, TcpInfo& info) noexcept {
      socklen_t length = sizeof info;
      return ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) == 0 && length >= sizeof info;
    }
    /// Data bytes ever handed to the socket: sent once (retransmissions aside), plus not sent yet. From one
    /// snapshot; unlike tcpi_bytes_acked, it counts neither the SYN nor the FIN.
    static std::uint64_t bytes_written(int fd) noexcept {
      TcpInfo info{};
      if (!tcp_info(fd, info)) return 0;
      return info.bytes_sent - info.bytes_retrans + info.notsent_bytes;
    }
    /// Bytes the socket received, its FIN's sequence number included once it came.
    static std::optional<std::uint64_t> bytes_received(int fd) noexcept {
      TcpInfo info{};
      if (!tcp_info(fd, info)) return std::nullopt;
      return info.bytes_received;
    }

    const SockmapProgram* program_;
    SpliceRelay::Pump fallback_;
    detail::CopyPump copy_;
    State state_;
    std::uint64_t source_cookie_ = 0;
    std::uint64_t written_ = 0;  // bytes_written(sink) at the last call
  };
  using pump_type = Pump;

  /// `program` null relays every connection with `fallback`.
  explicit SockmapRelay(std::shared_ptr<const SockmapProgram> program, SpliceRelay fallback = SpliceRelay())
      : program_(std::move(program)), fallback_(std::move(fallback)) {}

  /// Whether connections go through the kernel (false: the program could not be loaded; all splice).
  [[nodiscard]] bool in_kernel() const noexcept { return program_ != nullptr; }
  [[nodiscard]] const SpliceRelay& fallback() const noexcept { return fallback_; }

  /// A pump for one direction. The relay (and so its program) must outlive it.
  [[nodiscard]] Pump make_pump() const noexcept {
    return Pump(program_.get(), fallback_.make_pump(), detail::CopyPump(copy_buffer_size, copy_budget));
  }

 private:
  static constexpr std::size_t copy_buffer_size = 16 * 1024;
  static constexpr std::size_t copy_budget = 1024 * 1024;
  std::shared_ptr<const SockmapProgram> program_;
  SpliceRelay fallback_;
};
static_assert(concepts::Relay<SockmapRelay>);

}  // namespace podproxy
