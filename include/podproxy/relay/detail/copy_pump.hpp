// CopyPump: recv into a buffer, send it out; the buffer is borrowed from a per-thread cache only while it
// holds bytes.
#pragma once

#include <podproxy/relay/pump.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
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
        end_(std::exchange(other.end_, 0)) {}
  CopyPump& operator=(CopyPump&& other) noexcept {
    if (this != &other) {
      discard();
      buffer_ = std::move(other.buffer_);
      size_ = other.size_;
      budget_ = other.budget_;
      begin_ = std::exchange(other.begin_, 0);
      end_ = std::exchange(other.end_, 0);
    }
    return *this;
  }
  CopyPump(const CopyPump&) = delete;
  CopyPump& operator=(const CopyPump&) = delete;
  ~CopyPump() { discard(); }

  PumpStep transfer(int source, int sink) {
    PumpStep step;
    for (;;) {
      if (begin_ < end_) {
        const ssize_t w = ::send(sink, buffer_.get() + begin_, end_ - begin_, MSG_NOSIGNAL | MSG_DONTWAIT);
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
      if (step.delivered >= budget_) {
        release();
        return finish(step, PumpStatus::yield);
      }
      if (!buffer_) buffer_ = BufferCache::take(size_);
      const ssize_t r = ::recv(source, buffer_.get(), size_, MSG_DONTWAIT);
      if (r > 0) {
        begin_ = 0;
        end_ = static_cast<std::size_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      const bool would_block = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      release();
      if (would_block) return finish(step, PumpStatus::want_read);
      return finish(step, r == 0 ? PumpStatus::fin : PumpStatus::source_failed);
    }
  }

  /// Drops held bytes and gives the buffer back.
  void discard() noexcept {
    begin_ = end_ = 0;
    release();
  }

  /// Whether bytes are waiting for the sink.
  [[nodiscard]] bool holding() const noexcept { return begin_ < end_; }

 private:
  static PumpStep finish(PumpStep step, PumpStatus status) noexcept {
    step.status = status;
    return step;
  }
  void release() noexcept {
    begin_ = end_ = 0;
    if (buffer_) BufferCache::give_back(std::move(buffer_), size_);
  }

  std::unique_ptr<std::byte[]> buffer_;
  std::size_t size_;
  std::size_t budget_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace podproxy::detail
