// PipePool: a bounded, thread-safe pool of sized pipes that splice relays borrow while data flows.
#pragma once

#include <podproxy/relay/pipe.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

namespace podproxy {

struct PipePoolOptions {
  /// Capacity asked of each pipe (F_SETPIPE_SZ). 1 MiB moves bulk fastest; 64 KiB costs least kernel
  /// memory. An unprivileged process gets at most fs.pipe-user-pages-soft worth of resized pipes
  /// (64 x 1 MiB by default), then 8 KiB pipes: PipePool::Stats::pipe_capacity says what was granted.
  std::size_t pipe_size = 1024 * 1024;
  /// Pipes alive at once, lent and idle together. A connection that finds none copies instead.
  std::size_t max_pipes = 64;
  /// Empty pipes kept for reuse; the rest are closed when returned.
  std::size_t max_idle = 16;
};

/// Lends pipes to splice relays. Each direction of a connection borrows a pipe only while bytes are in
/// flight and gives it back empty, so an idle connection holds none. Thread-safe: one pool may serve every
/// thread of a process. Must outlive every relay that uses it (SpliceRelay holds it by shared_ptr).
class PipePool {
 public:
  struct Stats {
    std::uint64_t created = 0;      ///< pipes created
    std::uint64_t reused = 0;       ///< loans served from the idle list
    std::uint64_t exhausted = 0;    ///< loans refused because max_pipes were alive (the relay copied)
    std::uint64_t discarded = 0;    ///< pipes closed on return because they were not empty
    std::uint64_t create_failed = 0;///< pipe2 failures (descriptors exhausted): the relay copied
    std::size_t lent = 0;           ///< pipes lent out now
    std::size_t idle = 0;           ///< empty pipes waiting in the pool now
    std::size_t pipe_capacity = 0;  ///< capacity the kernel granted the last pipe created
  };

  /// A borrowed pipe. Give it back with `give_back()` once it is empty; destroying a lease that was
  /// not given back closes the pipe, since bytes may be left in it.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept : pool_(std::exchange(other.pool_, nullptr)), pipe_(std::move(other.pipe_)) {}
    Lease& operator=(Lease&& other) noexcept {
      if (this != &other) {
        discard();
        pool_ = std::exchange(other.pool_, nullptr);
        pipe_ = std::move(other.pipe_);
      }
      return *this;
    }
    ~Lease() { discard(); }

    [[nodiscard]] const Pipe& pipe() const noexcept { return pipe_; }
    explicit operator bool() const noexcept { return pool_ != nullptr; }

    /// Returns the (empty) pipe to the pool.
    void give_back() noexcept {
      if (pool_) std::exchange(pool_, nullptr)->give_back(std::move(pipe_));
    }
    /// Closes the pipe (it may hold bytes that belong to nobody now).
    void discard() noexcept {
      if (pool_) std::exchange(pool_, nullptr)->discard(std::move(pipe_));
    }

   private:
    friend class PipePool;
    Lease(PipePool* pool, Pipe pipe) noexcept : pool_(pool), pipe_(std::move(pipe)) {}
    PipePool* pool_ = nullptr;
    Pipe pipe_;
  };

  explicit PipePool(PipePoolOptions options = {}) : options_(options) { idle_.reserve(options_.max_idle); }
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  /// Lends an empty pipe, or an empty Lease when max_pipes are alive or no pipe can be created.
  [[nodiscard]] Lease acquire() {
    std::unique_lock lock(mutex_);
    if (!idle_.empty()) {
      Pipe pipe = std::move(idle_.back());
      idle_.pop_back();
      ++stats_.reused;
      ++stats_.lent;
      return Lease(this, std::move(pipe));
    }
    if (stats_.lent >= options_.max_pipes) {
      ++stats_.exhausted;
      return {};
    }
    ++stats_.lent;  // reserve the slot, create outside the lock
    lock.unlock();
    try {
      Pipe pipe = Pipe::create(options_.pipe_size);
      lock.lock();
      ++stats_.created;
      stats_.pipe_capacity = pipe.capacity();
      return Lease(this, std::move(pipe));
    } catch (const std::system_error&) {
      if (!lock.owns_lock()) lock.lock();
      --stats_.lent;
      ++stats_.create_failed;
      return {};
    }
  }

  [[nodiscard]] Stats stats() const {
    std::lock_guard lock(mutex_);
    Stats s = stats_;
    s.idle = idle_.size();
    return s;
  }
  [[nodiscard]] const PipePoolOptions& options() const noexcept { return options_; }

  /// Closes every idle pipe (their kernel memory is released); lent pipes are unaffected.
  void trim() {
    std::vector<Pipe> closing;
    {
      std::lock_guard lock(mutex_);
      closing.swap(idle_);
      idle_.reserve(options_.max_idle);
    }
  }

 private:
  void give_back(Pipe pipe) noexcept {
    std::lock_guard lock(mutex_);
    --stats_.lent;
    if (idle_.size() < options_.max_idle) idle_.push_back(std::move(pipe));  // reserved: no allocation
  }
  void discard(Pipe /*closed when this returns, outside the lock*/) noexcept {
    std::lock_guard lock(mutex_);
    --stats_.lent;
    ++stats_.discarded;
  }

  PipePoolOptions options_;
  mutable std::mutex mutex_;
  std::vector<Pipe> idle_;
  Stats stats_{};
};

}  // namespace podproxy
