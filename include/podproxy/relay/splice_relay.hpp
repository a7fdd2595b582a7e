// SpliceRelay: zero-copy relay, socket -> pipe -> socket with splice(2), pipes borrowed while data flows.
#pragma once

#include <podproxy/concepts/relay.hpp>
#include <podproxy/relay/detail/copy_pump.hpp>
#include <podproxy/relay/pipe_pool.hpp>
#include <podproxy/relay/pump.hpp>

#include <fcntl.h>
#include <signal.h>

#include <cerrno>
#include <cstddef>
#include <memory>
#include <utility>

namespace podproxy {

struct SpliceRelayOptions {
  /// Bytes of the copy buffer a direction borrows while it copies: the first read of each burst that
  /// does not follow a bulk one (small messages are cheaper to copy than to splice; a read that fills
  /// this buffer switches the burst to splice), and whole bursts when the pool lent no pipe or the sockets
  /// do not support splice. Borrowed from a per-thread cache only while it holds bytes.
  std::size_t copy_buffer_size = 16 * 1024;
  /// Bytes one direction moves before it lets other connections on its thread have a turn.
  std::size_t budget = 4 * 1024 * 1024;
  /// splice(2) into a socket whose peer has gone raises SIGPIPE (it takes no MSG_NOSIGNAL), whose default
  /// action ends the process. So constructing the relay sets SIGPIPE to SIG_IGN for the whole process when
  /// it is at its default disposition (a handler already installed is left alone). A program that needs
  /// SIGPIPE's default action elsewhere sets this to false, and must then keep SIGPIPE from the threads
  /// that run the proxy itself (pthread_sigmask, or a handler).
  bool ignore_sigpipe = true;
};

/// Moves bulk without copying it through user space: splice(source socket -> pipe) then
/// splice(pipe -> sink socket); small messages are copied (like HAProxy's splice-auto). Each direction
/// borrows a pipe from the pool when data arrives and gives it back once the pipe is empty and the source
/// has nothing more, so an idle connection holds no pipe.
/// When the pool lends none, the burst is copied through a small buffer instead; when splice(2) is not
/// supported for the sockets (EINVAL or ENOSYS before the first byte entered a pipe) the direction copies
/// from then on.
///
/// Memory per connection is bounded by two pipes (or two copy buffers) whatever the peers do: a direction
/// reads no more than its pipe's free room while the sink is full, and a copying one reads nothing more
/// until what it holds was written.
///
/// Process state: constructing one sets SIGPIPE to SIG_IGN if it is at its default disposition
/// (SpliceRelayOptions::ignore_sigpipe says why, and how to opt out).
class SpliceRelay {
 public:
  /// One direction of one connection.
  class Pump {
   public:
    Pump(Pump&&) noexcept = default;
    Pump& operator=(Pump&&) noexcept = default;
    Pump(const Pump&) = delete;
    Pump& operator=(const Pump&) = delete;
    ~Pump() { discard(); }

