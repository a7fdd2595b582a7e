// CopyPump: recv into a buffer, send it out; the buffer is borrowed from a per-thread cache only while it
// holds bytes.
#pragma once

#include <podproxy/relay/pump.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace podproxy::detail {

/// Per-thread cache of equally sized buffers. A direction takes one when bytes arrive and returns it as
/// soon as they are written out, so steady traffic allocates nothing and an idle connection holds none.
/// Bounded: at most `max_cached` buffers of the most recently used size stay cached per thread.
class BufferCache {
 public:
  static constexpr std::size_t max_cached = 16;

  static std::unique_ptr<std::byte[]> take(std::size_t size) {
    auto& self = instance();
    if (self.size_ == size && !self.free_.empty()) {
      auto buffer = std::move(self.free_.back());
      self.free_.pop_back();
      return buffer;
    }
    return std::make_unique_for_overwrite<std::byte[]>(size);
  }

  static void give_back(std::unique_ptr<std::byte[]> buffer, std::size_t size) noexcept {
    if (!buffer) return;
    auto& self = instance();
    if (self.size_ != size) {
      self.free_.clear();
      self.size_ = size;
    }
    if (self.free_.size() < max_cached) self.free_.push_back(std::move(buffer));  // reserved: no allocation
  }

 private:
  BufferCache() { free_.reserve(max_cached); }
  static BufferCache& instance() {
    thread_local BufferCache cache;
    return cache;
  }
  std::size_t size_ = 0;
  std::vector<std::unique_ptr<std::byte[]>> free_;
};

/// One direction of a copying relay: reads until the source would block, writing each read out before
/// the next, so it holds at most one buffer of bytes (a slow reader bounds memory at `buffer_size`).
class CopyPump {
 public:
  CopyPump(std::size_t buffer_size, std::size_t budget) noexcept : size_(buffer_size), budget_(budget) {}
  CopyPump(CopyPump&& other) noexcept
      : buffer_(std::move(other.buffer_)),
        size_(other.size_),
        budget_(other.budget_),
        begin_(std::exchange(other.begin_, 0)),
        end_(std::exchange(other.end_, 0)),
        last_read_(std::exchange(other.last_read_, LastRead::none)) {}
  CopyPump& operator=(CopyPump&& other) noexcept {
    if (this != &other) {
      discard();
      buffer_ = std::move(other.buffer_);
      size_ = other.size_;
      budget_ = other.budget_;
      begin_ = std::exchange(other.begin_, 0);
      end_ = std::exchange(other.end_, 0);
      last_read_ = std::exchange(other.last_read_, LastRead::none);
    }
    return *this;
  }
  CopyPump(const CopyPump&) = delete;
  CopyPump& operator=(const CopyPump&) = delete;
  ~CopyPump() { discard(); }

  /// Moves bytes until the source would block (or ended, or failed), the sink would block, or the budget
  /// is spent. `want_read` means recv(2) said EAGAIN, never merely that a read came back short: the
  /// proxy's readiness is edge-triggered, and a short read does not prove the source drained (bytes can
  /// sit in the receive queue after a short read with no event for them, and the transfer then stalls
  /// for good; tests/core/test_proxy.cpp reproduces it).
  PumpStep transfer(int source, int sink, TransferHint hint = {}) {
    bool filled = false;
    return run(source, sink, /*probe=*/false, filled, hint);
  }

  /// Like transfer, but returns as soon as a read filled the whole buffer and was written out (`filled`
  /// is then true and the status is `yield`): more is likely queued, and the caller may move it by a
  /// cheaper path (splice). Small messages are copied, bulk is left to the caller.
  PumpStep probe(int source, int sink, bool& filled, TransferHint hint = {}) {
    return run(source, sink, /*probe=*/true, filled, hint);
  }

  /// Drops held bytes and gives the buffer back.
  void discard() noexcept {
    begin_ = end_ = 0;
    release();
  }

  /// Whether bytes are waiting for the sink.
  [[nodiscard]] bool holding() const noexcept { return begin_ < end_; }

  /// Bytes read from the source and not yet written to the sink.
  [[nodiscard]] std::size_t held() const noexcept { return end_ - begin_; }

 private:
  PumpStep run(int source, int sink, bool probe, bool& filled, TransferHint hint) {
    PumpStep step;
    filled = false;
    for (;;) {
      if (begin_ < end_) {
        // The last bytes before a FIN that is already queued: hold them for the FIN's segment (the proxy
        // shuts down or closes the sink as soon as this direction reads the FIN, which flushes them).
        const int more = hint.source_ending && last_read_ == LastRead::short_read ? MSG_MORE : 0;
        const ssize_t w = ::send(sink, buffer_.get() + begin_, end_ - begin_, MSG_NOSIGNAL | MSG_DONTWAIT | more);
        if (w > 0) {
          begin_ += static_cast<std::size_t>(w);
          step.delivered += static_cast<std::size_t>(w);
          continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return finish(step, PumpStatus::want_write);
        discard();
        return finish(step, PumpStatus::sink_failed);
      }
      // The buffer is empty.
      if (probe && last_read_ == LastRead::full) {
        last_read_ = LastRead::none;
        filled = true;
        release();
        return finish(step, PumpStatus::yield);
      }
      if (step.delivered >= budget_) {
        release();
        return finish(step, PumpStatus::yield);
      }
      if (!buffer_) buffer_ = BufferCache::take(size_);
      const ssize_t r = ::recv(source, buffer_.get(), size_, MSG_DONTWAIT);
      if (r > 0) {
        begin_ = 0;
        end_ = static_cast<std::size_t>(r);
        last_read_ = end_ < size_ ? LastRead::short_read : LastRead::full;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      const bool would_block = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      release();
      if (would_block) return finish(step, PumpStatus::want_read);
      return finish(step, r == 0 ? PumpStatus::fin : PumpStatus::source_failed);
    }
  }

  static PumpStep finish(PumpStep step, PumpStatus status) noexcept {
    step.status = status;
    return step;
  }
  void release() noexcept {
    begin_ = end_ = 0;
    last_read_ = LastRead::none;
    if (buffer_) BufferCache::give_back(std::move(buffer_), size_);
  }

  std::unique_ptr<std::byte[]> buffer_;
  std::size_t size_;
  std::size_t budget_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  enum class LastRead : std::uint8_t { none, short_read, full };
  LastRead last_read_ = LastRead::none;
};

}  // namespace podproxy::detail
