// Unit tests of init's rule generation and of the --noflush transactions that apply and remove it.
#include "capture_rules.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

using namespace sidecar::capture;

namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

std::size_t line_index(const std::string& text, const std::string& line) {
  const auto at = text.find("\n" + line + "\n");
  REQUIRE(at != std::string::npos);
  return at;
}

}  // namespace

TEST_CASE("capture rules: redirect mode mirrors istio-iptables' nat chains in order", "[init]") {
  const auto text = restore_text(capture_rules(CaptureConfig{}, Family::v4));
  CHECK(text.rfind("*nat\n", 0) == 0);
  CHECK(text.find("*mangle") == std::string::npos);
  CHECK(has_line(text, "-A PREROUTING -p tcp -j PODPROXY_INBOUND"));
  CHECK(has_line(text, "-A OUTPUT -p tcp -j PODPROXY_OUTPUT"));
  CHECK(has_line(text, "-A PODPROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006"));
  CHECK(has_line(text, "-A PODPROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15001"));
  for (const int port : {15000, 15001, 15006, 15020, 15021, 15090}) {
    CHECK(has_line(text, "-A PODPROXY_INBOUND -p tcp --dport " + std::to_string(port) + " -j RETURN"));
  }
  CHECK(has_line(text, "-A PODPROXY_INBOUND -p tcp -j PODPROXY_IN_REDIRECT"));
  // Istio's outbound rules 1-6, in this order.
  const std::vector<std::string> order{
      "-A PODPROXY_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
      "-A PODPROXY_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j PODPROXY_IN_REDIRECT",
      "-A PODPROXY_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
      "-A PODPROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN",
      "-A PODPROXY_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j PODPROXY_IN_REDIRECT",
      "-A PODPROXY_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
      "-A PODPROXY_OUTPUT -m owner --gid-owner 1337 -j RETURN",
      "-A PODPROXY_OUTPUT -d 127.0.0.1/32 -j RETURN",
      "-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT",
  };
  for (std::size_t i = 1; i < order.size(); ++i) {
    INFO(order[i]);
    CHECK(line_index(text, order[i - 1]) < line_index(text, order[i]));
  }
}

TEST_CASE("capture rules: IPv6 uses ::6 and ::1 where IPv4 uses 127.0.0.6 and 127.0.0.1", "[init]") {
  const auto text = restore_text(capture_rules(CaptureConfig{}, Family::v6));
  CHECK(has_line(text, "-A PODPROXY_OUTPUT -o lo -s ::6/128 -j RETURN"));
  CHECK(has_line(text, "-A PODPROXY_OUTPUT -d ::1/128 -j RETURN"));
  CHECK(text.find("127.0.0.1") == std::string::npos);
  CHECK(text.find("127.0.0.6") == std::string::npos);
}

TEST_CASE("capture rules: inbound packets addressed to loopback are left to the kernel, first thing, in both "
          "modes and families", "[init]") {
  for (const auto mode : {Mode::redirect, Mode::tproxy}) {
    CaptureConfig config;
    config.mode = mode;
    const auto table = mode == Mode::redirect ? "nat" : "mangle";
    for (const auto& [family, ranges] :
         {std::pair{Family::v4, std::vector<std::string>{"127.0.0.0/8"}},
          std::pair{Family::v6, std::vector<std::string>{"::1/128", "::ffff:127.0.0.0/104"}}}) {
      const auto set = capture_rules(config, family);
      const auto inbound = std::find_if(set.tables.begin(), set.tables.end(), [&](const auto& t) { return t.name == table; });
      REQUIRE(inbound != set.tables.end());
      std::vector<std::string> chain;
      for (const auto& rule : inbound->rules) {
        if (rule.rfind("-A PODPROXY_INBOUND ", 0) == 0) chain.push_back(rule);
      }
      INFO(restore_text(set));
      REQUIRE(chain.size() > ranges.size());
      for (std::size_t i = 0; i < ranges.size(); ++i) {
        CHECK(chain[i] == "-A PODPROXY_INBOUND -p tcp ! -i lo -d " + ranges[i] + " -j RETURN");
      }
    }
  }
}