    PumpStep transfer(int source, int sink, TransferHint hint = {}) {
      PumpStep step;
      if (!bulk_ && !copying_) {
        // Splicing a few bytes costs more than copying them (pipe buffers, page references), so a burst
        // starts with one read into a small buffer; only a read that fills it goes on by splice.
        bool filled = false;
        step = copy_.probe(source, sink, filled, hint);
        if (!filled) return step;
        bulk_ = true;
      }
      for (;;) {
        if (copying_) {
          // This burst is copied; once the copy pump is empty again the next burst may splice.
          const PumpStep copied = copy_.transfer(source, sink, hint);
          step.delivered += copied.delivered;
          if (copied.status == PumpStatus::want_read && can_splice_) copying_ = false;
          step.status = copied.status;
          return step;
        }
        if (in_pipe_ > 0) {
          const auto& pipe = lease_.pipe();
          const ssize_t m = ::splice(pipe.read_end(), nullptr, sink, nullptr, in_pipe_,
                                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
          if (m > 0) {
            in_pipe_ -= static_cast<std::size_t>(m);
            step.delivered += static_cast<std::size_t>(m);
            continue;
          }
          const int error = m < 0 ? errno : EPIPE;
          if (error == EINTR) continue;
          if (error == EAGAIN) {
            // The sink is full. Fill the rest of the pipe from the source meanwhile: the source's
            // receive window reopens now rather than when the sink drains, and the next write is larger.
            if (!top_up(source)) return finish(step, PumpStatus::source_failed);
            return finish(step, PumpStatus::want_write);
          }
          discard();
          return finish(step, PumpStatus::sink_failed);
        }
        // The pipe is empty.
        if (step.delivered >= budget_) {
          lease_.give_back();
          return finish(step, PumpStatus::yield);
        }
        if (!lease_) {
          if (can_splice_) lease_ = pool_->acquire();
          if (!lease_) {
            copying_ = true;
            continue;
          }
        }
        const auto& pipe = lease_.pipe();
        const ssize_t n = ::splice(source, nullptr, pipe.write_end(), nullptr, pipe.capacity(),
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          in_pipe_ = static_cast<std::size_t>(n);
          burst_ += in_pipe_;
          spliced_any_ = true;
          continue;
        }
        const int error = n < 0 ? errno : 0;
        if (error == EINTR) continue;
        lease_.give_back();  // empty
        if (n == 0) return finish(step, PumpStatus::fin);
        if (error == EAGAIN) {
          // The next burst splices at once only if this one was bulk.
          bulk_ = burst_ >= bulk_threshold_;
          burst_ = 0;
          return finish(step, PumpStatus::want_read);
        }
        if ((error == EINVAL || error == ENOSYS) && !spliced_any_) {
          // This pair cannot splice: copy from now on. Nothing entered the pipe, so nothing is lost.
          can_splice_ = false;
          copying_ = true;
          continue;
        }
        return finish(step, PumpStatus::source_failed);
      }
    }

    void discard() noexcept {
      in_pipe_ = 0;
      burst_ = 0;
      lease_.discard();
      copy_.discard();
    }

    /// Bytes read from the source and not yet written to the sink (in the pipe or the copy buffer).
    [[nodiscard]] std::size_t held() const noexcept { return in_pipe_ + copy_.held(); }

    /// Whether this direction gave up on splice(2) for good (EINVAL/ENOSYS, or no pool).
    [[nodiscard]] bool copies_only() const noexcept { return !can_splice_; }

   private:
    friend class SpliceRelay;
    Pump(PipePool* pool, const SpliceRelayOptions& options) noexcept
        : pool_(pool), copy_(options.copy_buffer_size, options.budget), budget_(options.budget),
          bulk_threshold_(options.copy_buffer_size), can_splice_(pool != nullptr) {}

    /// Splices what the source has into the pipe's free room (the pipe already holds bytes for a full
    /// sink). False when reading the source failed (its error is consumed by the read: report it now).
    /// A FIN is left where it is: the read after the pipe drained sees it again.
    bool top_up(int source) noexcept {
      const auto& pipe = lease_.pipe();
      if (in_pipe_ + top_up_min > pipe.capacity()) return true;
      for (;;) {
        const ssize_t n = ::splice(source, nullptr, pipe.write_end(), nullptr, pipe.capacity() - in_pipe_,
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          in_pipe_ += static_cast<std::size_t>(n);
          burst_ += static_cast<std::size_t>(n);
          return true;
        }
        if (n == 0 || errno == EAGAIN) return true;  // EAGAIN: the source is empty, or the pipe's slots full
        if (errno == EINTR) continue;
        discard();
        return false;
      }
    }

    static PumpStep finish(PumpStep step, PumpStatus status) noexcept {
      step.status = status;
      return step;
    }

    PipePool* pool_;
    PipePool::Lease lease_;
    detail::CopyPump copy_;
    static constexpr std::size_t top_up_min = 64 * 1024;  // smaller room is not worth a syscall
    std::size_t in_pipe_ = 0;
    std::size_t burst_ = 0;  // bytes spliced since the last want_read
    std::size_t budget_;
    std::size_t bulk_threshold_;
    bool can_splice_;
    bool copying_ = false;
    bool spliced_any_ = false;
    bool bulk_ = false;  // the last burst was bulk: start the next one by splice
  };
  using pump_type = Pump;

  explicit SpliceRelay(std::shared_ptr<PipePool> pool = std::make_shared<PipePool>(),
                       SpliceRelayOptions options = {})
      : pool_(std::move(pool)), options_(options) {
    if (options_.ignore_sigpipe) ignore_sigpipe();
  }

  [[nodiscard]] const std::shared_ptr<PipePool>& pool() const noexcept { return pool_; }
  [[nodiscard]] const SpliceRelayOptions& options() const noexcept { return options_; }

  /// A pump for one direction. The relay (and so its pool) must outlive it.
  [[nodiscard]] Pump make_pump() const noexcept { return Pump(pool_.get(), options_); }

 private:
  static void ignore_sigpipe() noexcept {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      ::signal(SIGPIPE, SIG_IGN);
    }
  }

  std::shared_ptr<PipePool> pool_;
  SpliceRelayOptions options_;
};
static_assert(concepts::Relay<SpliceRelay>);

}  // namespace podproxy
