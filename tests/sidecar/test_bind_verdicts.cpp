// Unit tests of check-binds' /proc/net/tcp parsing and of its verdicts per policy.
#include "bind_verdicts.hpp"
#include "init_flags.hpp"
#include "tcp_listeners.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <cstring>
#include <string>

using namespace sidecar::binds;

namespace {

asio::ip::address ip(const char* text) { return asio::ip::make_address(text); }

/// The address as the kernel prints it in /proc/net/tcp{,6}: each 32-bit word of the in-memory
/// address with %08X (computed here through the same memory layout, so the test holds on any endianness).
std::string proc_hex(const asio::ip::address& address) {
  std::string out;
  const auto words = [&](const unsigned char* bytes, std::size_t n) {
    for (std::size_t i = 0; i < n; i += 4) {
      std::uint32_t word = 0;
      std::memcpy(&word, bytes + i, 4);
      char buffer[9];
      std::snprintf(buffer, sizeof buffer, "%08X", word);
      out += buffer;
    }
  };
  if (address.is_v4()) {
    const auto b = address.to_v4().to_bytes();
    words(b.data(), 4);
  } else {
    const auto b = address.to_v6().to_bytes();
    words(b.data(), 16);
  }
  return out;
}

std::string proc_line(int slot, const asio::ip::address& address, int port, const char* state, int uid) {
  const std::string zero = address.is_v4() ? "00000000" : std::string(32, '0');
  char buffer[400];
  std::snprintf(buffer, sizeof buffer,
                "%4d: %s:%04X %s:0000 %s 00000000:00000000 00:00000000 00000000 %5d        0 4242 1 0000000000000000 100 0 0 10 0\n",
                slot, proc_hex(address).c_str(), port, zero.c_str(), state, uid);
  return buffer;
}

const std::string header =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

}  // namespace

TEST_CASE("proc/net/tcp: listening sockets are read with address and port and uid and others are skipped", "[check-binds]") {
  // A real line of this machine's /proc/net/tcp for 127.0.0.1:8080, uid 0, as printed on x86-64.
  const std::string x86_line =
      "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 "
      "0000000000000000 100 0 0 10 0\n";
  const std::string text = header + proc_line(1, ip("10.77.0.2"), 8081, "0A", 1337) +
                           proc_line(2, ip("10.77.0.2"), 40000, "01", 0) +  // established: not a listener
                           proc_line(3, ip("0.0.0.0"), 8082, "0A", 0) + "garbage line\n";
  const auto listeners = parse_proc_net_tcp(text);
  REQUIRE(listeners.size() == 2);
  CHECK(listeners[0].address == ip("10.77.0.2"));
  CHECK(listeners[0].port == 8081);
  CHECK(listeners[0].uid == 1337);
  CHECK(listeners[1].address == ip("0.0.0.0"));
  if (htonl(1) != 1) {  // little-endian: the literal line above is exactly what the kernel printed
    const auto x86 = parse_proc_net_tcp(header + x86_line);
    REQUIRE(x86.size() == 1);
    CHECK(x86[0].address == ip("127.0.0.1"));
    CHECK(x86[0].port == 8080);
  }
}

TEST_CASE("proc/net/tcp6: v6 and v4-mapped and wildcard addresses round-trip", "[check-binds]") {
  const std::string text = header + proc_line(0, ip("::1"), 8083, "0A", 0) + proc_line(1, ip("::"), 8084, "0A", 0) +
                           proc_line(2, ip("::ffff:127.0.0.1"), 8085, "0A", 0) +
                           proc_line(3, ip("fd77::2"), 8086, "0A", 0);
  const auto listeners = parse_proc_net_tcp(text);
  REQUIRE(listeners.size() == 4);
  CHECK(listeners[0].address == ip("::1"));
  CHECK(listeners[1].address == ip("::"));
  CHECK(listeners[2].address == ip("::ffff:127.0.0.1"));
  CHECK(listeners[3].address == ip("fd77::2"));
  CHECK(listeners[3].port == 8086);
}

