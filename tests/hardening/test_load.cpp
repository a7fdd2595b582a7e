// Load: 8,000 concurrent connections through the podproxy-sidecar binary, every byte verified; and a
// bounded soak of mixed connections through an in-process proxy, after which descriptors, pipes and memory
// are back at their baseline.
#include "harness.hpp"
#include "sidecar_process.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <random>

using namespace podproxy;
using namespace podproxy::test;
using asio::experimental::as_tuple;


TEST_CASE("load: 8000 concurrent connections through podproxy-sidecar with every byte verified", "[load][sidecar]") {
  REQUIRE(can_make_namespaces());
  constexpr int connections = 8000;
  constexpr std::size_t payload = 16 * 1024;
  NetNs ns("hload");
  // The test process holds the clients and the upstream sides (16,000 descriptors, under this machine's
  // hard limit of 20,000); the sidecar, its own process, holds the other 16,000.
  std::atomic<int> connected{0}, verified{0}, failed{0};
  std::uint64_t bytes_verified = 0;
  bool deadline_passed = false;
  int sidecar_status = -1;
  std::string sidecar_error;
  ns.run_inside([&] {
    // The upstream runs on a thread of its own; the clients on this one.
    ThreadedUpstream upstream;
    const auto up_port = std::to_string(upstream.port());
    SidecarProcess sidecar(ns, {"--inbound-port", "15006", "--inbound-default-endpoint", "15006=127.0.0.1:" + up_port,
                                "--no-access-log", "--log-level", "warn", "--threads", "2", "--drain-timeout", "5s"});
    const tcp::endpoint proxy{asio::ip::address_v4::loopback(), 15006};
    asio::io_context io;
    if (!wait_echo(io, proxy)) {
      sidecar_error = "the sidecar did not come up";
      return;
    }

    asio::steady_timer all_connected(io, std::chrono::steady_clock::time_point::max());
    for (int id = 0; id < connections; ++id) {
      asio::co_spawn(io, [&, id]() -> asio::awaitable<void> {
        tcp::socket s(io);
        auto [cec] = co_await s.async_connect(proxy, as_tuple(asio::use_awaitable));
        if (cec) { ++failed; co_return; }
        // Every connection stays open until all are: they are truly concurrent.
        if (++connected == connections) all_connected.expires_at(std::chrono::steady_clock::time_point::min());
        co_await all_connected.async_wait(as_tuple(asio::use_awaitable));
        std::vector<std::uint8_t> out(payload + 1), in(payload);
        out[0] = 'E';
        for (std::size_t i = 0; i < payload; ++i) out[i + 1] = pattern_byte(static_cast<std::uint64_t>(id), i);
        auto [wec, w] = co_await asio::async_write(s, asio::buffer(out), as_tuple(asio::use_awaitable));
        if (std::error_code shut; !wec) s.shutdown(tcp::socket::shutdown_send, shut);
        auto [rec, r] = co_await asio::async_read(s, asio::buffer(in), as_tuple(asio::use_awaitable));
        char extra = 0;
        auto [eec, e] = co_await asio::async_read(s, asio::buffer(&extra, 1), as_tuple(asio::use_awaitable));
        if (!wec && !rec && eec == asio::error::eof && std::equal(in.begin(), in.end(), out.begin() + 1)) {
          ++verified;
        } else {
          ++failed;
        }
      }, asio::detached);
    }
    io.restart();
    const auto deadline = std::chrono::steady_clock::now() + 300s;
    while (verified + failed < connections) {
      if (std::chrono::steady_clock::now() > deadline) {
        deadline_passed = true;
        break;
      }
      io.run_for(100ms);
    }
    io.stop();
    bytes_verified = static_cast<std::uint64_t>(verified.load()) * payload * 2;
    sidecar_status = sidecar.stop();
  });
  REQUIRE(sidecar_error.empty());
  INFO("connected " << connected << ", verified " << verified << ", failed " << failed);
  CHECK_FALSE(deadline_passed);
  CHECK(connected == connections);
  CHECK(failed == 0);
  CHECK(verified == connections);
  CHECK(sidecar_status == 0);
  WARN("8,000-connection load: " << connected << " connections held at once, " << bytes_verified
                                 << " bytes verified (both directions)");
}

