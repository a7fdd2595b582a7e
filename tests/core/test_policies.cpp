// Upstream policies: the address and source each one picks, IPv4 and IPv6, with overrides; the concepts.
#include <catch2/catch.hpp>

#include <podproxy/podproxy.hpp>

using namespace podproxy;
using asio::ip::make_address;
using asio::ip::tcp;

namespace {

Downstream arriving_at(const char* original, unsigned short port) {
  const auto address = make_address(original);
  const auto peer = address.is_v6() ? make_address("fd00::9") : make_address("10.0.0.9");
  return {.peer = {peer, 51234}, .local = {address, 15006}, .original_destination = {address, port}};
}

// Archetypes: the least a model must have, and near misses a concept must reject.
struct PolicyArchetype {
  std::optional<UpstreamTarget> upstream_for(const Downstream&) const { return std::nullopt; }
};
struct PolicyNonConst {
  std::optional<UpstreamTarget> upstream_for(const Downstream&) { return std::nullopt; }
};
struct PolicyWrongResult {
  tcp::endpoint upstream_for(const Downstream&) const { return {}; }
};
struct PolicyNotCopyable {
  PolicyNotCopyable() = default;
  PolicyNotCopyable(const PolicyNotCopyable&) = delete;
  std::optional<UpstreamTarget> upstream_for(const Downstream&) const { return std::nullopt; }
};

struct PumpArchetype {
  PumpStep transfer(int, int) { return {}; }
  void discard() noexcept {}
};
struct RelayArchetype {
  using pump_type = PumpArchetype;
  pump_type make_pump() const { return {}; }
};
struct RelayNonConst {  // make_pump is not const: relays are shared by every connection
  using pump_type = PumpArchetype;
  pump_type make_pump() { return {}; }
};
struct PumpWrongResult {
  std::size_t transfer(int, int) { return 0; }
  void discard() noexcept {}
};
struct RelayWrongStep {
  using pump_type = PumpWrongResult;
  pump_type make_pump() const { return {}; }
};
struct PumpThrowingDiscard {
  PumpStep transfer(int, int) { return {}; }
  void discard() {}
};
struct RelayThrowingDiscard {  // discard runs while a connection is torn down: it must not throw
  using pump_type = PumpThrowingDiscard;
  pump_type make_pump() const { return {}; }
};

struct SourceArchetype {
  tcp::endpoint original_destination(int, const tcp::endpoint& local) const { return local; }
};
struct SourceWrongArguments {
  tcp::endpoint original_destination(const tcp::endpoint& local) const { return local; }
};

struct AcceptorOptionsArchetype {
  std::chrono::milliseconds overload_backoff{100};
};
struct AcceptorArchetype {
  asio::any_io_executor get_executor() const { return {}; }
  asio::any_io_executor context_executor() const { return {}; }
  int native_handle() const { return -1; }
  tcp::endpoint local_endpoint() const { return {}; }
  AcceptorOptionsArchetype options() const { return {}; }
  template <class Handler>
  AcceptStatus accept_some(Handler&&) { return AcceptStatus::closed; }
  template <class Handler>
  asio::awaitable<void> run(Handler) { co_return; }
  void close() {}
};
struct AcceptorWithoutRun {
  asio::any_io_executor get_executor() const { return {}; }
  asio::any_io_executor context_executor() const { return {}; }
  int native_handle() const { return -1; }
  tcp::endpoint local_endpoint() const { return {}; }
  AcceptorOptionsArchetype options() const { return {}; }
  template <class Handler>
  AcceptStatus accept_some(Handler&&) { return AcceptStatus::closed; }
  void close() {}
};

}  // namespace