TEST_CASE("accepts: which bind answers which dial", "[check-binds]") {
  using T = std::tuple<const char*, const char*, bool, bool>;  // bound, dialled, dual_stack, accepted
  const auto [bound, dialled, dual_stack, accepted] = GENERATE(table<const char*, const char*, bool, bool>({
      T{"127.0.0.1", "127.0.0.1", true, true},
      T{"127.0.0.1", "10.77.0.2", true, false},
      T{"10.77.0.2", "10.77.0.2", true, true},
      T{"10.77.0.2", "127.0.0.1", true, false},
      T{"0.0.0.0", "127.0.0.1", true, true},
      T{"0.0.0.0", "10.77.0.2", true, true},
      T{"0.0.0.0", "::1", true, false},
      T{"::", "127.0.0.1", true, true},
      T{"::", "127.0.0.1", false, false},
      T{"::", "fd77::2", false, true},
      T{"::1", "::1", true, true},
      T{"::1", "127.0.0.1", true, false},
      T{"::ffff:127.0.0.1", "127.0.0.1", true, true},
      T{"::ffff:127.0.0.1", "10.77.0.2", true, false},
      T{"fd77::2", "fd77::2", true, true},
      T{"fd77::2", "::1", true, false},
  }));
  INFO(bound << " <- " << dialled << (dual_stack ? " (dual stack)" : " (v6 only)"));
  CHECK(accepts(ip(bound), ip(dialled), dual_stack) == accepted);
}

TEST_CASE("verdicts: the seed's three servers under both policies", "[check-binds]") {
  const std::vector<TcpListener> listeners{
      {ip("127.0.0.1"), 8080, 0}, {ip("10.77.0.2"), 8081, 0}, {ip("0.0.0.0"), 8082, 0},
      {ip("127.0.0.1"), 15000, 0},  // the sidecar's admin port: skipped
  };
  const auto v = verdicts(listeners, {ip("10.77.0.2")}, true, {15000});
  REQUIRE(v.size() == 3);
  CHECK(v[0].port == 8080);
  CHECK(v[0].loopback.reachable());
  CHECK_FALSE(v[0].pod_ip.reachable());
  CHECK(v[0].pod_ip.summary() == "no");
  CHECK(v[0].loopback.v6 == std::nullopt);
  CHECK_THAT(v[0].reason, Catch::Contains("127.0.0.1 (loopback only)") && Catch::Contains("10.77.0.2:8080"));
  CHECK_FALSE(v[1].loopback.reachable());
  CHECK(v[1].pod_ip.reachable());
  CHECK_THAT(v[1].reason, Catch::Contains("the pod IP only") && Catch::Contains("127.0.0.1:8081"));
  CHECK(v[2].loopback.reachable());
  CHECK(v[2].pod_ip.reachable());
  CHECK_THAT(v[2].reason, Catch::Contains("both policies reach it"));
}

TEST_CASE("verdicts: two listeners on one port together serve both policies", "[check-binds]") {
  const auto v = verdicts({{ip("127.0.0.1"), 9000, 0}, {ip("10.77.0.2"), 9000, 0}, {ip("10.77.0.2"), 9000, 0}},
                          {ip("10.77.0.2")}, true, {});
  REQUIRE(v.size() == 1);
  CHECK(v[0].listeners.size() == 2);  // the SO_REUSEPORT duplicate is merged
  CHECK(v[0].loopback.reachable());
  CHECK(v[0].pod_ip.reachable());
}

TEST_CASE("verdicts: a dual-stack pod needs each family answered", "[check-binds]") {
  const auto v = verdicts({{ip("0.0.0.0"), 8082, 0}, {ip("::1"), 8083, 0}}, {ip("10.77.0.2"), ip("fd77::2")}, true, {});
  REQUIRE(v.size() == 2);
  CHECK(v[0].loopback.summary() == "IPv4 only");
  CHECK(v[0].pod_ip.summary() == "IPv4 only");
  CHECK_FALSE(v[0].pod_ip.reachable());
  CHECK_THAT(v[0].reason, Catch::Contains("[fd77::2]:8082") && Catch::Contains("[::1]:8082"));
  CHECK(v[1].loopback.summary() == "IPv6 only");
  CHECK(v[1].pod_ip.summary() == "no");
}

