// The proxy's own epoll set: registered once, edge-triggered with the peer's FIN, stale events dropped.
#include "harness.hpp"

#include <podproxy/detail/event_poller.hpp>

#include <sys/epoll.h>
#include <sys/socket.h>

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
  Pair pair;
  asio::io_context io;
  detail::EventPoller poller(io.get_executor());
  Recorder target;
  const auto slot = poller.attach(&target);
  REQUIRE_FALSE(poller.watch(pair.server.native_handle(), slot, 1));
  poller.start();

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