TEST_CASE("concepts: archetypes are models and near misses are rejected", "[concepts]") {
  STATIC_REQUIRE(concepts::UpstreamPolicy<PolicyArchetype>);
  STATIC_REQUIRE_FALSE(concepts::UpstreamPolicy<PolicyNonConst>);
  STATIC_REQUIRE_FALSE(concepts::UpstreamPolicy<PolicyWrongResult>);
  STATIC_REQUIRE_FALSE(concepts::UpstreamPolicy<PolicyNotCopyable>);
  STATIC_REQUIRE_FALSE(concepts::UpstreamPolicy<int>);
  STATIC_REQUIRE(concepts::UpstreamPolicy<PortOverridePolicy<PolicyArchetype>>);
  STATIC_REQUIRE(concepts::UpstreamPolicy<OriginalSourcePolicy<PortOverridePolicy<PodIpPolicy>>>);

  STATIC_REQUIRE(concepts::Relay<RelayArchetype>);
  STATIC_REQUIRE_FALSE(concepts::Relay<RelayNonConst>);
  STATIC_REQUIRE_FALSE(concepts::Relay<RelayWrongStep>);
  STATIC_REQUIRE_FALSE(concepts::Relay<RelayThrowingDiscard>);
  STATIC_REQUIRE(concepts::Relay<SpliceRelay>);
  STATIC_REQUIRE(concepts::Relay<BufferedRelay>);
  STATIC_REQUIRE_FALSE(concepts::Relay<PolicyArchetype>);

  STATIC_REQUIRE(concepts::DestinationSource<SourceArchetype>);
  STATIC_REQUIRE(concepts::DestinationSource<RedirectedOrLocal>);
  STATIC_REQUIRE(concepts::DestinationSource<LocalAddress>);
  STATIC_REQUIRE_FALSE(concepts::DestinationSource<SourceWrongArguments>);

  STATIC_REQUIRE(concepts::ConnectionAcceptor<AcceptorArchetype>);
  STATIC_REQUIRE(concepts::ConnectionAcceptor<Acceptor<LocalAddress>>);
  STATIC_REQUIRE_FALSE(concepts::ConnectionAcceptor<AcceptorWithoutRun>);
  STATIC_REQUIRE_FALSE(concepts::ConnectionAcceptor<SourceArchetype>);
}

TEST_CASE("policy: LoopbackPolicy dials loopback on the original port, with no source bind", "[policy]") {
  const auto v4 = LoopbackPolicy{}.upstream_for(arriving_at("10.1.2.3", 8080));
  REQUIRE(v4);
  CHECK(v4->endpoint == tcp::endpoint(make_address("127.0.0.1"), 8080));
  CHECK_FALSE(v4->source);
  CHECK_FALSE(v4->transparent);

  const auto v6 = LoopbackPolicy{}.upstream_for(arriving_at("fd00::5", 9090));
  REQUIRE(v6);
  CHECK(v6->endpoint == tcp::endpoint(make_address("::1"), 9090));
  CHECK_FALSE(v6->source);
}

TEST_CASE("policy: PodIpPolicy dials the original destination from 127.0.0.6 or ::6", "[policy]") {
  const auto v4 = PodIpPolicy{}.upstream_for(arriving_at("10.1.2.3", 8080));
  REQUIRE(v4);
  CHECK(v4->endpoint == tcp::endpoint(make_address("10.1.2.3"), 8080));
  CHECK(v4->source == make_address("127.0.0.6"));

  const auto v6 = PodIpPolicy{}.upstream_for(arriving_at("fd00::5", 9090));
  REQUIRE(v6);
  CHECK(v6->endpoint == tcp::endpoint(make_address("fd00::5"), 9090));
  CHECK(v6->source == make_address("::6"));

  SECTION("the source is configurable, or off") {
    const PodIpPolicy custom{.source_v4 = make_address("127.0.0.7"), .source_v6 = std::nullopt};
    CHECK(custom.upstream_for(arriving_at("10.1.2.3", 80))->source == make_address("127.0.0.7"));
    CHECK_FALSE(custom.upstream_for(arriving_at("fd00::5", 80))->source);
    CHECK_FALSE(PodIpPolicy::without_source_bind().upstream_for(arriving_at("10.1.2.3", 80))->source);
  }
}

TEST_CASE("policy: FixedPolicy dials its target whatever the client dialed", "[policy]") {
  const FixedPolicy fixed{{.endpoint = {make_address("192.0.2.1"), 7000}, .source = make_address("127.0.0.6")}};
  CHECK(fixed.upstream_for(arriving_at("10.1.2.3", 8080)) == fixed.target);
  CHECK(fixed.upstream_for(arriving_at("fd00::5", 1)) == fixed.target);
}

TEST_CASE("policy: PortOverridePolicy sends overridden ports to their endpoint and the rest to the inner policy",
          "[policy]") {
  const UpstreamTarget metrics{.endpoint = {make_address("127.0.0.1"), 9100}};
  const UpstreamTarget admin{.endpoint = {make_address("::1"), 7000}};
  const PortOverridePolicy<PodIpPolicy> policy(PodIpPolicy{}, {{9090, metrics}, {8443, admin}});

  CHECK(policy.upstream_for(arriving_at("10.1.2.3", 9090)) == metrics);
  CHECK(policy.upstream_for(arriving_at("fd00::5", 8443)) == admin);
  const auto other = policy.upstream_for(arriving_at("10.1.2.3", 8080));
  REQUIRE(other);
  CHECK(other->endpoint == tcp::endpoint(make_address("10.1.2.3"), 8080));
  CHECK(other->source == make_address("127.0.0.6"));

  const PortOverridePolicy<LoopbackPolicy> on_loopback(LoopbackPolicy{}, {{8080, metrics}});
  CHECK(on_loopback.upstream_for(arriving_at("fd00::5", 8080)) == metrics);
  CHECK(on_loopback.upstream_for(arriving_at("fd00::5", 8081))->endpoint == tcp::endpoint(make_address("::1"), 8081));

  CHECK_THROWS_WITH((PortOverridePolicy<PodIpPolicy>(PodIpPolicy{}, {{80, metrics}, {80, admin}})),
                    Catch::Contains("port 80"));
}

