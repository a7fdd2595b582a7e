// WorkerGroup: one io_context per thread, SO_REUSEPORT listeners, shared counters, start/stop/drain.
#include "harness.hpp"

#include <podproxy/worker_group.hpp>

#include <future>
#include <mutex>
#include <set>

using namespace podproxy;
using namespace podproxy::test;

namespace {

/// Answers `pong\n` once the client has sent everything.
Upstream pong_server() {
  return Upstream({asio::ip::address_v4::loopback(), 0}, [](tcp::socket& s) {
    read_to_end(s);
    asio::write(s, asio::buffer(std::string_view("pong\n")));
    s.shutdown(tcp::socket::shutdown_send);
  });
}

}  // namespace

TEST_CASE("worker group: every worker serves each listener's port, the proxies of a listener share its "
          "counters, and stop drains them all", "[worker_group]") {
  auto upstream = pong_server();
  constexpr unsigned threads = 3;
  WorkerGroup group(threads);
  // Which threads ran a connection: records arrive on the thread of the worker that accepted it.
  std::mutex mutex;
  std::set<std::thread::id> serving;
  const auto note_thread = [&](const ConnectionRecord&) {
    std::lock_guard lock(mutex);
    serving.insert(std::this_thread::get_id());
  };
  const auto pipes = std::make_shared<PipePool>();
  const auto first = group.add<LocalAddress>({}, FixedPolicy{{.endpoint = upstream.endpoint()}}, SpliceRelay(pipes),
                                             {.on_complete = note_thread});
  const auto second = group.add<LocalAddress>({}, FixedPolicy{{.endpoint = upstream.endpoint()}}, BufferedRelay{});
  REQUIRE(first.local_endpoint.port() != 0);
  REQUIRE(first.local_endpoint.port() != second.local_endpoint.port());
  CHECK(group.size() == threads);

  group.start();
  std::thread runner([&] { group.run(); });
  // SO_REUSEPORT spreads connections by a hash of their addresses: enough of them reach every worker.
  constexpr int connections = 90;
  int answered = 0;
  for (int i = 0; i < connections; ++i) answered += ping(first.local_endpoint) == "pong\n";
  answered += ping(second.local_endpoint) == "pong\n";
  CHECK(answered == connections + 1);
  CHECK(eventually([&] { return first.stats->downstream_cx_destroy == connections; }));
  CHECK(first.stats->downstream_cx_total == connections);
  CHECK(second.stats->downstream_cx_total == 1);
  {
    std::lock_guard lock(mutex);
    CHECK(serving.size() == threads);
  }

  // A connection still open when stop() is called is let finish (on whichever worker took it, while the
  // others have nothing left to do); then nothing listens any more.
  asio::io_context io;
  auto open = connect_client(io, first.local_endpoint);
  REQUIRE(eventually([&] { return group.active() == 1; }));
  std::promise<void> stopped;
  group.stop(10s, [&] { stopped.set_value(); });
  group.stop(10s, [] { FAIL("a second stop() is ignored"); });
  asio::write(open, asio::buffer(std::string_view("ping\n")));
  open.shutdown(tcp::socket::shutdown_send);
  CHECK(read_to_end(open).first == "pong\n");
  CHECK(stopped.get_future().wait_for(10s) == std::future_status::ready);
  // Every worker's acceptor of both listeners is closed.
  for (const auto& listener : {first, second}) {
    asio::io_context probe_io;
    tcp::socket probe(probe_io);
    std::error_code ec;
    probe.connect(listener.local_endpoint, ec);
    CHECK(ec == asio::error::connection_refused);
  }
  // The workers whose proxies had no connection ran out of work long ago; run() waited for the others.
  group.halt();
  runner.join();
  CHECK(group.active() == 0);
  CHECK(pipes->stats().lent == 0);
}

TEST_CASE("worker group: a port in use is refused when the listener is added, naming it", "[worker_group]") {
  asio::io_context io;
  tcp::acceptor taken(io, {asio::ip::address_v4::loopback(), 0});  // no SO_REUSEPORT: nobody may join it
  WorkerGroup group(2);
  CHECK_THROWS_AS(group.add({.endpoint = taken.local_endpoint()}, LoopbackPolicy{}, BufferedRelay{}),
                  std::system_error);
  CHECK_THROWS_AS(WorkerGroup(0), std::invalid_argument);
}