TEST_CASE("capture rules: flags change the ports and ids and exclusions and the inbound port list", "[init]") {
  CaptureConfig config;
  config.inbound_port = 16006;
  config.outbound_port = 16001;
  config.inbound_ports = std::vector<std::uint16_t>{9090, 8080, 8080};
  config.exclude_inbound_ports = {22};
  config.exclude_outbound_ports = {5432, 443};
  config.proxy_uid = 2000;
  config.proxy_gid = 3000;
  config.proxy_mark = 0x10;
  const auto text = restore_text(capture_rules(config, Family::v4));
  CHECK(has_line(text, "-A PODPROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006"));
  CHECK(has_line(text, "-A PODPROXY_REDIRECT -p tcp -j REDIRECT --to-ports 16001"));
  CHECK(has_line(text, "-A PODPROXY_INBOUND -p tcp --dport 16006 -j RETURN"));
  CHECK(has_line(text, "-A PODPROXY_INBOUND -p tcp --dport 22 -j RETURN"));
  CHECK(has_line(text, "-A PODPROXY_INBOUND -p tcp --dport 8080 -j PODPROXY_IN_REDIRECT"));
  CHECK(has_line(text, "-A PODPROXY_INBOUND -p tcp --dport 9090 -j PODPROXY_IN_REDIRECT"));
  CHECK(!has_line(text, "-A PODPROXY_INBOUND -p tcp -j PODPROXY_IN_REDIRECT"));
  CHECK(text.find("--dport 8080 -j PODPROXY_IN_REDIRECT") == text.rfind("--dport 8080 -j PODPROXY_IN_REDIRECT"));
  CHECK(has_line(text, "-A PODPROXY_OUTPUT -p tcp --dport 443 -j RETURN"));
  CHECK(has_line(text, "-A PODPROXY_OUTPUT -p tcp --dport 5432 -j RETURN"));
  CHECK(has_line(text, "-A PODPROXY_OUTPUT -m owner --uid-owner 2000 -j RETURN"));
  CHECK(has_line(text, "-A PODPROXY_OUTPUT -m owner --gid-owner 3000 -j RETURN"));
  // The mark exemption comes before the owner rules (a marking proxy may run as any uid: rule 3 would
  // otherwise let its calls to its own pod bypass the inbound listener).
  CHECK(line_index(text, "-A PODPROXY_OUTPUT -m mark --mark 16 -j RETURN") <
        line_index(text, "-A PODPROXY_OUTPUT -o lo -m owner ! --uid-owner 2000 -j RETURN"));
  CHECK(has_line(text, "-A PODPROXY_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark --mark 16 -j PODPROXY_IN_REDIRECT"));
}

TEST_CASE("capture rules: without owner rules the mark alone tells the proxy apart, in Istio's order", "[init]") {
  // A user namespace mapping only uid 0: the proxy and the app share it, and an unmapped uid is refused.
  for (const auto mode : {Mode::redirect, Mode::tproxy}) {
    CaptureConfig config;
    config.mode = mode;
    config.proxy_uid = 0;
    config.proxy_gid = 0;
    config.proxy_mark = 0x10;
    config.owner_rules = false;
    const auto text = restore_text(capture_rules(config, Family::v4));
    INFO(text);
    CHECK(text.find("-m owner") == std::string::npos);
    const std::vector<std::string> order{
        "-A PODPROXY_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
        "-A PODPROXY_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark --mark 16 -j PODPROXY_IN_REDIRECT",
        "-A PODPROXY_OUTPUT -m mark --mark 16 -j RETURN",
        "-A PODPROXY_OUTPUT -o lo -j RETURN",  // rule 3: the app calling its own pod IP
        "-A PODPROXY_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT",
    };
    for (std::size_t i = 1; i < order.size(); ++i) {
      INFO(order[i]);
      CHECK(line_index(text, order[i - 1]) < line_index(text, order[i]));
    }
  }
  // With owner rules (the default) the unconditional lo RETURN would let the proxy's own calls escape.
  CaptureConfig with_owners;
  with_owners.proxy_mark = 0x10;
  CHECK(!has_line(restore_text(capture_rules(with_owners, Family::v4)), "-A PODPROXY_OUTPUT -o lo -j RETURN"));
}

