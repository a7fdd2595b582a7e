// The acceptor: descriptor exhaustion, batches, IPv6 and dual stack, SO_REUSEPORT, the accept loop.
#include "harness.hpp"

#include <fcntl.h>
#include <sys/resource.h>

using namespace podproxy;
using namespace podproxy::test;

TEST_CASE("acceptor: running out of descriptors backs off, keeps existing connections, and recovers",
          "[acceptor][proxy]") {
  PongServer server({asio::ip::make_address("127.0.0.1"), 0});
  RunningProxy<FixedPolicy, BufferedRelay> proxy(FixedPolicy{{.endpoint = server.server.endpoint()}},
                                                 BufferedRelay{}, {},
                                                 {.overload_backoff = std::chrono::milliseconds(50)});
  asio::io_context io;
  // An existing connection, opened before the exhaustion.
  auto existing = connect_client(io, proxy.endpoint());
  REQUIRE(eventually([&] { return proxy.proxy().active() == 1; }));
  tcp::socket waiting(io);
  waiting.open(tcp::v4());

  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  std::vector<int> hogs;
  {
    rlimit low = saved;
    low.rlim_cur = 512;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    for (int fd; (fd = ::dup(0)) >= 0;) hogs.push_back(fd);
  }
  // The kernel completes this handshake; the proxy's accept fails with EMFILE and backs off.
  std::error_code connect_error;
  waiting.connect(proxy.endpoint(), connect_error);
  set_timeouts(waiting, 20s);
  // No Catch assertion while descriptors are exhausted: UBSan's checks inside them need descriptors too.
  const bool overloaded = eventually([&] { return proxy.proxy().acceptor().overloads() >= 2; });
  std::this_thread::sleep_for(500ms);
  const auto overloads = proxy.proxy().acceptor().overloads();
  const auto hogged = hogs.size();

  for (int fd : hogs) ::close(fd);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  INFO("descriptors held by the test: " << hogged);
  REQUIRE(overloaded);
  CHECK(overloads <= 20);  // backs off on a timer (~50 ms), never spins
  REQUIRE_FALSE(connect_error);
  // Recovery: the waiting connection is served, and the existing one was never disturbed.
  asio::write(waiting, asio::buffer(std::string_view("ping\n")));
  waiting.shutdown(tcp::socket::shutdown_send);
  CHECK(read_to_end(waiting).first == "pong\n");
  asio::write(existing, asio::buffer(std::string_view("ping\n")));
  existing.shutdown(tcp::socket::shutdown_send);
  CHECK(read_to_end(existing).first == "pong\n");
  CHECK(proxy.stats().downstream_cx_total == 2);
  // Every back-off is counted where /stats reads it.
  CHECK(proxy.stats().downstream_cx_overflow == proxy.proxy().acceptor().overloads());
}

TEST_CASE("acceptor: connections queued beyond one batch are all taken, with no later client to raise an edge",
          "[acceptor][proxy]") {
  // The listener is edge-triggered: after a batch, nothing new arrives to report the connections still queued.
  // The proxy must look again by itself. A batch of one and 24 clients queued before the proxy first looks.
  PongServer server({asio::ip::make_address("127.0.0.1"), 0});
  asio::io_context proxy_io;
  Proxy<Acceptor<RedirectedOrLocal>, FixedPolicy, SpliceRelay> proxy(
      Acceptor<RedirectedOrLocal>(proxy_io.get_executor(), {.accept_batch = 1}),
      FixedPolicy{{.endpoint = server.server.endpoint()}}, SpliceRelay{});
  proxy.start();
  constexpr int clients = 24;
  asio::io_context io;
  std::vector<tcp::socket> queued;
  for (int i = 0; i < clients; ++i) {
    queued.push_back(connect_client(io, proxy.local_endpoint()));  // the kernel completes the handshake
    asio::write(queued.back(), asio::buffer(std::string_view("ping\n")));
    queued.back().shutdown(tcp::socket::shutdown_send);
  }
  std::thread runner([&] { proxy_io.run(); });
  const bool all_taken = eventually([&] { return proxy.stats().downstream_cx_total == clients; });
  CHECK(all_taken);
  int answered = 0;
  if (all_taken) {  // else a read would wait for its timeout
    for (auto& client : queued) answered += read_to_end(client).first == "pong\n" ? 1 : 0;
  }
  CHECK(answered == clients);
  std::promise<void> done;
  proxy.stop(0s, [&done] { done.set_value(); });
  const bool stopped = done.get_future().wait_for(20s) == std::future_status::ready;
  if (!stopped) proxy_io.stop();
  runner.join();
  CHECK(stopped);
}

