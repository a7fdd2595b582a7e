// The proxy's own epoll set: registered once, edge-triggered with the peer's FIN, stale events dropped.
#include "harness.hpp"

#include <podproxy/detail/event_poller.hpp>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <functional>
#include <stdexcept>
#include <vector>

using namespace podproxy;
using namespace podproxy::test;

namespace {

/// Records what it is told.
struct Recorder final : detail::PollTarget {
  struct Event {
    int which;
    std::uint32_t events;
  };
  std::vector<Event> seen;
  Recorder() noexcept : PollTarget(&Recorder::record) {}
  static void record(detail::PollTarget& target, int which, std::uint32_t events) noexcept {
    static_cast<Recorder&>(target).seen.push_back({which, events});
  }
  [[nodiscard]] bool saw(int which, std::uint32_t mask) const {
    for (const auto& e : seen) {
      if (e.which == which && (e.events & mask) == mask) return true;
    }
    return false;
  }
};

/// A connected loopback TCP pair: `client` as an Asio socket the test drives, `server` as a raw
/// non-blocking descriptor the poller watches.
struct Pair {
  asio::io_context io;
  tcp::acceptor listener{io, {asio::ip::address_v4::loopback(), 0}};
  tcp::socket client{io};
  NativeSocket server;
  Pair() {
    client.connect(listener.local_endpoint());
    tcp::socket accepted = listener.accept();
    accepted.non_blocking(true);
    server = NativeSocket(accepted.release());
  }
};

/// A Pair whose server side a started poller watches (as `which` 1) for a Recorder.
struct Watched {
  Pair pair;
  asio::io_context io;
  detail::EventPoller poller{io.get_executor()};
  Recorder target;
  std::uint32_t slot = poller.attach(&target);
  Watched() {
    REQUIRE_FALSE(poller.watch(pair.server.native_handle(), slot, 1));
    poller.start();
  }
};

/// Runs `io` until `done()` or two seconds.
template <class Done>
bool run_until(asio::io_context& io, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(20ms);
  }
  return done();
}

}  // namespace

TEST_CASE("event poller: one registration reports every new input edge, output and the peer's FIN",
          "[poller]") {
  Watched watched;
  auto& [pair, io, poller, target, slot] = watched;

  // Writable at once; nothing to read yet.
  REQUIRE(run_until(io, [&] { return target.saw(1, EPOLLOUT); }));
  CHECK_FALSE(target.saw(1, EPOLLIN));

  // Bytes arrive: one input edge. The test reads them without touching the registration...
  target.seen.clear();
  asio::write(pair.client, asio::buffer("ping", 4));
  REQUIRE(run_until(io, [&] { return target.saw(1, EPOLLIN); }));
  char buffer[16];
  CHECK(::recv(pair.server.native_handle(), buffer, sizeof buffer, 0) == 4);

  // ...and the next bytes raise the next edge (no EPOLL_CTL_MOD in between).
  target.seen.clear();
  asio::write(pair.client, asio::buffer("pong", 4));
  REQUIRE(run_until(io, [&] { return target.saw(1, EPOLLIN); }));
  CHECK_FALSE(target.saw(1, EPOLLRDHUP));

  // The peer's FIN comes as EPOLLRDHUP, with the unread bytes still queued in front of it.
  target.seen.clear();
  pair.client.shutdown(tcp::socket::shutdown_send);
  REQUIRE(run_until(io, [&] { return target.saw(1, EPOLLIN | EPOLLRDHUP); }));
  CHECK(::recv(pair.server.native_handle(), buffer, sizeof buffer, 0) == 4);
  CHECK(::recv(pair.server.native_handle(), buffer, sizeof buffer, 0) == 0);
  CHECK(poller.attached() == 1);
  poller.detach(slot);
  CHECK(poller.attached() == 0);
}

TEST_CASE("event poller: events for a detached slot are dropped, even once the slot is reused", "[poller]") {
  Pair pair;
  asio::io_context io;
  detail::EventPoller poller(io.get_executor());
  Recorder gone;
  Recorder next;
  const auto slot = poller.attach(&gone);
  REQUIRE_FALSE(poller.watch(pair.server.native_handle(), slot, 0));
  poller.detach(slot);  // the descriptor stays open and registered: a fork could keep it so

  const auto reused = poller.attach(&next);
  CHECK(reused == slot);  // same slot, new generation
  poller.start();
  asio::write(pair.client, asio::buffer("late", 4));

  // A socket watched under the new generation shows the poller is running and delivering.
  Pair other;
  REQUIRE_FALSE(poller.watch(other.server.native_handle(), reused, 1));
  asio::write(other.client, asio::buffer("x", 1));
  REQUIRE(run_until(io, [&] { return next.saw(1, EPOLLIN); }));
  CHECK(gone.seen.empty());
  for (const auto& e : next.seen) CHECK(e.which == 1);  // nothing from the old registration
}

TEST_CASE("event poller: stop() leaves the io_context with no work, so run() returns", "[poller]") {
  asio::io_context io;
  detail::EventPoller poller(io.get_executor());
  poller.start();
  asio::post(io, [&] { poller.stop(); });
  const auto started = std::chrono::steady_clock::now();
  io.run_for(5s);
  CHECK(std::chrono::steady_clock::now() - started < 4s);
  CHECK(io.stopped());
}