TEST_CASE("capture rules: an empty inbound port list captures nothing inbound", "[init]") {
  CaptureConfig config;
  config.inbound_ports = std::vector<std::uint16_t>{};
  const auto text = restore_text(capture_rules(config, Family::v4));
  CHECK(text.find("-A PODPROXY_INBOUND -p tcp -j PODPROXY_IN_REDIRECT") == std::string::npos);
  CHECK(text.find(" -j PODPROXY_IN_REDIRECT\n-A PODPROXY_OUTPUT -o lo -s") == std::string::npos);
  // Only the outbound rule 2 still sends anything to the inbound listener.
  std::size_t to_inbound = 0;
  for (std::size_t at = text.find("-j PODPROXY_IN_REDIRECT"); at != std::string::npos;
       at = text.find("-j PODPROXY_IN_REDIRECT", at + 1)) {
    ++to_inbound;
  }
  CHECK(to_inbound == 2);  // uid and gid variants of rule 2
}

TEST_CASE("capture rules: TPROXY mode captures inbound in mangle as Istio does", "[init]") {
  CaptureConfig config;
  config.mode = Mode::tproxy;
  const auto set = capture_rules(config, Family::v4);
  const auto text = restore_text(set);
  CHECK(text.rfind("*mangle\n", 0) == 0);
  CHECK(has_line(text, "-A PREROUTING -p tcp -j PODPROXY_PREROUTING"));
  CHECK(has_line(text, "-A PODPROXY_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --on-port 15006 --tproxy-mark 1337/0xffffffff"));
  CHECK(has_line(text, "-A PODPROXY_DIVERT -j MARK --set-mark 1337"));
  CHECK(has_line(text, "-A PODPROXY_PREROUTING -p tcp -m mark --mark 1337 -j CONNMARK --save-mark"));
  CHECK(has_line(text, "-A PODPROXY_OUTPUT -p tcp -m connmark --mark 1337 -j CONNMARK --restore-mark"));
  CHECK(has_line(text, "-A PODPROXY_INBOUND -p tcp -s 127.0.0.6/32 -i lo -j RETURN"));
  CHECK(line_index(text, "-A PODPROXY_INBOUND -p tcp --dport 15021 -j RETURN") <
        line_index(text, "-A PODPROXY_INBOUND -p tcp -j PODPROXY_TPROXY"));
  // Deliveries from the client's address carry the TPROXY mark: they pass rule 2 instead of looping.
  CHECK(line_index(text, "-A PODPROXY_OUTPUT -o lo -m mark --mark 1337 -j RETURN") <
        line_index(text, "-A PODPROXY_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j PODPROXY_IN_REDIRECT"));
  CHECK(restore_text(capture_rules(CaptureConfig{}, Family::v4)).find("--mark 1337") == std::string::npos);
  // nat keeps outbound capture but has no inbound hook in this mode.
  CHECK(!has_line(text, "-A PREROUTING -p tcp -j PODPROXY_INBOUND"));
  CHECK(has_line(text, "-A OUTPUT -p tcp -j PODPROXY_OUTPUT"));
  const auto v6 = restore_text(capture_rules(config, Family::v6));
  CHECK(has_line(v6, "-A PODPROXY_TPROXY ! -d ::1/128 -p tcp -j TPROXY --on-port 15006 --tproxy-mark 1337/0xffffffff"));
}

