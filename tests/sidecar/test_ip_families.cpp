// Unit tests of --ip-families and of reading back which families the capture rules capture.
#include "ip_families.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace sidecar;
using sidecar::capture::Family;

TEST_CASE("ip families: --ip-families takes auto, ipv4, ipv6 and dual, and names itself otherwise", "[families]") {
  CHECK(families::parse_choice("--ip-families", "auto") == families::Choice::automatic);
  CHECK(families::parse_choice("--ip-families", "dual") == families::Choice::dual);
  CHECK(families::of_choice(families::Choice::ipv6).v6);
  CHECK_FALSE(families::of_choice(families::Choice::ipv6).v4);
  CHECK_THROWS_WITH(families::parse_choice("--ip-families", "IPv6"), Catch::Contains("--ip-families") &&
                                                                          Catch::Contains("'IPv6'"));
}

TEST_CASE("ip families: a pod's families are those of its addresses", "[families]") {
  const auto set = [](std::vector<std::string> texts) {
    std::vector<asio::ip::address> addresses;
    for (const auto& t : texts) addresses.push_back(asio::ip::make_address(t));
    const auto s = families::of_addresses(addresses);
    return std::pair{s.v4, s.v6};
  };
  CHECK(set({"10.0.0.5"}) == std::pair{true, false});
  CHECK(set({"10.0.0.5", "fd00::5"}) == std::pair{true, true});
  CHECK(set({"2001:db8::5"}) == std::pair{false, true});
  CHECK(set({}) == std::pair{false, false});
}

TEST_CASE("ip families: what init writes reads back as captured, with its ports, in both modes", "[families]") {
  const auto family = GENERATE(Family::v4, Family::v6);
  capture::CaptureConfig config;
  config.inbound_port = 16006;
  config.outbound_port = 16001;
  SECTION("redirect") {
    const auto c = families::capture_of(capture::restore_text(capture::capture_rules(config, family)));
    CHECK(c.captured);
    CHECK(c.inbound_port == std::optional<std::uint16_t>(16006));
    CHECK(c.outbound_port == std::optional<std::uint16_t>(16001));
  }
  SECTION("tproxy") {
    config.mode = capture::Mode::tproxy;
    const auto c = families::capture_of(capture::restore_text(capture::capture_rules(config, family)));
    CHECK(c.captured);
    CHECK(c.inbound_port == std::optional<std::uint16_t>(16006));
  }
}

TEST_CASE("ip families: no hook into our chains is no capture", "[families]") {
  CHECK_FALSE(families::capture_of("").captured);
  // What --clean can leave without nft(8): a table with only init's marker chain.
  CHECK_FALSE(families::capture_of("*nat\n:PREROUTING ACCEPT [0:0]\n:PODPROXY_ADDED_TABLE - [0:0]\nCOMMIT\n").captured);
  // Someone else's rules only.
  CHECK_FALSE(families::capture_of("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp --dport 9999 -j RETURN\nCOMMIT\n").captured);
}