namespace {

/// Calls `on` with each event and the poller's wake-up count at that moment.
struct Hook final : detail::PollTarget {
  std::function<void(int which, std::uint32_t events)> on;
  Hook() noexcept : PollTarget(&Hook::call) {}
  static void call(detail::PollTarget& target, int which, std::uint32_t events) noexcept {
    static_cast<Hook&>(target).on(which, events);
  }
};

/// The wake-up in which a first event (bytes on `pair`) was handled, and the one in which the expiry of a
/// timer armed by that event's handler was, with `pause` and the timer `after` the first event.
struct Wakeups {
  std::uint64_t first = 0;
  std::uint64_t second = 0;
  std::uint64_t pauses = 0;
  std::uint64_t total = 0;
};

Wakeups timer_after_event(std::chrono::microseconds pause, std::chrono::microseconds after, bool bulk = false) {
  Pair pair;
  asio::io_context io;
  detail::EventPoller poller(io.get_executor(), pause);
  const NativeSocket timer(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  REQUIRE(timer.native_handle() >= 0);
  Wakeups seen;
  Hook bytes;
  Hook expiry;
  bool armed = false;
  bytes.on = [&](int, std::uint32_t events) {
    if (!(events & EPOLLIN) || armed) return;
    armed = true;
    seen.first = poller.wakeups();
    if (bulk) poller.no_pause();
    itimerspec spec{};
    spec.it_value.tv_sec = static_cast<time_t>(after.count() / 1000000);
    spec.it_value.tv_nsec = static_cast<long>(after.count() % 1000000) * 1000L;
    (void)::timerfd_settime(timer.native_handle(), 0, &spec, nullptr);
  };
  expiry.on = [&](int, std::uint32_t events) {
    if ((events & EPOLLIN) && seen.second == 0) seen.second = poller.wakeups();
  };
  REQUIRE_FALSE(poller.watch(pair.server.native_handle(), poller.attach(&bytes), 0));
  REQUIRE_FALSE(poller.watch(timer.native_handle(), poller.attach(&expiry), 0));
  poller.start();
  asio::write(pair.client, asio::buffer("ping", 4));
  REQUIRE(run_until(io, [&] { return seen.second != 0; }));
  seen.pauses = poller.pauses();
  seen.total = poller.wakeups();
  return seen;
}

}  // namespace

TEST_CASE("event poller: after a wake-up that handled events it pauses once and takes what came meanwhile",
          "[poller]") {
  // The timer expires 200 us after the first event's handler armed it, inside the 1 ms pause that follows
  // that handler: the same wake-up handles it, after exactly one pause per wake-up at most.
  const Wakeups paused = timer_after_event(1000us, 200us);
  CHECK(paused.second == paused.first);
  CHECK(paused.pauses >= 1);
  CHECK(paused.pauses <= paused.total);

  // Without the pause the poller goes back to the io_context as soon as its set is empty, and the expiry
  // (50 ms later) needs a wake-up of its own.
  const Wakeups blocking = timer_after_event(0us, 50ms);
  CHECK(blocking.second > blocking.first);
  CHECK(blocking.pauses == 0);

  // A target that moved bulk asks that wake-up not to pause: the expiry (5 ms later, well past the
  // 1 ms pause) comes in a wake-up of its own.
  const Wakeups bulk = timer_after_event(1000us, 5ms, /*bulk=*/true);
  CHECK(bulk.second > bulk.first);
  CHECK(bulk.pauses < bulk.total);
}

namespace {

/// The poller's pause count when a target's first input event is handled, and when a continuation that
/// handler queued runs: through the poller's `post`, or past it (straight to the io_context).
struct Continuation {
  std::uint64_t pauses_at_event = 0;
  std::uint64_t pauses_at_continuation = 0;
};

Continuation continuation_after_event(Pair& pair, asio::io_context& io, detail::EventPoller& poller, Hook& target,
                                      bool through_poller) {
  Continuation seen;
  bool ran = false;
  bool handled = false;
  target.on = [&](int, std::uint32_t events) {
    if (!(events & EPOLLIN) || handled) return;
    handled = true;
    char buffer[16];
    while (::recv(pair.server.native_handle(), buffer, sizeof buffer, 0) > 0) {
    }
    seen.pauses_at_event = poller.pauses();
    const auto continuation = [&] {
      seen.pauses_at_continuation = poller.pauses();
      ran = true;
    };
    if (through_poller) {
      poller.post(continuation);
    } else {
      asio::post(io, continuation);
    }
  };
  asio::write(pair.client, asio::buffer("ping", 4));
  REQUIRE(run_until(io, [&] { return ran; }));
  return seen;
}

}  // namespace

TEST_CASE("event poller: no wake-up pauses while a continuation posted through it is queued", "[poller]") {
  Pair pair;
  asio::io_context io;
  detail::EventPoller poller(io.get_executor(), 1000us);
  Hook target;
  const auto slot = poller.attach(&target);
  REQUIRE_FALSE(poller.watch(pair.server.native_handle(), slot, 0));
  poller.start();

  // Through the poller: the wake-up that queued it returns to the io_context without pausing.
  const Continuation posted = continuation_after_event(pair, io, poller, target, /*through_poller=*/true);
  CHECK(posted.pauses_at_continuation == posted.pauses_at_event);
  // Once it ran, a wake-up pauses again; and a continuation the poller does not know of waits for it.
  const Continuation unknown = continuation_after_event(pair, io, poller, target, /*through_poller=*/false);
  CHECK(unknown.pauses_at_continuation == unknown.pauses_at_event + 1);
  poller.detach(slot);
}

TEST_CASE("event poller: a socket registered while a batch is handled reports in the same wake-up",
          "[poller]") {
  Pair first;
  Pair second;
  asio::io_context io;
  detail::EventPoller poller(io.get_executor());  // no pause: only the look after a registration
  std::uint64_t registered_in = 0;
  std::uint64_t reported_in = 0;
  Hook late;
  late.on = [&](int, std::uint32_t events) {
    if ((events & EPOLLIN) && reported_in == 0) reported_in = poller.wakeups();
  };
  const auto late_slot = poller.attach(&late);
  Hook trigger;
  trigger.on = [&](int, std::uint32_t events) {
    if (!(events & EPOLLIN) || registered_in != 0) return;
    registered_in = poller.wakeups();
    // Bytes are already queued on the second pair: its registration reports them at once.
    if (poller.watch(second.server.native_handle(), late_slot, 1)) registered_in = ~std::uint64_t{0};
  };
  REQUIRE_FALSE(poller.watch(first.server.native_handle(), poller.attach(&trigger), 0));
  asio::write(second.client, asio::buffer("queued", 6));
  poller.start();
  asio::write(first.client, asio::buffer("go", 2));
  REQUIRE(run_until(io, [&] { return reported_in != 0; }));
  REQUIRE(registered_in != ~std::uint64_t{0});
  CHECK(reported_in == registered_in);
}

TEST_CASE("event poller: a pause outside 0 to 1 ms is refused", "[poller]") {
  asio::io_context io;
  CHECK_THROWS_AS(detail::EventPoller(io.get_executor(), 1001us), std::invalid_argument);
  CHECK_THROWS_AS(detail::EventPoller(io.get_executor(), -1us), std::invalid_argument);
  CHECK_NOTHROW(detail::EventPoller(io.get_executor(), 1000us));
}

TEST_CASE("event poller: a socket watched again without input raises no event for arriving bytes, and no "
          "input event for a FIN, and with input again it reports what queued at once",
          "[poller]") {
  // How a proxy direction that waits for a full sink keeps its source's arrivals from waking the thread.
  Watched watched;
  auto& [pair, io, poller, target, slot] = watched;
  const int fd = pair.server.native_handle();
  REQUIRE(run_until(io, [&] { return target.saw(1, EPOLLOUT); }));
  // Nothing to wait for but time: an event that is raised is handled within microseconds.
  const auto idle = [&io] {
    const auto until = std::chrono::steady_clock::now() + 200ms;
    while (std::chrono::steady_clock::now() < until) io.run_one_for(20ms);
  };

  // Neither input nor output: the socket is writable, and bytes arrive, and nothing is reported.
  target.seen.clear();
  auto wakeups = poller.wakeups();
  REQUIRE_FALSE(poller.rewatch(fd, slot, 1, /*input=*/false, /*output=*/false));
  asio::write(pair.client, asio::buffer("pi", 2));
  idle();
  CHECK(target.seen.empty());
  CHECK(poller.wakeups() == wakeups);

  // Output only: the change itself reports the socket's state (writable) once, and arriving bytes
  // raise nothing.
  REQUIRE_FALSE(poller.rewatch(fd, slot, 1, /*input=*/false, /*output=*/true));
  REQUIRE(run_until(io, [&] { return target.saw(1, EPOLLOUT); }));
  CHECK_FALSE(target.saw(1, EPOLLIN));
  target.seen.clear();
  wakeups = poller.wakeups();
  asio::write(pair.client, asio::buffer("ng", 2));
  idle();
  CHECK(target.seen.empty());
  CHECK(poller.wakeups() == wakeups);
  // A FIN is a state change, which wakes every waiter whatever it watches (no event mask), so it may
  // report the socket's output; never its input.
  pair.client.shutdown(tcp::socket::shutdown_send);
  idle();
  CHECK_FALSE(target.saw(1, EPOLLIN));
  CHECK_FALSE(target.saw(1, EPOLLRDHUP));

  REQUIRE_FALSE(poller.rewatch(fd, slot, 1, /*input=*/true, /*output=*/true));
  REQUIRE(run_until(io, [&] { return target.saw(1, EPOLLIN | EPOLLRDHUP); }));
  char buffer[16];
  CHECK(::recv(fd, buffer, sizeof buffer, 0) == 4);
  CHECK(::recv(fd, buffer, sizeof buffer, 0) == 0);
  poller.detach(slot);
}
