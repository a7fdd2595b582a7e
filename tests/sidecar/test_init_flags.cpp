// Unit tests of init's parsers for Istio's capture options: ranges, interface names, groups.
#include "init_flags.hpp"

#include <catch2/catch.hpp>

#include <string>

using sidecar::capture::Cidr;
using sidecar::capture::Family;

TEST_CASE("init flags: a range list splits by family, canonical, loopback noted", "[init][istio]") {
  const auto ranges = sidecar::parse_cidr_list("--f", "10.1.2.3/8,fd00::1/8,127.0.0.1/32,::ffff:127.0.0.1/128,::1/128");
  CHECK(ranges == std::vector<Cidr>{{Family::v4, "10.0.0.0/8", false},
                                    {Family::v6, "fd00::/8", false},
                                    {Family::v4, "127.0.0.1/32", true},
                                    {Family::v6, "::ffff:127.0.0.1/128", true},
                                    {Family::v6, "::1/128", true}});
  CHECK(sidecar::parse_cidr_list("--f", "").empty());
  CHECK(!sidecar::parse_cidr_selection("--f", "*"));
  for (const std::string bad : {"10.0.0.0", "10.0.0.0/33", "fd00::/129", "10.0.0.0/8,,fd00::/8", "10.0.0.0/8,",
                                ",10.0.0.0/8", "*", "10.0.0.0/8 ", "host/8", "10.0.0.0/-1"}) {
    INFO(bad);
    CHECK_THROWS_AS(sidecar::parse_cidr_list("--f", bad), CLI::ValidationError);
  }
}

TEST_CASE("init flags: interface names the kernel could have, and no other", "[init][istio]") {
  CHECK(sidecar::parse_interface_list("--f", "eth0,veth+,net1.100,abcdefghijklmno") ==
        std::vector<std::string>{"eth0", "veth+", "net1.100", "abcdefghijklmno"});
  CHECK(sidecar::parse_interface_list("--f", "").empty());
  for (const std::string bad : {"abcdefghijklmnop", "a/b", "a:b", "a b", " eth0", ".", "..", "eth0,,eth1", "eth0,"}) {
    INFO(bad);
    CHECK_THROWS_AS(sidecar::parse_interface_list("--f", bad), CLI::ValidationError);
  }
}

TEST_CASE("init flags: groups are gids or names this system knows", "[init][istio]") {
  CHECK(sidecar::parse_group_list("--f", "0,root,0042") == std::vector<std::string>{"0", "root", "42"});
  for (const std::string bad : {"no-such-group-here", "Root", "-5", "1.5", "4294967295", "0,,1", "root,", "x!"}) {
    INFO(bad);
    CHECK_THROWS_AS(sidecar::parse_group_list("--f", bad), CLI::ValidationError);
  }
}