TEST_CASE("saved state: only PODPROXY_ chains and the rules jumping to them are ours", "[init]") {
  const std::string saved = "# Generated by iptables-save\n"
                            "*nat\n"
                            ":PREROUTING ACCEPT [0:0]\n"
                            ":OUTPUT ACCEPT [0:0]\n"
                            ":USER_CHAIN - [0:0]\n"
                            ":PODPROXY_OUTPUT - [0:0]\n"
                            ":PODPROXY_OLD - [0:0]\n"
                            "-A OUTPUT -p tcp -m tcp --dport 9999 -j RETURN\n"
                            "-A OUTPUT -p tcp -j PODPROXY_OUTPUT\n"
                            "-A USER_CHAIN -g PODPROXY_OLD\n"
                            "-A PODPROXY_OUTPUT -j PODPROXY_OLD\n"
                            "COMMIT\n"
                            "*filter\n"
                            ":INPUT ACCEPT [0:0]\n"
                            "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"
                            "COMMIT\n";
  const auto state = parse_saved(saved);
  CHECK(state.has_chain("nat", "PODPROXY_OUTPUT"));
  CHECK(state.has_chain("nat", "PODPROXY_OLD"));
  CHECK_FALSE(state.has_chain("nat", "USER_CHAIN"));
  CHECK_FALSE(state.has_chain("filter", "PODPROXY_OUTPUT"));
  REQUIRE(state.tables.at("nat").hooks.size() == 2);
  CHECK(state.tables.at("nat").hooks[0] == "-A OUTPUT -p tcp -j PODPROXY_OUTPUT");
  CHECK(state.tables.at("nat").hooks[1] == "-A USER_CHAIN -g PODPROXY_OLD");
  CHECK(state.tables.count("filter") == 0);

  SECTION("applying keeps an existing hook in place, drops stale ones and chains no longer wanted") {
    const auto tx = apply_transaction(capture_rules(CaptureConfig{}, Family::v4), state);
    CHECK(has_line(tx, ":PODPROXY_OUTPUT - [0:0]"));
    CHECK(!has_line(tx, "-A OUTPUT -p tcp -j PODPROXY_OUTPUT"));  // already there: not appended twice
    CHECK(has_line(tx, "-A PREROUTING -p tcp -j PODPROXY_INBOUND"));
    CHECK(has_line(tx, "-D USER_CHAIN -g PODPROXY_OLD"));
    CHECK(line_index(tx, "-F PODPROXY_OLD") < line_index(tx, "-X PODPROXY_OLD"));
    CHECK(tx.find("9999") == std::string::npos);
    CHECK(tx.find("*filter") == std::string::npos);
  }
  SECTION("cleaning deletes every hook and chain of ours and nothing else") {
    const auto tx = clean_transaction(state);
    CHECK(tx == "*nat\n"
                "-D OUTPUT -p tcp -j PODPROXY_OUTPUT\n"
                "-D USER_CHAIN -g PODPROXY_OLD\n"
                "-F PODPROXY_OUTPUT\n-F PODPROXY_OLD\n"
                "-X PODPROXY_OUTPUT\n-X PODPROXY_OLD\n"
                "COMMIT\n");
  }
}

TEST_CASE("saved state: cleaning a namespace without our rules does nothing", "[init]") {
  const auto state = parse_saved("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j RETURN\nCOMMIT\n");
  CHECK(state.empty());
  CHECK(clean_transaction(state).empty());
}

TEST_CASE("markers: an added marker is declared as an empty chain", "[init]") {
  auto set = capture_rules(CaptureConfig{}, Family::v6);
  add_marker(set, "nat", "PODPROXY_ADDED_LO6");
  CHECK(has_line(restore_text(set), ":PODPROXY_ADDED_LO6 - [0:0]"));
  RuleSet empty;
  add_marker(empty, "nat", "PODPROXY_ADDED_RULE");
  CHECK(restore_text(empty) == "*nat\n:PODPROXY_ADDED_RULE - [0:0]\nCOMMIT\n");
}

