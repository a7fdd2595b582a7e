// Faults in the middle of transfers: upstreams that reset, stop reading or die, clients that vanish.
// Each test checks what the affected client sees, that every other connection carries on, and that the
// proxy keeps no descriptor, pipe or memory for what went wrong.
#include "harness.hpp"
#include "sidecar_process.hpp"

#include <malloc.h>

#include <atomic>
#include <latch>
#include <limits>
#include <type_traits>

using namespace podproxy;
using namespace podproxy::test;

namespace {

/// Pipes the relay's pool has lent out now (0 for relays without a pool).
template <class Relay>
std::size_t pipes_lent(const Relay& relay) {
  if constexpr (std::is_same_v<Relay, SpliceRelay>) {
    return relay.pool()->stats().lent;
  } else {
    return 0;
  }
}

/// Echoes until EOF, then half-closes.
void echo_then_half_close(tcp::socket& s) {
  std::vector<char> block(64 * 1024);
  for (;;) {
    std::error_code ec;
    const auto n = read_some_within(s, asio::buffer(block), ec);
    if (ec == asio::error::eof) break;
    if (ec) throw std::system_error(ec, "echo");
    asio::write(s, asio::buffer(block.data(), n));
  }
  s.shutdown(tcp::socket::shutdown_send);
}

}  // namespace

TEMPLATE_TEST_CASE("faults: an upstream that resets mid-transfer resets its client while every other connection "
                   "carries on",
                   "[faults]", SpliceRelay, BufferedRelay) {
  constexpr int others = 16;
  constexpr std::uint64_t half = 1 << 20;
  std::latch reset_seen(1);
  // The first byte says what the upstream does: 'R' resets after 256 KiB, 'E' echoes.
  Upstream upstream({asio::ip::address_v4::loopback(), 0}, [&](tcp::socket& s) {
    char command = 0;
    read_within(s, asio::buffer(&command, 1));
    if (command == 'R') {
      std::vector<char> sink(256 * 1024);
      read_within(s, asio::buffer(sink));
      abort_connection(s);
      return;
    }
    echo_then_half_close(s);
  });
  Records records;
  RunningProxy<FixedPolicy, TestType> proxy(to(upstream.endpoint()), TestType{}, {.on_complete = records.callback()},
                                            {}, nullptr, 2);

  std::atomic<int> verified{0};
  std::vector<std::thread> clients;
  std::latch halfway(others);
  for (int id = 0; id < others; ++id) {
    clients.emplace_back([&, id] {
      try {
        asio::io_context io;
        auto c = connect_client(io, proxy.endpoint());
        asio::write(c, asio::buffer("E", 1));
        Checksum got;
        std::thread reader([&] { got = receive_all(c); });
        // Half before the reset, half after it: these connections are in flight when it happens.
        std::vector<std::uint8_t> block(half);
        for (std::uint64_t i = 0; i < half; ++i) block[i] = pattern_byte(id, i);
        asio::write(c, asio::buffer(block));
        halfway.count_down();
        reset_seen.wait();
        for (std::uint64_t i = 0; i < half; ++i) block[i] = pattern_byte(id, half + i);
        asio::write(c, asio::buffer(block));
        c.shutdown(tcp::socket::shutdown_send);
        reader.join();
        if (got == expected_checksum(id, 2 * half)) ++verified;
      } catch (const std::exception& e) {
        UNSCOPED_INFO("client " << id << ": " << e.what());
      }
    });
  }
  halfway.wait();
  std::error_code seen;
  {
    asio::io_context io;
    auto victim = connect_client(io, proxy.endpoint());
    // Exactly what the upstream reads before it resets, then only reads: the kernel reports a RST once, to
    // whichever call comes first, so a writer still writing could take it and leave the reader an EOF.
    asio::write(victim, asio::buffer("R", 1));
    send_pattern(victim, 99, 256 * 1024);
    seen = read_to_end(victim).second;
  }
  reset_seen.count_down();
  for (auto& t : clients) t.join();

  CHECK(seen == asio::error::connection_reset);
  CHECK(verified == others);
  const auto done = records.wait(others + 1);
  REQUIRE(done.size() == others + 1);
  CHECK(std::ranges::count_if(done, [](const auto& r) { return r.end == ConnectionEnd::upstream_reset; }) == 1);
  CHECK(std::ranges::count_if(done, [](const auto& r) { return r.end == ConnectionEnd::completed; }) == others);
  CHECK(proxy.stats().upstream_cx_reset == 1);
}

TEMPLATE_TEST_CASE("faults: an upstream that stops reading keeps the proxy's memory bounded and the transfer "
                   "completes when it reads again",
                   "[faults]", SpliceRelay, BufferedRelay) {
  constexpr std::uint64_t size = 64ULL << 20;
  std::promise<void> resume;
  auto resumed = resume.get_future().share();
  std::promise<Checksum> received;
  Upstream upstream({asio::ip::address_v4::loopback(), 0}, [&](tcp::socket& s) {
    resumed.wait();  // reads nothing until told
    received.set_value(receive_all(s));
  });
  RunningProxy<FixedPolicy, TestType> proxy(to(upstream.endpoint()), TestType{});
  asio::io_context io;
  auto client = connect_client(io, proxy.endpoint());
  set_timeouts(client, 120s);

  const auto heap_before = ::mallinfo2().uordblks;
  std::atomic<std::uint64_t> sent{0};
  std::thread sender([&] {
    std::vector<std::uint8_t> block(64 * 1024);
    for (std::uint64_t done = 0; done < size;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), size - done));
      for (std::size_t i = 0; i < n; ++i) block[i] = pattern_byte(5, done + i);
      asio::write(client, asio::buffer(block.data(), n));
      done += n;
      sent = done;
    }
    client.shutdown(tcp::socket::shutdown_send);
  });
  const bool stalled = stalls(sent, 30s);
  const auto heap_during = ::mallinfo2().uordblks;
  const auto accepted = sent.load();
  resume.set_value();
  sender.join();
  auto got = received.get_future();
  REQUIRE(got.wait_for(120s) == std::future_status::ready);

  REQUIRE(stalled);
  INFO("bytes the client could send while the upstream read nothing: " << accepted);
  CHECK(accepted < size / 2);  // socket buffers and one pipe or buffer per direction, not the stream
  CHECK(heap_during < heap_before + 512 * 1024);
  CHECK(got.get() == expected_checksum(5, size));
}