TEST_CASE("init flags: ids and marks and port selections are checked and name the flag", "[init]") {
  CHECK(sidecar::parse_id("--proxy-uid", "1337") == 1337);
  CHECK_THROWS_WITH(sidecar::parse_id("--proxy-uid", "-1"), Catch::Contains("--proxy-uid"));
  CHECK_THROWS_WITH(sidecar::parse_id("--proxy-gid", "4294967295"), Catch::Contains("--proxy-gid"));
  CHECK_THROWS(sidecar::parse_id("--proxy-uid", "12a"));
  CHECK(sidecar::parse_mark("--proxy-mark", "0x539") == 1337);
  CHECK(sidecar::parse_mark("--proxy-mark", "1337") == 1337);
  CHECK_THROWS_WITH(sidecar::parse_mark("--proxy-mark", "0"), Catch::Contains("--proxy-mark"));
  CHECK_THROWS(sidecar::parse_mark("--proxy-mark", "0x"));
  CHECK_THROWS(sidecar::parse_mark("--proxy-mark", "4294967296"));
  CHECK(sidecar::parse_port_selection("--inbound-ports", "*") == std::nullopt);
  CHECK(sidecar::parse_port_selection("--inbound-ports", "80,443") == std::vector<std::uint16_t>{80, 443});
  CHECK(sidecar::parse_port_selection("--inbound-ports", "")->empty());
  CHECK_THROWS_WITH(sidecar::parse_port_selection("--inbound-ports", "80,*"), Catch::Contains("--inbound-ports"));
}

TEST_CASE("verdicts: an IPv6 wildcard listener's own IPV6_V6ONLY beats the namespace default", "[check-binds]") {
  TcpListener v6_only{ip("::"), 8084, 0, true};
  TcpListener dual{ip("::"), 8086, 0, false};
  TcpListener unknown{ip("::"), 8087, 0, std::nullopt};
  const auto v = verdicts({v6_only, dual, unknown}, {ip("10.77.0.2")}, true, {});
  REQUIRE(v.size() == 3);
  CHECK_FALSE(v[0].loopback.reachable());
  CHECK_FALSE(v[0].pod_ip.reachable());
  CHECK_THAT(v[0].reason, Catch::Contains("IPV6_V6ONLY keeps IPv4 out"));
  CHECK(v[1].loopback.reachable());
  CHECK(v[1].pod_ip.reachable());
  CHECK(v[2].pod_ip.reachable());  // unknown: the namespace default (dual stack) decides
  CHECK_FALSE(verdicts({unknown}, {ip("10.77.0.2")}, false, {})[0].pod_ip.reachable());
}

TEST_CASE("verdicts: the policies run uses are asked, so a policy built otherwise gives other verdicts",
          "[check-binds]") {
  const std::vector<TcpListener> listeners{{ip("10.77.0.2"), 8081, 0}};
  // The default pod-ip policy dials 10.77.0.2:8081 from 127.0.0.6; one without a source bind dials it too,
  // and the reason no longer names a source.
  const auto bound = verdicts({{ip("127.0.0.1"), 8081, 0}}, {ip("10.77.0.2")}, true, {});
  CHECK_THAT(bound[0].reason, Catch::Contains("the pod-ip policy dials 10.77.0.2:8081 (from 127.0.0.6)"));
  const auto unbound = verdicts({{ip("127.0.0.1"), 8081, 0}}, {ip("10.77.0.2")}, true, {}, podproxy::LoopbackPolicy{},
                                podproxy::PodIpPolicy::without_source_bind());
  CHECK_THAT(unbound[0].reason, Catch::Contains("the pod-ip policy dials 10.77.0.2:8081: no listener"));
  // A source of another address is reported as the policy has it.
  const podproxy::PodIpPolicy other_source{ip("127.0.0.9"), ip("::9")};
  const auto v = verdicts({{ip("127.0.0.1"), 8081, 0}}, {ip("10.77.0.2")}, true, {}, podproxy::LoopbackPolicy{}, other_source);
  CHECK_THAT(v[0].reason, Catch::Contains("(from 127.0.0.9)"));
  CHECK(verdicts(listeners, {ip("10.77.0.2")}, true, {})[0].pod_ip.reachable());
}
