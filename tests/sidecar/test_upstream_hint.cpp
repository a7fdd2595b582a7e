// Unit tests of the hint a failed inbound connect gets (upstream_hint.hpp): one per reason, and the
// failures no hint explains.
#include "upstream_hint.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace sidecar;
using podproxy::ConnectionEnd;

namespace {

asio::ip::address ip(const char* text) { return asio::ip::make_address(text); }
asio::ip::tcp::endpoint ep(const char* text, std::uint16_t port) { return {ip(text), port}; }
binds::TcpListener listener(const char* address, std::uint16_t port, std::optional<bool> v6_only = std::nullopt) {
  return {ip(address), port, 0, v6_only};
}
const std::error_code refused = asio::error::connection_refused;
const std::error_code system_refused{ECONNREFUSED, asio::error::get_system_category()};  // as the session records it

}  // namespace

TEST_CASE("hint: a loopback-only server under the pod-ip policy says so, and the two fixes", "[hint]") {
  const hints::Context context{.policy = "pod-ip", .pod_ips = {ip("10.0.0.5")}};
  const auto h = hints::explain(ConnectionEnd::upstream_connect_failed, system_refused, ep("10.0.0.5", 8080), 8080,
                                {listener("127.0.0.1", 8080), listener("0.0.0.0", 9090)}, context);
  REQUIRE(h);
  CHECK(h->reason == hints::Reason::loopback_only);
  CHECK(h->text == "8080 listens on 127.0.0.1 only; the pod-ip policy dials 10.0.0.5:8080: bind 0.0.0.0 or run "
                   "--inbound-policy loopback");
}

TEST_CASE("hint: a pod-IP-only server under the loopback policy says so", "[hint]") {
  const hints::Context context{.policy = "loopback", .pod_ips = {ip("10.0.0.5")}};
  const auto h = hints::explain(ConnectionEnd::upstream_connect_failed, refused, ep("127.0.0.1", 8080), 8080,
                                {listener("10.0.0.5", 8080)}, context);
  REQUIRE(h);
  CHECK(h->reason == hints::Reason::pod_ip_only);
  CHECK(h->text == "8080 listens on 10.0.0.5 only; the loopback policy dials 127.0.0.1:8080: bind 0.0.0.0 or run "
                   "--inbound-policy pod-ip");
}

TEST_CASE("hint: a default endpoint's port names the flag, not the policy", "[hint]") {
  const hints::Context context{.policy = "pod-ip", .default_endpoint_ports = {80}, .pod_ips = {ip("10.0.0.5")}};
  const auto h = hints::explain(ConnectionEnd::upstream_connect_failed, refused, ep("10.0.0.5", 8080), 80,
                                {listener("127.0.0.1", 8080)}, context);
  REQUIRE(h);
  CHECK(h->text == "8080 listens on 127.0.0.1 only; --inbound-default-endpoint 80 dials 10.0.0.5:8080: bind 0.0.0.0 or "
                   "change --inbound-default-endpoint");
}

TEST_CASE("hint: nothing listening, a v6-only wildcard, a listener that just closed", "[hint]") {
  const hints::Context context{.policy = "pod-ip", .pod_ips = {ip("10.0.0.5")}};
  const auto nothing = hints::explain(ConnectionEnd::upstream_connect_failed, refused, ep("10.0.0.5", 8080), 8080,
                                      {listener("127.0.0.1", 8081)}, context);
  REQUIRE(nothing);
  CHECK(nothing->reason == hints::Reason::nothing_listens);
  CHECK(nothing->text == "nothing listens on 8080");
  const auto v6 = hints::explain(ConnectionEnd::upstream_connect_failed, refused, ep("10.0.0.5", 8080), 8080,
                                 {listener("::", 8080, true)}, context);
  REQUIRE(v6);
  CHECK(v6->reason == hints::Reason::bound_elsewhere);
  CHECK(v6->text == "8080 listens on [::] (every IPv6 address; IPV6_V6ONLY keeps IPv4 out); the pod-ip policy dials "
                    "10.0.0.5:8080: no listener accepts that");
  const auto gone = hints::explain(ConnectionEnd::upstream_connect_failed, refused, ep("10.0.0.5", 8080), 8080,
                                   {listener("0.0.0.0", 8080)}, context);
  REQUIRE(gone);
  CHECK(gone->reason == hints::Reason::listener_gone);
}

TEST_CASE("hint: a timeout says so, and names a listener that would have accepted", "[hint]") {
  const hints::Context context{.policy = "pod-ip", .pod_ips = {ip("10.0.0.5")}};
  const auto plain = hints::explain(ConnectionEnd::upstream_connect_timeout, {}, ep("10.0.0.5", 8080), 8080, {}, context);
  REQUIRE(plain);
  CHECK(plain->reason == hints::Reason::timed_out);
  CHECK(plain->text == "the connect timed out");
  const auto listening = hints::explain(ConnectionEnd::upstream_connect_timeout, {}, ep("10.0.0.5", 8080), 8080,
                                        {listener("0.0.0.0", 8080)}, context);
  REQUIRE(listening);
  CHECK(listening->text == "the connect timed out; 8080 listens on 0.0.0.0, which accepts 10.0.0.5:8080: something "
                           "drops the SYN (a firewall rule, or a full accept queue)");
}

TEST_CASE("hint: other failures have none", "[hint]") {
  const hints::Context context{};
  const std::vector<binds::TcpListener> none;
  CHECK_FALSE(hints::explain(ConnectionEnd::completed, {}, ep("10.0.0.5", 8080), 8080, none, context));
  CHECK_FALSE(hints::explain(ConnectionEnd::upstream_connect_failed, std::error_code(EADDRNOTAVAIL, asio::error::get_system_category()),
                             ep("10.0.0.5", 8080), 8080, none, context));
  CHECK_FALSE(hints::explain(ConnectionEnd::upstream_reset, refused, ep("10.0.0.5", 8080), 8080, none, context));
}
