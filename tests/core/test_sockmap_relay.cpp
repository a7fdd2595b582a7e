// SockmapRelay's own paths: the kernel moves the bytes with no pump call, a FIN waits for what the kernel
// still holds, and a process without CAP_BPF gets a reason and the splice fallback.
#include "harness.hpp"
#include "sockmap_under_test.hpp"

#ifdef PODPROXY_HAS_SOCKMAP

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

using namespace podproxy;
using namespace podproxy::test;

namespace {

/// A connection as the proxy holds it: client <-> proxy_client and proxy_upstream <-> server.
struct Relayed {
  asio::io_context io;
  tcp::socket client{io}, proxy_client{io}, proxy_upstream{io}, server{io};

  Relayed() {
    tcp::acceptor front(io, {asio::ip::address_v4::loopback(), 0});
    tcp::acceptor back(io, {asio::ip::address_v4::loopback(), 0});
    client.connect(front.local_endpoint());
    proxy_client = front.accept();
    proxy_upstream.connect(back.local_endpoint());
    server = back.accept();
    set_timeouts(client);
    set_timeouts(server);
    proxy_client.non_blocking(true);
    proxy_upstream.non_blocking(true);
  }
  int from_client() { return proxy_client.native_handle(); }
  int to_server() { return proxy_upstream.native_handle(); }
};

}  // namespace

TEST_CASE("sockmap: once a pump has put the sockets in the map, the kernel moves bytes both ways with no "
          "further pump call",
          "[relay][sockmap]") {
  if (!sockmap_program()) { WARN("skipped: the sockmap program cannot load here"); return; }
  Sockmap relay;
  Relayed c;
  auto up = relay.make_pump();
  auto down = relay.make_pump();
  CHECK(up.transfer(c.from_client(), c.to_server()).status == PumpStatus::want_read);
  CHECK(up.in_kernel());
  constexpr std::uint64_t size = 8 << 20;
  std::thread client_sends([&] { send_pattern(c.client, 4, size); });
  std::thread server_sends([&] { send_pattern(c.server, 5, size); });
  const auto read_exactly = [](tcp::socket& s, std::uint64_t size) {
    Checksum c;
    std::vector<std::uint8_t> block(64 * 1024);
    while (c.bytes < size) {
      std::error_code ec;
      const auto got = read_some_within(s, asio::buffer(block.data(), std::min<std::uint64_t>(block.size(), size - c.bytes)), ec);
      if (ec) break;
      c.add(block.data(), got);
    }
    return c;
  };
  const Checksum at_server = read_exactly(c.server, size);
  const Checksum at_client = read_exactly(c.client, size);
  client_sends.join();
  server_sends.join();
  CHECK(at_server == expected_checksum(4, size));
  CHECK(at_client == expected_checksum(5, size));
  // The pumps learn the counts from the sockets: what each sink was handed.
  std::size_t counted_up = 0, counted_down = 0;
  counted_up += up.transfer(c.from_client(), c.to_server()).delivered;
  counted_down += down.transfer(c.to_server(), c.from_client()).delivered;
  CHECK(counted_up == size);
  CHECK(counted_down == size);
}

TEST_CASE("sockmap: a FIN is reported only once every byte before it was handed to the sink", "[relay][sockmap]") {
  if (!sockmap_program()) { WARN("skipped: the sockmap program cannot load here"); return; }
  Sockmap relay;
  Relayed c;
  auto up = relay.make_pump();
  REQUIRE(up.transfer(c.from_client(), c.to_server()).status == PumpStatus::want_read);
  // The server reads nothing yet: the kernel holds what it cannot send, and the FIN must wait for it.
  constexpr std::uint64_t size = 16 << 20;
  std::thread client_sends([&] {
    send_pattern(c.client, 6, size);
    c.client.shutdown(tcp::socket::shutdown_send);
  });
  std::size_t delivered = 0;
  PumpStep step;
  int pending = 0;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  std::thread server_reads;
  Checksum at_server;
  for (;;) {
    step = up.transfer(c.from_client(), c.to_server());
    delivered += step.delivered;
    if (step.status == PumpStatus::fin) break;
    REQUIRE((step.status == PumpStatus::want_read || step.status == PumpStatus::pending));
    if (step.status == PumpStatus::pending && ++pending == 1) {
      // The FIN came while the kernel still held bytes for the server: now let it read.
      server_reads = std::thread([&] { at_server = receive_all(c.server); });
    }
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(1ms);
  }
  CHECK(pending > 0);  // the kernel did hold bytes behind the FIN
  CHECK(delivered == size);
  c.proxy_upstream.shutdown(tcp::socket::shutdown_send);  // what the proxy does on `fin`
  if (!server_reads.joinable()) server_reads = std::thread([&] { at_server = receive_all(c.server); });
  server_reads.join();
  client_sends.join();
  CHECK(at_server == expected_checksum(6, size));
}

TEST_CASE("sockmap: without CAP_BPF the program does not load, says why, and the relay splices",
          "[relay][sockmap]") {
  if (::geteuid() != 0) { WARN("skipped: needs root to become uid 1337 without capabilities"); return; }
  int report[2];
  REQUIRE(::pipe(report) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // As the sidecar's uid, with no capability left (setresuid from root to non-root clears them).
    if (::setresgid(1337, 1337, 1337) != 0 || ::setresuid(1337, 1337, 1337) != 0) ::_exit(3);
    std::string why;
    const auto program = SockmapProgram::load(why);
    const SockmapRelay relay(program);
    const std::string line = std::string(program ? "loaded" : "refused") + (relay.in_kernel() ? " kernel " : " splice ") + why;
    (void)!::write(report[1], line.data(), line.size());
    ::_exit(0);
  }
  ::close(report[1]);
  std::string line(512, '\0');
  const auto n = ::read(report[0], line.data(), line.size());
  ::close(report[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  line.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  INFO(line);
  CHECK(line.rfind("refused splice ", 0) == 0);
  CHECK(line.find("Operation not permitted") != std::string::npos);
}

#endif
