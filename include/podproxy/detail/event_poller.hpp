// EventPoller: an epoll set of the proxy's own for relayed sockets, nested in an Asio io_context.
#pragma once

#include <asio/post.hpp>
#include <asio/posix/stream_descriptor.hpp>

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <stdexcept>
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
/// (EPOLLRDHUP), and not modified per wait: no EPOLL_CTL_MOD per wait, no per-wait allocation, nothing
/// allocated per socket but a slot. The one change (`rewatch`) is for a source whose bytes nobody reads
/// until a full sink drains: each arrival would otherwise wake the thread for nothing. Asio's reactor
/// would re-arm with EPOLL_CTL_MOD for every wait and keep a descriptor_state and a queued operation per
/// idle socket; the relay's hot path needs neither.
///
/// The set's own descriptor is one Asio stream_descriptor: when it turns readable, one handler takes up
/// to `batch` events per epoll_wait and calls each target inline. So everything that uses one poller runs
/// on its executor, one handler at a time (a strand, or an io_context run by one thread).
///
/// After a wake-up that handled events and found the set empty, the poller can pause (a timerfd, so no
/// timer slack stretches it) and look once more before it lets the io_context block. While the thread
/// is not waiting in epoll, a peer that sends to one of its sockets only queues an event; it does not
/// have to wake the thread (try_to_wake_up, an IPI to an idle CPU), which the sending process pays for
/// each time. One pause per wake-up at most, none when a wake-up found nothing, so an idle proxy still
/// just blocks, and none while a target's continuation is queued (`post`). A target that moved a bulk
/// transfer calls `no_pause()`: the reader it feeds would run dry during the pause. The measurements
/// behind this are in docs/design.md ("Benchmarks: experiments and decisions").
///
/// Events name a slot and its generation, never a pointer: a target detaches its slot before it is
/// destroyed, and an event still queued for it (the same batch, or a descriptor kept alive by a fork) is
/// recognised as stale and dropped.
///
/// Thread safety: every member but the constructor and destructor is called on the executor.
class EventPoller {
 public:
  static constexpr int batch = 64;
  /// Batches handled per wake-up before other handlers get a turn (the rest is reported again at once).
  static constexpr int rounds = 4;

  /// Longest `pause` accepted.
  static constexpr std::chrono::microseconds max_pause{1000};

  /// `pause`: see above; zero returns to the io_context as soon as the set is empty. Throws
  /// std::invalid_argument when it is negative or above `max_pause`, std::system_error when the
  /// descriptors cannot be made.
  explicit EventPoller(asio::any_io_executor executor, std::chrono::microseconds pause = {})
      : executor_(std::move(executor)),
        descriptor_(executor_, open_epoll()),
        pause_(checked(pause)),
        timer_(pause_ > std::chrono::microseconds::zero() ? open_timer() : -1) {}

