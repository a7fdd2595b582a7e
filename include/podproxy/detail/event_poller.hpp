// EventPoller: an epoll set of the proxy's own for relayed sockets, nested in an Asio io_context.
#pragma once

#include <asio/posix/stream_descriptor.hpp>

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>
#include <utility>
#include <vector>

namespace podproxy::detail {

/// What a watched socket reports to: `which` is the index the socket was watched with. A function pointer
/// rather than a virtual function: no vtable and no indirect call through one on the hot path.
class PollTarget {
 public:
  using Handler = void (*)(PollTarget& target, int which, std::uint32_t events) noexcept;

  explicit PollTarget(Handler handler) noexcept : handler_(handler) {}

  void on_events(int which, std::uint32_t events) noexcept { handler_(*this, which, events); }

 private:
  Handler handler_;
};

/// An epoll set whose sockets are registered once, edge-triggered for input, output and the peer's FIN
/// (EPOLLRDHUP), and never modified again: no EPOLL_CTL_MOD per wait, no per-wait allocation, nothing
/// allocated per socket but a slot. Asio's reactor would re-arm with EPOLL_CTL_MOD for every wait and
/// keep a descriptor_state and a queued operation per idle socket; the relay's hot path needs neither.
///
/// The set's own descriptor is one Asio stream_descriptor: when it turns readable, one handler takes up
/// to `batch` events per epoll_wait and calls each target inline. So everything that uses one poller runs
/// on its executor, one handler at a time (a strand, or an io_context run by one thread).
///
/// Events name a slot and its generation, never a pointer: a target detaches its slot before it is
/// destroyed, and an event still queued for it (the same batch, or a descriptor kept alive by a fork) is
/// recognised as stale and dropped.
///
/// Thread safety: every member but the constructor and destructor is called on the executor.
class EventPoller {
 public:
  static constexpr int batch = 64;
  /// epoll_wait calls per wake-up before other handlers get a turn (the rest is reported again at once).
  static constexpr int rounds = 4;

  explicit EventPoller(asio::any_io_executor executor)
      : executor_(std::move(executor)), descriptor_(executor_, open_epoll()) {}

  EventPoller(const EventPoller&) = delete;
  EventPoller& operator=(const EventPoller&) = delete;

  [[nodiscard]] const asio::any_io_executor& get_executor() const noexcept { return executor_; }

  /// Starts waiting for events.
  void start() {
    if (running_) return;
    running_ = true;
    arm();
  }

  /// Stops waiting (the io_context may then run out of work). Attached targets get no more events.
  void stop() noexcept {
    running_ = false;
    std::error_code ignored;
    descriptor_.cancel(ignored);
  }

  /// A slot for `target`. Throws std::bad_alloc when the slot table cannot grow.
  [[nodiscard]] std::uint32_t attach(PollTarget* target) {
    std::uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      free_.reserve(slots_.size() + 1);  // so that detach never allocates
      slots_.push_back({});
      slot = static_cast<std::uint32_t>(slots_.size() - 1);
    }
    slots_[slot].target = target;
    return slot;
  }

  /// Events for `slot` are dropped from now on, including any already fetched.
  void detach(std::uint32_t slot) noexcept {
    slots_[slot].target = nullptr;
    ++slots_[slot].generation;
    free_.push_back(slot);  // capacity reserved by attach
  }

  /// Registers `fd` for `slot` (edge-triggered in, out and peer-FIN); its events reach the target with
  /// `which` (0 or 1). Closing the descriptor unregisters it.
  [[nodiscard]] std::error_code watch(int fd, std::uint32_t slot, int which) noexcept {
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    event.data.u64 = (std::uint64_t{slots_[slot].generation} << 32) | (std::uint64_t{slot} << 1) |
                     static_cast<std::uint64_t>(which & 1);
    if (::epoll_ctl(descriptor_.native_handle(), EPOLL_CTL_ADD, fd, &event) != 0) {
      return {errno, std::system_category()};
    }
    return {};
  }

  /// Slots in use.
  [[nodiscard]] std::size_t attached() const noexcept { return slots_.size() - free_.size(); }

 private:
  struct Slot {
    PollTarget* target = nullptr;
    std::uint32_t generation = 0;
  };

  static int open_epoll() {
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
    return fd;
  }

  void arm() {
    // Asio re-arms the set's descriptor with EPOLL_CTL_MOD, which reports it again at once if events are
    // still queued in it: nothing is lost when a wake-up stops after `rounds`.
    descriptor_.async_wait(asio::posix::descriptor_base::wait_read, [this](std::error_code ec) {
      if (ec || !running_) return;
      dispatch();
      if (running_) arm();
    });
  }

  void dispatch() noexcept {
    epoll_event events[batch];
    for (int round = 0; round < rounds; ++round) {
      const int n = ::epoll_wait(descriptor_.native_handle(), events, batch, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      for (int i = 0; i < n; ++i) {
        const std::uint64_t key = events[i].data.u64;
        const auto slot = static_cast<std::uint32_t>((key & 0xffffffffu) >> 1);
        const auto generation = static_cast<std::uint32_t>(key >> 32);
        if (slot >= slots_.size()) continue;
        // A target may attach others (and so grow slots_) while it handles its events: copy, don't refer.
        const Slot s = slots_[slot];
        if (s.target == nullptr || s.generation != generation) continue;  // stale: its target is gone
        s.target->on_events(static_cast<int>(key & 1), events[i].events);
      }
      if (n < batch) return;
    }
  }

  asio::any_io_executor executor_;
  asio::posix::stream_descriptor descriptor_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  bool running_ = false;
};

}  // namespace podproxy::detail