TEMPLATE_TEST_CASE("load: a bounded soak of mixed connections with half-closes and resets leaves descriptors "
                   "pipes and memory at their baseline",
                   "[load][soak]", SpliceRelay, BufferedRelay) {
  // Bounded: at most `total` connections and `limit` of wall time, 200 at a time.
  constexpr int total = 30000;
  constexpr int concurrency = 200;
  constexpr auto limit = 60s;
  // The upstream runs on a thread of its own; the clients on this one.
  ThreadedUpstream upstream;
  asio::io_context io;
  RunningProxy<FixedPolicy, TestType> proxy(FixedPolicy{{.endpoint = upstream.endpoint()}}, TestType{}, {}, {},
                                            nullptr, 2);
  const auto pool_lent = [&] {
    if constexpr (std::is_same_v<TestType, SpliceRelay>) return proxy.proxy().relay().pool()->stats().lent;
    else return std::size_t{0};
  };
  // Idle pipes the pool keeps for reuse (at most max_idle) are not a leak: close them before each count.
  const auto trim_pool = [&] {
    if constexpr (std::is_same_v<TestType, SpliceRelay>) proxy.proxy().relay().pool()->trim();
  };
  // Warm up once (allocator arenas, the pool's first pipes), then take the baseline.
  {
    tcp::socket warm(io);
    warm.connect(proxy.endpoint());
    asio::write(warm, asio::buffer("Ewarm", 5));
    warm.shutdown(tcp::socket::shutdown_send);
    set_timeouts(warm, 20s);
    REQUIRE(read_to_end(warm).first == "warm");
  }
  REQUIRE(eventually([&] { return proxy.proxy().active() == 0; }));
  trim_pool();
  const auto fds_before = open_descriptors();
  const auto heap_before = ::mallinfo2().uordblks;

  enum Kind { short_echo, long_echo, client_reset, upstream_reset, kinds };
  std::array<std::atomic<int>, kinds> started{}, ok{};
  std::atomic<std::uint64_t> bytes_verified{0};
  std::atomic<int> launched{0}, finished{0};
  std::mt19937_64 random(20261126);
  const auto stop_at = std::chrono::steady_clock::now() + limit;

  std::function<void()> launch = [&] {
    if (launched >= total || std::chrono::steady_clock::now() > stop_at) return;
    const int id = launched++;
    const auto kind = static_cast<Kind>(random() % kinds);
    const std::size_t size = kind == long_echo ? (256 * 1024 + random() % (2 << 20)) : 1 + random() % 4096;
    const bool half_close_early = kind == short_echo && random() % 2 == 0;  // a long one would fill every buffer
    ++started[kind];
    asio::co_spawn(io, [&, id, kind, size, half_close_early]() -> asio::awaitable<void> {
      tcp::socket s(io);
      auto [cec] = co_await s.async_connect(proxy.endpoint(), as_tuple(asio::use_awaitable));
      std::vector<std::uint8_t> out(size + 1);
      out[0] = kind == upstream_reset ? 'R' : 'E';
      for (std::size_t i = 0; i < size; ++i) out[i + 1] = pattern_byte(static_cast<std::uint64_t>(id), i);
      bool good = !cec;
      if (good && kind == client_reset) {
        // Send part, read a little of the echo, then vanish with a RST.
        auto [wec, w] = co_await asio::async_write(s, asio::buffer(out.data(), 1 + (size + 1) / 2), as_tuple(asio::use_awaitable));
        std::uint8_t first = 0;
        auto [rec, r] = co_await asio::async_read(s, asio::buffer(&first, 1), as_tuple(asio::use_awaitable));
        good = !wec && !rec && first == out[1];
        abort_connection(s);
      } else if (good && kind == upstream_reset) {
        (void)co_await asio::async_write(s, asio::buffer(out), as_tuple(asio::use_awaitable));  // the reset may come first
        std::uint8_t sink[4096];
        std::error_code rec;
        for (;;) {
          auto [e, n] = co_await s.async_read_some(asio::buffer(sink), as_tuple(asio::use_awaitable));
          if (e) { rec = e; break; }
        }
        good = rec == asio::error::connection_reset;
      } else if (good) {
        // Echo: half-close right after sending (the `echo ping | nc` pattern) or only after reading back.
        std::vector<std::uint8_t> in(size);
        std::error_code wec, rec;
        if (half_close_early) {
          std::tie(wec, std::ignore) = co_await asio::async_write(s, asio::buffer(out), as_tuple(asio::use_awaitable));
          if (std::error_code shut; !wec) s.shutdown(tcp::socket::shutdown_send, shut);
          std::tie(rec, std::ignore) = co_await asio::async_read(s, asio::buffer(in), as_tuple(asio::use_awaitable));
        } else {
          // Write and read at once (a long echo would fill every buffer otherwise).
          std::atomic<bool> written{false};
          asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            std::tie(wec, std::ignore) = co_await asio::async_write(s, asio::buffer(out), as_tuple(asio::use_awaitable));
            written = true;
          }, asio::detached);
          std::tie(rec, std::ignore) = co_await asio::async_read(s, asio::buffer(in), as_tuple(asio::use_awaitable));
          while (!written) {
            asio::steady_timer t(io, 1ms);
            co_await t.async_wait(as_tuple(asio::use_awaitable));
          }
          if (std::error_code shut; !wec) s.shutdown(tcp::socket::shutdown_send, shut);
        }
        std::uint8_t extra = 0;
        auto [eec, e] = co_await asio::async_read(s, asio::buffer(&extra, 1), as_tuple(asio::use_awaitable));
        good = !wec && !rec && eec == asio::error::eof && std::equal(in.begin(), in.end(), out.begin() + 1);
        if (good) bytes_verified += 2 * size;
      }
      if (good) ++ok[kind];
      ++finished;
      launch();
    }, asio::detached);
  };
  for (int i = 0; i < concurrency; ++i) launch();
  io.restart();
  const auto hard_deadline = std::chrono::steady_clock::now() + limit + 60s;
  bool deadline_passed = false;
  while (finished < launched || (launched < total && std::chrono::steady_clock::now() < stop_at)) {
    if (std::chrono::steady_clock::now() > hard_deadline) {
      deadline_passed = true;
      break;
    }
    io.run_for(50ms);
  }
  REQUIRE_FALSE(deadline_passed);
  INFO("connections " << finished << ": short " << ok[short_echo] << "/" << started[short_echo] << ", long "
                      << ok[long_echo] << "/" << started[long_echo] << ", client resets " << ok[client_reset] << "/"
                      << started[client_reset] << ", upstream resets " << ok[upstream_reset] << "/"
                      << started[upstream_reset]);
  for (int k = 0; k < kinds; ++k) CHECK(ok[k] == started[k]);
  CHECK(finished >= 1000);
  // Back to the baseline: no connection, no pipe lent, the same descriptors, the heap within 1 MiB.
  CHECK(eventually([&] { return proxy.proxy().active() == 0; }, 30s));
  CHECK(pool_lent() == 0);
  const bool fds_back = eventually([&] {
    trim_pool();
    return open_descriptors() <= fds_before;
  }, 30s);
  INFO("descriptors before " << fds_before << ", after " << open_descriptors());
  CHECK(fds_back);
  INFO("heap before " << heap_before << ", after " << ::mallinfo2().uordblks);
  CHECK(::mallinfo2().uordblks < heap_before + 1024 * 1024);
  WARN("soak (" << (std::is_same_v<TestType, SpliceRelay> ? "splice" : "buffered") << "): " << finished
                << " connections, " << bytes_verified << " bytes verified");
}