  ~EventPoller() {
    if (timer_ >= 0) ::close(timer_);
  }

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
    event.data.u64 = key(slot, which);
    if (::epoll_ctl(descriptor_.native_handle(), EPOLL_CTL_ADD, fd, &event) != 0) {
      return {errno, std::system_category()};
    }
    watched_ = true;
    return {};
  }

  /// Changes what `fd` (watched for `slot` and `which`) reports: its input (with the peer's FIN) if
  /// `input`, its output if `output`, and always its errors and hang-ups (epoll reports those whatever
  /// the mask). Both true is what `watch` asked for. EPOLL_CTL_MOD looks at the socket at once, so what
  /// is already the case of what it asks for is reported.
  [[nodiscard]] std::error_code rewatch(int fd, std::uint32_t slot, int which, bool input, bool output) noexcept {
    epoll_event event{};
    event.events = EPOLLET | (input ? EPOLLIN | EPOLLRDHUP : 0u) | (output ? EPOLLOUT : 0u);
    event.data.u64 = key(slot, which);
    if (::epoll_ctl(descriptor_.native_handle(), EPOLL_CTL_MOD, fd, &event) != 0) {
      return {errno, std::system_category()};
    }
    return {};
  }

  /// Slots in use.
  [[nodiscard]] std::size_t attached() const noexcept { return slots_.size() - free_.size(); }

  /// This wake-up does not pause (from a target's handler: it moved bulk, and its sink's reader waits).
  void no_pause() noexcept { no_pause_ = true; }

  /// Runs `f` on the executor after what is queued there now: a target's continuation (it moved its
  /// budget and lets others have a turn). No wake-up pauses while one is queued: the thread has work, so
  /// there is nothing to gain, and the continuation (a bulk transfer, typically) would wait. A
  /// continuation destroyed without running (the io_context torn down) leaves the poller not pausing.
  template <class F>
  void post(F&& f) {
    asio::post(executor_, [this, f = std::forward<F>(f)]() mutable {
      --queued_;
      f();
    });
    ++queued_;  // after the post: if it throws, nothing is queued
  }

  /// Times the io_context woke the poller, and times it paused (on the executor, like everything else).
  [[nodiscard]] std::uint64_t wakeups() const noexcept { return wakeups_; }
  [[nodiscard]] std::uint64_t pauses() const noexcept { return pauses_; }

 private:
  struct Slot {
    PollTarget* target = nullptr;
    std::uint32_t generation = 0;
  };

  [[nodiscard]] std::uint64_t key(std::uint32_t slot, int which) const noexcept {
    return (std::uint64_t{slots_[slot].generation} << 32) | (std::uint64_t{slot} << 1) |
           static_cast<std::uint64_t>(which & 1);
  }

  static int open_epoll() {
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
    return fd;
  }

  static int open_timer() {
    const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::system_category(), "timerfd_create");
    return fd;
  }

  static std::chrono::microseconds checked(std::chrono::microseconds pause) {
    if (pause < std::chrono::microseconds::zero() || pause > max_pause) {
      throw std::invalid_argument("event poller pause must be between 0 and 1000 microseconds");
    }
    return pause;
  }

  /// Sleeps for the pause: a blocking read of the armed timerfd (a signal may end it early). False when
  /// there is no pause or the timer cannot be armed.
  bool pause() noexcept {
    if (timer_ < 0) return false;
    itimerspec spec{};
    spec.it_value.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(pause_).count();
    if (::timerfd_settime(timer_, 0, &spec, nullptr) != 0) return false;
    std::uint64_t expirations = 0;
    (void)!::read(timer_, &expirations, sizeof expirations);
    ++pauses_;
    return true;
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
    ++wakeups_;
    no_pause_ = false;
    epoll_event events[batch];
    bool paused = false;
    int left = rounds;
    while (left > 0) {
      watched_ = false;
      const int n = ::epoll_wait(descriptor_.native_handle(), events, batch, 0);
      if (n <= 0) {
        if (n < 0 && errno == EINTR && --left > 0) continue;
        // Empty (or failing): after events were handled, pause once and look again.
        if (left == rounds || paused || no_pause_ || queued_ > 0 || !pause()) return;
        paused = true;
        continue;
      }
      --left;
      deliver(events, n);
      // A full batch may have more behind it, and a socket just registered reports its state at once:
      // look again now. Otherwise once more, then (unless paused already) after the pause.
      if (n == batch || watched_) continue;
      if (paused || no_pause_ || queued_ > 0 || timer_ < 0) return;
    }
  }

  void deliver(const epoll_event* events, int n) noexcept {
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
  }

  asio::any_io_executor executor_;
  asio::posix::stream_descriptor descriptor_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::chrono::microseconds pause_;
  int timer_;
  std::uint64_t wakeups_ = 0;
  std::uint64_t pauses_ = 0;
  std::uint64_t queued_ = 0;  // continuations posted and not run yet
  bool running_ = false;
  bool watched_ = false;   // a socket was registered since the last epoll_wait
  bool no_pause_ = false;  // a target asked this wake-up not to pause
};

}  // namespace podproxy::detail