TEST_CASE("acceptor: listens on IPv6, and reports a listen failure naming the endpoint", "[acceptor]") {
  PongServer server({asio::ip::make_address("::1"), 0});
  RunningProxy<FixedPolicy, SpliceRelay> proxy(FixedPolicy{{.endpoint = server.server.endpoint()}}, SpliceRelay{},
                                               {}, {.endpoint = {asio::ip::make_address("::1"), 0}});
  CHECK(proxy.endpoint().address() == asio::ip::make_address("::1"));
  CHECK(ping(proxy.endpoint()) == "pong\n");

  asio::io_context io;
  CHECK_THROWS_WITH(Acceptor<>(io.get_executor(), {.endpoint = proxy.endpoint()}),
                    Catch::Contains("[::1]:" + std::to_string(proxy.endpoint().port())) &&
                        Catch::Contains("bind"));
}

TEST_CASE("acceptor: a dual-stack listener describes an IPv4 client with IPv4 addresses, an IPv6 one with IPv6",
          "[acceptor]") {
  asio::io_context io;
  // RedirectedOrLocal: without a NAT entry, the IPv4 getsockopt must fail over to the (unmapped) local address.
  Acceptor<> acceptor(io.get_executor(), {.endpoint = {asio::ip::make_address("::"), 0}, .strand_per_connection = false});
  const auto port = acceptor.local_endpoint().port();
  tcp::socket v4(io), v6(io);
  v4.connect({asio::ip::make_address("127.0.0.1"), port});
  v6.connect({asio::ip::make_address("::1"), port});
  std::vector<AcceptedConnection> accepted;
  for (int i = 0; i < 100 && accepted.size() < 2; ++i) {
    (void)acceptor.accept_some([&](AcceptedConnection&& c) { accepted.push_back(std::move(c)); });
    if (accepted.size() < 2) std::this_thread::sleep_for(10ms);
  }
  REQUIRE(accepted.size() == 2);
  for (const auto& c : accepted) {
    const auto& d = c.downstream;
    CAPTURE(d.peer, d.local, d.original_destination);
    const bool ipv4 = d.peer.address().is_v4();
    CHECK(d.peer == (ipv4 ? v4.local_endpoint() : v6.local_endpoint()));
    const auto loopback = ipv4 ? asio::ip::make_address("127.0.0.1") : asio::ip::make_address("::1");
    CHECK(d.local == tcp::endpoint(loopback, port));
    CHECK(d.original_destination == tcp::endpoint(loopback, port));
  }
  CHECK(accepted[0].downstream.peer.address().is_v4() != accepted[1].downstream.peer.address().is_v4());
}

TEST_CASE("acceptor: SO_REUSEPORT lets one acceptor per thread share a port", "[acceptor]") {
  asio::io_context io;
  Acceptor<> first(io.get_executor(), {.reuse_port = true});
  Acceptor<> second(io.get_executor(), {.endpoint = first.local_endpoint(), .reuse_port = true});
  CHECK(second.local_endpoint() == first.local_endpoint());
}

TEST_CASE("acceptor: run() hands each connection over non-blocking with its addresses, and ends on close()",
          "[acceptor]") {
  asio::io_context io;
  Acceptor<LocalAddress> acceptor(io.get_executor(), {.strand_per_connection = false});
  std::vector<AcceptedConnection> accepted;
  bool ended = false;
  asio::co_spawn(acceptor.get_executor(),
                 acceptor.run([&](AcceptedConnection&& c) {
                   accepted.push_back(std::move(c));
                   if (accepted.size() == 3) acceptor.close();
                 }),
                 [&](std::exception_ptr) { ended = true; });
  std::vector<tcp::socket> clients;
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back(io);
    clients.back().connect(acceptor.local_endpoint());
  }
  io.run_for(5s);
  REQUIRE(ended);
  REQUIRE(accepted.size() == 3);
  for (std::size_t i = 0; i < accepted.size(); ++i) {
    const int fd = accepted[i].socket.native_handle();
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    CHECK(accepted[i].downstream.local == acceptor.local_endpoint());
    CHECK(accepted[i].downstream.original_destination == acceptor.local_endpoint());
    bool matched = false;
    for (const auto& client : clients) matched = matched || client.local_endpoint() == accepted[i].downstream.peer;
    CHECK(matched);
  }
}
