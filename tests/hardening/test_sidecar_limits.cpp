// podproxy-sidecar at its limits, as its own process in a test namespace: descriptors running out (started
// under `prlimit --nofile`), and SIGTERM with transfers in flight.
#include "harness.hpp"
#include "sidecar_process.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <atomic>

using namespace podproxy;
using namespace podproxy::test;
using asio::experimental::as_tuple;

namespace {

/// Runs `io` until `done` or `limit`.
void run_until(asio::io_context& io, const bool& done, std::chrono::steady_clock::duration limit) {
  io.restart();
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < deadline) io.run_for(20ms);
}

/// Echoes `text` on `s` (connecting it to `to` first when it is not open) within `limit`. On failure or
/// timeout the socket is closed. The machine is shared: `limit` only tells "not served yet" apart.
bool echo_within(asio::io_context& io, tcp::socket& s, const tcp::endpoint& to, const std::string& text,
                 std::chrono::steady_clock::duration limit) {
  bool done = false, ok = false;
  const bool first = !s.is_open();
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    std::error_code ec;
    if (first) std::tie(ec) = co_await s.async_connect(to, as_tuple(asio::use_awaitable));
    const std::string out = (first ? "E" : "") + text;
    if (!ec) std::tie(ec, std::ignore) = co_await asio::async_write(s, asio::buffer(out), as_tuple(asio::use_awaitable));
    std::string back(text.size(), '\0');
    if (!ec) std::tie(ec, std::ignore) = co_await asio::async_read(s, asio::buffer(back), as_tuple(asio::use_awaitable));
    ok = !ec && back == text;
    done = true;
  }, asio::detached);
  run_until(io, done, limit);
  if (!done) {
    std::error_code ignored;
    s.close(ignored);  // the coroutine ends with operation_aborted
    run_until(io, done, 10s);
  }
  if (!ok && s.is_open()) s.close();
  return ok;
}

}  // namespace

TEST_CASE("sidecar limits: out of descriptors it refuses new connections and serves the existing ones and "
          "recovers",
          "[limits][sidecar]") {
  REQUIRE(can_make_namespaces());
  NetNs ns("hfd");
  constexpr int max_connections = 200;  // bound: far more than the descriptor limit allows
  std::size_t held_count = 0, still_served = 0;
  bool refused = false, recovered = false, sidecar_ran = false;
  int sidecar_status = -1;
  ns.run_inside([&] {
    ThreadedUpstream upstream;
    SidecarProcess sidecar(ns,
                           {"--inbound-port", "15006", "--inbound-default-endpoint",
                            "15006=127.0.0.1:" + std::to_string(upstream.port()), "--no-access-log", "--log-level",
                            "error"},
                           {"prlimit", "--nofile=48"});
    const tcp::endpoint proxy{asio::ip::address_v4::loopback(), 15006};
    asio::io_context io;
    if (!wait_echo(io, proxy)) return;
    sidecar_ran = true;
    std::vector<tcp::socket> held;
    for (int i = 0; i < max_connections; ++i) {
      tcp::socket s(io);
      if (!echo_within(io, s, proxy, "hello " + std::to_string(i), 3s)) {
        refused = true;
        break;
      }
      held.push_back(std::move(s));
    }
    held_count = held.size();
    // Out of descriptors: every connection that was served still is.
    for (std::size_t i = 0; i < held.size(); ++i) {
      if (echo_within(io, held[i], proxy, "again " + std::to_string(i), 30s)) ++still_served;
    }
    // Free descriptors: close all but two; new connections are served again.
    while (held.size() > 2) held.pop_back();
    recovered = eventually([&] {
      tcp::socket s(io);
      return echo_within(io, s, proxy, "after", 5s);
    }, 60s);
    for (auto& s : held) {
      if (!echo_within(io, s, proxy, "still", 30s)) recovered = false;
    }
    sidecar_status = sidecar.stop();
  });
  REQUIRE(sidecar_ran);
  INFO("connections served at once under --nofile=48: " << held_count);
  CHECK(refused);
  CHECK(held_count >= 5);
  CHECK(still_served == held_count);
  CHECK(recovered);
  CHECK(sidecar_status == 0);
  WARN("descriptor exhaustion: " << held_count << " connections held under --nofile=48, all still served; recovered");
}