TEMPLATE_TEST_CASE("faults: clients that vanish mid-transfer leave no descriptor or pipe or connection behind",
                   "[faults]", SpliceRelay, BufferedRelay) {
  constexpr int clients = 32;
  Upstream upstream({asio::ip::address_v4::loopback(), 0}, [&](tcp::socket& s) {
    send_pattern(s, 7, 64ULL << 20);  // fails once the proxy resets it
  });
  Records records;
  RunningProxy<FixedPolicy, TestType> proxy(to(upstream.endpoint()), TestType{}, {.on_complete = records.callback()},
                                            {}, nullptr, 2);
  const auto fds_before = open_descriptors();
  const auto heap_before = ::mallinfo2().uordblks;
  REQUIRE(pipes_lent(proxy.proxy().relay()) == 0);

  std::atomic<int> read_some{0};
  std::vector<std::thread> threads;
  for (int id = 0; id < clients; ++id) {
    threads.emplace_back([&, id] {
      try {
        asio::io_context io;
        auto c = connect_client(io, proxy.endpoint());
        std::vector<std::uint8_t> block(1 << 20);
        read_within(c, asio::buffer(block));
        bool intact = true;
        for (std::size_t i = 0; i < block.size(); ++i) intact = intact && block[i] == pattern_byte(7, i);
        if (intact) ++read_some;
        // Half the clients reset; the others just close with unread bytes (which the kernel turns into a
        // RST as well) or after a FIN of their own.
        if (id % 2 == 0) abort_connection(c);
        else c.close();
      } catch (const std::exception& e) {
        UNSCOPED_INFO("client " << id << ": " << e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(read_some == clients);
  const auto done = records.wait(clients, 60s);
  CHECK(done.size() == clients);
  CHECK(std::ranges::none_of(done, [](const auto& r) { return r.end == ConnectionEnd::completed; }));
  CHECK(eventually([&] { return proxy.proxy().active() == 0; }));
  CHECK(pipes_lent(proxy.proxy().relay()) == 0);
  // Pipes given back whole (a direction that spent its budget returns its empty pipe) wait in the pool's
  // idle list by design: close them, then every descriptor must be back once the upstream's threads end.
  if constexpr (std::is_same_v<TestType, SpliceRelay>) proxy.proxy().relay().pool()->trim();
  const bool fds_back = eventually([&] { return open_descriptors() <= fds_before; }, 30s);
  INFO("descriptors before " << fds_before << ", after " << open_descriptors());
  CHECK(fds_back);
  INFO("heap before " << heap_before << ", after " << ::mallinfo2().uordblks);
  CHECK(::mallinfo2().uordblks < heap_before + 1024 * 1024);

  // And the proxy still serves.
  asio::io_context io;
  auto again = connect_client(io, proxy.endpoint());
  std::vector<std::uint8_t> block(64 * 1024);
  read_within(again, asio::buffer(block));
  CHECK(block[block.size() - 1] == pattern_byte(7, block.size() - 1));
  abort_connection(again);
}

TEMPLATE_TEST_CASE("faults: an upstream process SIGKILLed mid-transfer resets its client and the proxy serves on",
                   "[faults]", SpliceRelay, BufferedRelay) {
  // The upstream is a child process that never reads what it is sent: unread bytes at its death make the
  // kernel send a RST.
  asio::io_context io;
  tcp::acceptor listener(io, {asio::ip::address_v4::loopback(), 0});
  std::vector<std::uint8_t> block(64 * 1024);
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = pattern_byte(11, i);
  WritingProcess upstream(listener, block);

  Records records;
  RunningProxy<FixedPolicy, TestType> proxy(to(listener.local_endpoint()), TestType{},
                                            {.on_complete = records.callback()});
  auto client = connect_client(io, proxy.endpoint());
  // Bytes the child will never read (so that its death is a RST), all written before it dies: the kernel
  // reports a RST to one call only, and it must be the reader's.
  send_pattern(client, 12, 64 * 1024);
  RepeatedBlockReader reader(block);
  REQUIRE_FALSE(reader.read(client, 16ULL << 20));
  upstream.kill();
  const std::error_code ec = reader.read(client, std::numeric_limits<std::uint64_t>::max());
  INFO("bytes received before the reset: " << reader.received());
  CHECK(reader.intact());
  CHECK(ec == asio::error::connection_reset);
  const auto done = records.wait(1);
  REQUIRE(done.size() == 1);
  CHECK(done[0].end == ConnectionEnd::upstream_reset);

  // The proxy serves on: a new connection reaches the (same) listening socket, now answered by the test.
  auto next = connect_client(io, proxy.endpoint());
  auto served = listener.accept();
  asio::write(next, asio::buffer(std::string_view("ping\n")));
  next.shutdown(tcp::socket::shutdown_send);
  set_timeouts(served, 20s);
  CHECK(read_to_end(served).first == "ping\n");
  asio::write(served, asio::buffer(std::string_view("pong\n")));
  served.shutdown(tcp::socket::shutdown_send);
  CHECK(read_to_end(next).first == "pong\n");
}