TEST_CASE("policy: OriginalSourcePolicy keeps the inner upstream and binds the client's own address", "[policy]") {
  const OriginalSourcePolicy<PodIpPolicy> policy(PodIpPolicy{});
  const auto downstream = arriving_at("10.1.2.3", 8080);
  const auto target = policy.upstream_for(downstream);
  REQUIRE(target);
  CHECK(target->endpoint == downstream.original_destination);
  CHECK(target->source == downstream.peer.address());
  CHECK(target->transparent);
}

TEST_CASE("policy: response flags read as Envoy's", "[record]") {
  CHECK(response_flags(ConnectionEnd::upstream_connect_failed) == "UF,URX");
  CHECK(response_flags(ConnectionEnd::upstream_connect_timeout) == "UF,URX");  // as Envoy: to_string keeps the difference
  CHECK(to_string(ConnectionEnd::upstream_connect_timeout) == "upstream_connect_timeout");
  CHECK(response_flags(ConnectionEnd::completed) == "-");
  CHECK(to_string(ConnectionEnd::loop_refused) == "loop_refused");
}

TEST_CASE("downstream: a client off loopback asking for a loopback address crosses into loopback, in either "
          "family and in the IPv4-mapped form", "[record]") {
  const auto at = [](const char* peer, const char* destination) {
    return Downstream{.peer = {make_address(peer), 40000},
                      .local = {make_address("0.0.0.0"), 15006},
                      .original_destination = {make_address(destination), 9001}};
  };
  CHECK(crosses_into_loopback(at("10.0.0.9", "127.0.0.1")));
  CHECK(crosses_into_loopback(at("10.0.0.9", "127.3.2.1")));
  CHECK(crosses_into_loopback(at("fd00::9", "::1")));
  CHECK(crosses_into_loopback(at("::ffff:10.0.0.9", "::ffff:127.0.0.1")));
  CHECK(crosses_into_loopback(at("fd00::9", "::ffff:127.0.0.1")));
  CHECK_FALSE(crosses_into_loopback(at("127.0.0.1", "127.0.0.1")));
  CHECK_FALSE(crosses_into_loopback(at("127.0.0.6", "127.0.0.1")));
  CHECK_FALSE(crosses_into_loopback(at("::ffff:127.0.0.1", "127.0.0.1")));
  CHECK_FALSE(crosses_into_loopback(at("::1", "::1")));
  CHECK_FALSE(crosses_into_loopback(at("10.0.0.9", "10.0.0.5")));
  CHECK_FALSE(crosses_into_loopback(at("10.0.0.9", "::ffff:10.0.0.5")));
  CHECK(to_string(ConnectionEnd::loopback_refused) == "loopback_refused");
  CHECK(response_flags(ConnectionEnd::loopback_refused) == "NR");
  CHECK(is_loopback(make_address("::ffff:127.0.0.1")));
  CHECK(unmapped(make_address("::ffff:10.1.2.3")) == make_address("10.1.2.3"));
  CHECK(unmapped(make_address("fd00::1")) == make_address("fd00::1"));
}

TEST_CASE("endpoint text: printed and parsed both ways, IPv6 in brackets, IPv4-mapped as IPv4", "[record]") {
  CHECK(to_text({make_address("10.0.0.5"), 80}) == "10.0.0.5:80");
  CHECK(to_text({make_address("fd00::5"), 8080}) == "[fd00::5]:8080");
  CHECK(to_text({make_address("::ffff:10.0.0.5"), 80}) == "10.0.0.5:80");
  for (const char* text : {"10.0.0.5:80", "[fd00::5]:8080", "0.0.0.0:0", "[::]:65535"}) {
    const auto parsed = parse_endpoint(text);
    REQUIRE(parsed);
    CHECK(to_text(*parsed) == text);
  }
  for (const char* text : {"", "10.0.0.5", "10.0.0.5:", ":80", "fd00::5:80", "[fd00::5]", "host:80", "10.0.0.5:65536",
                           "10.0.0.5:8o", "10.0.0.5:-1", "[10.0.0.5:80"}) {
    INFO(text);
    CHECK_FALSE(parse_endpoint(text));
  }
}