TEST_CASE("sidecar limits: SIGTERM under load lets in-flight transfers finish and accepts nothing new",
          "[limits][sidecar]") {
  REQUIRE(can_make_namespaces());
  NetNs ns("hterm");
  constexpr int connections = 100;
  constexpr std::size_t first_part = 256 * 1024, second_part = 3 << 20;
  std::atomic<int> verified{0}, failed{0}, halfway{0};
  int refused_after = 0, attempts_after = 0;
  bool sidecar_ran = false, deadline_passed = false;
  int sidecar_status = -1;
  ns.run_inside([&] {
    ThreadedUpstream upstream;
    SidecarProcess sidecar(ns, {"--inbound-port", "15006", "--inbound-default-endpoint",
                                "15006=127.0.0.1:" + std::to_string(upstream.port()), "--no-access-log",
                                "--log-level", "error", "--drain-timeout", "120s", "--threads", "2"});
    const tcp::endpoint proxy{asio::ip::address_v4::loopback(), 15006};
    asio::io_context io;
    if (!wait_echo(io, proxy)) return;
    sidecar_ran = true;
    asio::steady_timer go(io, std::chrono::steady_clock::time_point::max());
    for (int id = 0; id < connections; ++id) {
      asio::co_spawn(io, [&, id]() -> asio::awaitable<void> {
        tcp::socket s(io);
        auto [ec] = co_await s.async_connect(proxy, as_tuple(asio::use_awaitable));
        const std::size_t size = first_part + second_part;
        std::vector<std::uint8_t> out(size + 1), in(size);
        out[0] = 'E';
        for (std::size_t i = 0; i < size; ++i) out[i + 1] = pattern_byte(static_cast<std::uint64_t>(id), i);
        // The first part goes through before SIGTERM; the rest only after it.
        if (!ec) std::tie(ec, std::ignore) = co_await asio::async_write(s, asio::buffer(out.data(), 1 + first_part), as_tuple(asio::use_awaitable));
        if (!ec) std::tie(ec, std::ignore) = co_await asio::async_read(s, asio::buffer(in.data(), first_part), as_tuple(asio::use_awaitable));
        ++halfway;
        co_await go.async_wait(as_tuple(asio::use_awaitable));
        bool written = false;
        std::error_code wec;
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
          if (!ec) std::tie(wec, std::ignore) = co_await asio::async_write(s, asio::buffer(out.data() + 1 + first_part, second_part), as_tuple(asio::use_awaitable));
          if (std::error_code shut; !wec) s.shutdown(tcp::socket::shutdown_send, shut);
          written = true;
        }, asio::detached);
        if (!ec) std::tie(ec, std::ignore) = co_await asio::async_read(s, asio::buffer(in.data() + first_part, second_part), as_tuple(asio::use_awaitable));
        while (!written) {
          asio::steady_timer t(io, 1ms);
          co_await t.async_wait(as_tuple(asio::use_awaitable));
        }
        char extra = 0;
        auto [eec, e] = co_await asio::async_read(s, asio::buffer(&extra, 1), as_tuple(asio::use_awaitable));
        if (!ec && !wec && eec == asio::error::eof && std::equal(in.begin(), in.end(), out.begin() + 1)) ++verified;
        else ++failed;
      }, asio::detached);
    }
    const auto deadline = std::chrono::steady_clock::now() + 300s;
    io.restart();
    while (halfway < connections && std::chrono::steady_clock::now() < deadline) io.run_for(20ms);

    sidecar.signal(SIGTERM);
    // The listener closes: once a connection is refused, every later one is too.
    const bool closed = eventually([&] {
      tcp::socket probe(io);
      std::error_code ec;
      probe.connect(proxy, ec);
      return ec == asio::error::connection_refused;
    }, 30s);
    if (closed) {
      for (; attempts_after < 20; ++attempts_after) {
        tcp::socket probe(io);
        std::error_code ec;
        probe.connect(proxy, ec);
        if (ec == asio::error::connection_refused) ++refused_after;
      }
    }
    // The in-flight transfers carry on to their end. The sidecar may exit before the clients have read
    // everything (the last bytes wait in their receive buffers); a connection it cut would be a reset here.
    go.expires_at(std::chrono::steady_clock::time_point::min());
    io.restart();
    while (verified + failed < connections) {
      if (std::chrono::steady_clock::now() > deadline) {
        deadline_passed = true;
        break;
      }
      io.run_for(20ms);
    }
    sidecar_status = sidecar.wait();
  });
  REQUIRE(sidecar_ran);
  INFO("verified " << verified << ", failed " << failed);
  CHECK_FALSE(deadline_passed);
  CHECK(attempts_after == 20);
  CHECK(refused_after == 20);
  CHECK(verified == connections);
  CHECK(failed == 0);
  CHECK(sidecar_status == 0);  // drained within the drain timeout (a cut connection would fail a checksum)
  WARN("SIGTERM under load: " << verified << " in-flight transfers of " << (first_part + second_part)
                               << " bytes each way completed after SIGTERM; " << refused_after
                               << " new connections refused");
}