TEST_CASE("saved state: which tables exist and whether they live in nf_tables", "[init]") {
  const auto state = parse_saved("# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 00:31:24 2026\n"
                                 "*nat\n:PREROUTING ACCEPT [0:0]\n:PODPROXY_ADDED_TABLE - [0:0]\nCOMMIT\n"
                                 "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
  CHECK(state.nf_tables);
  CHECK(state.existing_tables == std::set<std::string>{"nat", "filter"});
  CHECK(state.has_chain("nat", table_marker));
  CHECK_FALSE(parse_saved("# Generated by iptables-save v1.8.7 on ...\n*nat\nCOMMIT\n").nf_tables);
  CHECK(parse_saved("").existing_tables.empty());
}

TEST_CASE("saved state: our saved rules put back over a changed state restore hooks and contents", "[init]") {
  const auto before = parse_saved("*nat\n:OUTPUT ACCEPT [0:0]\n:PODPROXY_OUTPUT - [0:0]\n"
                                  "-A OUTPUT -p tcp -j PODPROXY_OUTPUT\n"
                                  "-A PODPROXY_OUTPUT -d 127.0.0.1/32 -j RETURN\nCOMMIT\n");
  REQUIRE(before.tables.at("nat").rules == std::vector<std::string>{"-A PODPROXY_OUTPUT -d 127.0.0.1/32 -j RETURN"});
  const auto after = parse_saved("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:PODPROXY_OUTPUT - [0:0]\n"
                                 ":PODPROXY_INBOUND - [0:0]\n-A PREROUTING -p tcp -j PODPROXY_INBOUND\n"
                                 "-A OUTPUT -p tcp -j PODPROXY_OUTPUT\n-A PODPROXY_OUTPUT -j RETURN\nCOMMIT\n");
  const auto tx = apply_transaction(saved_rules(before), after);
  CHECK(tx == "*nat\n"
              ":PODPROXY_OUTPUT - [0:0]\n"
              "-D PREROUTING -p tcp -j PODPROXY_INBOUND\n"
              "-A PODPROXY_OUTPUT -d 127.0.0.1/32 -j RETURN\n"
              "-F PODPROXY_INBOUND\n"
              "-X PODPROXY_INBOUND\n"
              "COMMIT\n");
}

// --- Istio's capture options beyond ports and owners (issue 19): each chain's rules, exactly and in order.

namespace {

/// The rules of `chain` in `table` of `set`, in order ("" if the table is missing).
std::vector<std::string> chain_of(const RuleSet& set, const std::string& table, const std::string& chain) {
  std::vector<std::string> out;
  for (const auto& t : set.tables) {
    if (t.name != table) continue;
    for (const auto& rule : t.rules) {
      if (rule.rfind("-A " + chain + " ", 0) == 0) out.push_back(rule);
    }
  }
  return out;
}

const TableRules* table_of(const RuleSet& set, const std::string& name) {
  for (const auto& t : set.tables) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Cidr v4(std::string text, bool loopback = false) { return {Family::v4, std::move(text), loopback}; }
Cidr v6(std::string text, bool loopback = false) { return {Family::v6, std::move(text), loopback}; }

// Istio's outbound rules 1-5 with the defaults, for the families' loopback and inbound-source addresses.
std::vector<std::string> default_output_head(const std::string& source, const std::string& loopback) {
  std::vector<std::string> head{"-A PODPROXY_OUTPUT -o lo -s " + source + " -j RETURN"};
  for (const std::string kind : {"uid", "gid"}) {
    head.push_back("-A PODPROXY_OUTPUT -o lo ! -d " + loopback + " -p tcp ! --dport 15008 -m owner --" + kind +
                   "-owner 1337 -j PODPROXY_IN_REDIRECT");
    head.push_back("-A PODPROXY_OUTPUT -o lo -m owner ! --" + kind + "-owner 1337 -j RETURN");
    head.push_back("-A PODPROXY_OUTPUT -m owner --" + kind + "-owner 1337 -j RETURN");
  }
  head.push_back("-A PODPROXY_OUTPUT -d " + loopback + " -j RETURN");
  return head;
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_CASE("capture rules: the tunnel port 15008 is left alone inbound and by the proxy's calls to its own pod",
          "[init][istio]") {
  const auto set = capture_rules(CaptureConfig{}, Family::v4);
  const auto inbound = chain_of(set, "nat", "PODPROXY_INBOUND");
  REQUIRE(inbound.size() > 2);
  CHECK(inbound[0] == "-A PODPROXY_INBOUND -p tcp ! -i lo -d 127.0.0.0/8 -j RETURN");
  CHECK(inbound[1] == "-A PODPROXY_INBOUND -p tcp --dport 15008 -j RETURN");
  CHECK(chain_of(set, "nat", "PODPROXY_OUTPUT") ==
        plus(default_output_head("127.0.0.6/32", "127.0.0.1/32"), {"-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT"}));

  SECTION("another tunnel port, and a marking proxy's rule, say it too") {
    CaptureConfig config;
    config.inbound_tunnel_port = 16008;
    config.proxy_mark = 7;
    const auto text = restore_text(capture_rules(config, Family::v6));
    CHECK(has_line(text, "-A PODPROXY_INBOUND -p tcp --dport 16008 -j RETURN"));
    CHECK(has_line(text, "-A PODPROXY_OUTPUT -o lo ! -d ::1/128 -p tcp ! --dport 16008 -m mark --mark 7 -j "
                         "PODPROXY_IN_REDIRECT"));
    CHECK(text.find("15008") == std::string::npos);
  }
  SECTION("none: no rule names a tunnel port") {
    CaptureConfig config;
    config.inbound_tunnel_port = std::nullopt;
    const auto text = restore_text(capture_rules(config, Family::v4));
    CHECK(text.find("15008") == std::string::npos);
    CHECK(has_line(text, "-A PODPROXY_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j PODPROXY_IN_REDIRECT"));
  }
  SECTION("TPROXY mode, as Istio's: the mangle capture does not exempt it") {
    CaptureConfig config;
    config.mode = Mode::tproxy;
    const auto tproxy = capture_rules(config, Family::v4);
    CHECK(chain_of(tproxy, "nat", "PODPROXY_INBOUND").empty());
    for (const auto& rule : chain_of(tproxy, "mangle", "PODPROXY_INBOUND")) CHECK(rule.find("15008") == std::string::npos);
  }
}

TEST_CASE("capture rules: outbound ranges and ports, each family taking its own ranges, in Istio's order",
          "[init][istio]") {
  CaptureConfig config;
  config.outbound_ip_ranges = std::vector<Cidr>{v4("10.0.0.0/8"), v6("fd00::/8"), v4("192.168.0.0/16")};
  config.exclude_outbound_ip_ranges = {v4("10.96.0.0/12"), v6("fd00:96::/32")};
  config.include_outbound_ports = {8443, 443, 443};
  CHECK(chain_of(capture_rules(config, Family::v4), "nat", "PODPROXY_OUTPUT") ==
        plus(default_output_head("127.0.0.6/32", "127.0.0.1/32"),
             {"-A PODPROXY_OUTPUT -d 10.96.0.0/12 -j RETURN",
              "-A PODPROXY_OUTPUT -p tcp --dport 443 -j PODPROXY_REDIRECT",
              "-A PODPROXY_OUTPUT -p tcp --dport 8443 -j PODPROXY_REDIRECT",
              "-A PODPROXY_OUTPUT -d 10.0.0.0/8 -j PODPROXY_REDIRECT",
              "-A PODPROXY_OUTPUT -d 192.168.0.0/16 -j PODPROXY_REDIRECT"}));
  CHECK(chain_of(capture_rules(config, Family::v6), "nat", "PODPROXY_OUTPUT") ==
        plus(default_output_head("::6/128", "::1/128"),
             {"-A PODPROXY_OUTPUT -d fd00:96::/32 -j RETURN",
              "-A PODPROXY_OUTPUT -p tcp --dport 443 -j PODPROXY_REDIRECT",
              "-A PODPROXY_OUTPUT -p tcp --dport 8443 -j PODPROXY_REDIRECT",
              "-A PODPROXY_OUTPUT -d fd00::/8 -j PODPROXY_REDIRECT"}));

  SECTION("'*' with exclusions: the excluded ranges pass, the rest is captured") {
    CaptureConfig all;
    all.exclude_outbound_ip_ranges = {v4("10.96.0.0/12")};
    CHECK(chain_of(capture_rules(all, Family::v4), "nat", "PODPROXY_OUTPUT") ==
          plus(default_output_head("127.0.0.6/32", "127.0.0.1/32"),
               {"-A PODPROXY_OUTPUT -d 10.96.0.0/12 -j RETURN", "-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT"}));
    CHECK(chain_of(capture_rules(all, Family::v6), "nat", "PODPROXY_OUTPUT") ==
          plus(default_output_head("::6/128", "::1/128"), {"-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT"}));
  }
  SECTION("an IPv4-only list captures no IPv6 destination, '' captures none") {
    CaptureConfig only4;
    only4.outbound_ip_ranges = std::vector<Cidr>{v4("10.0.0.0/8")};
    CHECK(chain_of(capture_rules(only4, Family::v6), "nat", "PODPROXY_OUTPUT") == default_output_head("::6/128", "::1/128"));
    CaptureConfig none;
    none.outbound_ip_ranges = std::vector<Cidr>{};
    CHECK(chain_of(capture_rules(none, Family::v4), "nat", "PODPROXY_OUTPUT") ==
          default_output_head("127.0.0.6/32", "127.0.0.1/32"));
  }
  SECTION("an included loopback range keeps the application's calls over lo captured (Istio's HasLoopBackIP)") {
    CaptureConfig lo;
    lo.outbound_ip_ranges = std::vector<Cidr>{v4("127.0.0.0/8", true)};
    const auto v6_rules = chain_of(capture_rules(lo, Family::v6), "nat", "PODPROXY_OUTPUT");
    for (const auto& rule : v6_rules) CHECK(rule.find("! --uid-owner") == std::string::npos);
    for (const auto& rule : v6_rules) CHECK(rule.find("! --gid-owner") == std::string::npos);
    CHECK(v6_rules.size() == default_output_head("::6/128", "::1/128").size() - 2);
  }
}

TEST_CASE("capture rules: excluded interfaces pass first in every chain, both modes", "[init][istio]") {
  CaptureConfig config;
  config.exclude_interfaces = {"eth1", "veth+"};
  const auto redirect = capture_rules(config, Family::v4);
  const auto inbound = chain_of(redirect, "nat", "PODPROXY_INBOUND");
  REQUIRE(inbound.size() > 4);
  CHECK(std::vector<std::string>(inbound.begin(), inbound.begin() + 4) ==
        std::vector<std::string>{"-A PODPROXY_INBOUND -p tcp ! -i lo -d 127.0.0.0/8 -j RETURN",
                                 "-A PODPROXY_INBOUND -i eth1 -j RETURN", "-A PODPROXY_INBOUND -i veth+ -j RETURN",
                                 "-A PODPROXY_INBOUND -p tcp --dport 15008 -j RETURN"});
  CHECK(chain_of(redirect, "nat", "PODPROXY_OUTPUT") ==
        plus({"-A PODPROXY_OUTPUT -o eth1 -j RETURN", "-A PODPROXY_OUTPUT -o veth+ -j RETURN"},
             plus(default_output_head("127.0.0.6/32", "127.0.0.1/32"), {"-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT"})));
  CHECK(table_of(redirect, "mangle") == nullptr);

  config.mode = Mode::tproxy;
  const auto tproxy = capture_rules(config, Family::v6);
  CHECK(chain_of(tproxy, "mangle", "PODPROXY_PREROUTING") ==
        std::vector<std::string>{"-A PODPROXY_PREROUTING -i eth1 -j RETURN", "-A PODPROXY_PREROUTING -i veth+ -j RETURN",
                                 "-A PODPROXY_PREROUTING -p tcp -j PODPROXY_INBOUND",
                                 "-A PODPROXY_PREROUTING -p tcp -m mark --mark 1337 -j CONNMARK --save-mark"});
  const auto mangle_out = chain_of(tproxy, "mangle", "PODPROXY_OUTPUT");
  REQUIRE(mangle_out.size() > 2);
  CHECK(mangle_out[0] == "-A PODPROXY_OUTPUT -o eth1 -j RETURN");
  CHECK(mangle_out[1] == "-A PODPROXY_OUTPUT -o veth+ -j RETURN");
  CHECK(chain_of(tproxy, "nat", "PODPROXY_OUTPUT")[0] == "-A PODPROXY_OUTPUT -o eth1 -j RETURN");
  // No KubeVirt interface: nat has no inbound chain in TPROXY mode.
  CHECK(chain_of(tproxy, "nat", "PODPROXY_INBOUND").empty());
}

TEST_CASE("capture rules: a KubeVirt interface's inbound traffic goes to the outbound listener", "[init][istio]") {
  CaptureConfig config;
  config.kubevirt_interfaces = {"kv0", "kv1"};
  config.exclude_interfaces = {"eth1"};
  const auto all = chain_of(capture_rules(config, Family::v4), "nat", "PODPROXY_INBOUND");
  REQUIRE(all.size() > 6);
  CHECK(std::vector<std::string>(all.begin(), all.begin() + 7) ==
        std::vector<std::string>{"-A PODPROXY_INBOUND -p tcp ! -i lo -d 127.0.0.0/8 -j RETURN",
                                 "-A PODPROXY_INBOUND -i kv0 -j PODPROXY_REDIRECT",
                                 "-A PODPROXY_INBOUND -i kv1 -j PODPROXY_REDIRECT",
                                 "-A PODPROXY_INBOUND -i kv0 -j RETURN", "-A PODPROXY_INBOUND -i kv1 -j RETURN",
                                 "-A PODPROXY_INBOUND -i eth1 -j RETURN",
                                 "-A PODPROXY_INBOUND -p tcp --dport 15008 -j RETURN"});

  SECTION("with included ranges, only those (of the family) are captured from it") {
    config.outbound_ip_ranges = std::vector<Cidr>{v4("10.0.0.0/8"), v6("fd00::/8")};
    const auto ranged = chain_of(capture_rules(config, Family::v6), "nat", "PODPROXY_INBOUND");
    REQUIRE(ranged.size() > 4);
    CHECK(std::vector<std::string>(ranged.begin() + 2, ranged.begin() + 5) ==
          std::vector<std::string>{"-A PODPROXY_INBOUND -i kv0 -d fd00::/8 -j PODPROXY_REDIRECT",
                                   "-A PODPROXY_INBOUND -i kv1 -d fd00::/8 -j PODPROXY_REDIRECT",
                                   "-A PODPROXY_INBOUND -i kv0 -j RETURN"});
  }
  SECTION("TPROXY mode: nat gets an inbound chain holding only the interface rules") {
    config.mode = Mode::tproxy;
    const auto set = capture_rules(config, Family::v4);
    CHECK(chain_of(set, "nat", "PODPROXY_INBOUND") ==
          std::vector<std::string>{"-A PODPROXY_INBOUND -p tcp ! -i lo -d 127.0.0.0/8 -j RETURN",
                                   "-A PODPROXY_INBOUND -i kv0 -j PODPROXY_REDIRECT",
                                   "-A PODPROXY_INBOUND -i kv1 -j PODPROXY_REDIRECT",
                                   "-A PODPROXY_INBOUND -i kv0 -j RETURN", "-A PODPROXY_INBOUND -i kv1 -j RETURN",
                                   "-A PODPROXY_INBOUND -i eth1 -j RETURN"});
    CHECK(has_line(restore_text(set), "-A PREROUTING -p tcp -j PODPROXY_INBOUND"));
  }
}

TEST_CASE("capture rules: owner groups include one rule letting the others pass, exclude one rule each",
          "[init][istio]") {
  const auto head = default_output_head("127.0.0.6/32", "127.0.0.1/32");
  CaptureConfig include;
  include.include_owner_groups = std::vector<std::string>{"java", "202"};
  auto want = head;
  want.insert(want.end() - 1, "-A PODPROXY_OUTPUT -m owner ! --gid-owner java -m owner ! --gid-owner 202 -j RETURN");
  want.push_back("-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT");
  CHECK(chain_of(capture_rules(include, Family::v4), "nat", "PODPROXY_OUTPUT") == want);

  CaptureConfig exclude;
  exclude.exclude_owner_groups = {"java", "202"};
  want = head;
  want.insert(want.end() - 1, {"-A PODPROXY_OUTPUT -m owner --gid-owner java -j RETURN",
                               "-A PODPROXY_OUTPUT -m owner --gid-owner 202 -j RETURN"});
  want.push_back("-A PODPROXY_OUTPUT -j PODPROXY_REDIRECT");
  CHECK(chain_of(capture_rules(exclude, Family::v4), "nat", "PODPROXY_OUTPUT") == want);
}

TEST_CASE("capture rules: --drop-invalid jumps from mangle PREROUTING to a drop chain, off by default",
          "[init][istio]") {
  CHECK(restore_text(capture_rules(CaptureConfig{}, Family::v4)).find("INVALID") == std::string::npos);
  CaptureConfig config;
  config.drop_invalid = true;
  config.exclude_interfaces = {"eth1"};
  const auto redirect = capture_rules(config, Family::v4);
  REQUIRE(redirect.tables.size() == 2);
  const auto* mangle = table_of(redirect, "mangle");
  REQUIRE(mangle != nullptr);
  CHECK(mangle->chains == std::vector<std::string>{"PODPROXY_DROP"});
  CHECK(mangle->hooks == std::vector<std::string>{"-A PREROUTING -m conntrack --ctstate INVALID -j PODPROXY_DROP"});
  // REDIRECT mode: Istio's excluded interfaces have no mangle rule, so their invalid packets drop too.
  CHECK(mangle->rules == std::vector<std::string>{"-A PODPROXY_DROP -j DROP"});

  config.mode = Mode::tproxy;
  const auto tproxy = capture_rules(config, Family::v6);
  const auto* m = table_of(tproxy, "mangle");
  REQUIRE(m != nullptr);
  REQUIRE(!m->hooks.empty());
  CHECK(m->hooks.front() == "-A PREROUTING -m conntrack --ctstate INVALID -j PODPROXY_DROP");
  CHECK(chain_of(tproxy, "mangle", "PODPROXY_DROP") ==
        std::vector<std::string>{"-A PODPROXY_DROP -i eth1 -j RETURN", "-A PODPROXY_DROP -j DROP"});
}
