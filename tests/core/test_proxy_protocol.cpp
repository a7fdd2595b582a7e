// The PROXY protocol: the parser and writer (every example of HAProxy's doc/proxy-protocol.txt, every
// truncation, the strict refusals), and the proxy reading one from its clients and writing one to its
// upstreams with both relays.
#include "harness.hpp"

#include <mutex>

using namespace podproxy;
using namespace podproxy::test;

namespace {

std::span<const unsigned char> bytes_of(std::string_view text) {
  return {reinterpret_cast<const unsigned char*>(text.data()), text.size()};
}

ProxyParseResult parse(std::string_view text, ProxyProtocolAccept accept = ProxyProtocolAccept::any) {
  return parse_proxy_header(bytes_of(text), accept);
}

/// A v2 header: signature, version/command byte, family/transport byte, then `body` with its length.
std::string v2(unsigned char version_command, unsigned char family_transport, const std::string& body) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h += static_cast<char>(version_command);
  h += static_cast<char>(family_transport);
  h += static_cast<char>(body.size() >> 8);
  h += static_cast<char>(body.size() & 0xFF);
  return h + body;
}

/// The IPv4 address block of 192.0.2.1:56324 -> 198.51.100.7:443.
const std::string v4_block("\xC0\x00\x02\x01\xC6\x33\x64\x07\xDC\x04\x01\xBB", 12);

std::string v6_block() {
  std::string b(36, '\0');
  b[0] = '\x20', b[1] = '\x01', b[2] = '\x0d', b[3] = '\xb8', b[15] = '\x01';    // 2001:db8::1
  b[16] = '\x20', b[17] = '\x01', b[18] = '\x0d', b[19] = '\xb8', b[31] = '\x02';  // 2001:db8::2
  b[32] = '\x04', b[33] = '\xD2', b[34] = '\x00', b[35] = '\x50';                  // 1234, 80
  return b;
}

tcp::endpoint ep(const char* address, std::uint16_t port) { return {asio::ip::make_address(address), port}; }

/// Every proper prefix of a valid header is incomplete; the whole is complete, with or without stream
/// bytes after it, and its length is the header's.
void check_prefixes(const std::string& header) {
  for (std::size_t n = 0; n < header.size(); ++n) {
    INFO("prefix of " << n << " bytes");
    CHECK(parse(header.substr(0, n)).status == ProxyParseStatus::incomplete);
  }
  const auto whole = parse(header);
  REQUIRE(whole.status == ProxyParseStatus::complete);
  CHECK(whole.header.length == header.size());
  const auto followed = parse(header + "GET / HTTP/1.1\r\n\r\n");
  REQUIRE(followed.status == ProxyParseStatus::complete);
  CHECK(followed.header.length == header.size());
}

}  // namespace

TEST_CASE("proxy protocol: the spec's v1 examples parse, and every prefix of them is incomplete",
          "[proxy_protocol]") {
  const std::string tcp4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
  const std::string tcp6 =
      "PROXY TCP6 ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";  // the spec's own shorthand: invalid
  const std::string tcp6_full =
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  const std::string unknown = "PROXY UNKNOWN\r\n";
  const std::string unknown_longest =
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK(unknown_longest.size() == proxy_v1_max_length);
  for (const auto& h : {tcp4, tcp6_full, unknown, unknown_longest}) {
    CAPTURE(h);
    check_prefixes(h);
  }
  CHECK(parse(tcp6).status == ProxyParseStatus::invalid);

  const auto a = parse(tcp4).header;
  CHECK(a.version == ProxyProtocolVersion::v1);
  CHECK(a.source == ep("255.255.255.255", 65535));
  CHECK(a.destination == ep("255.255.255.255", 65535));
  const auto b = parse(tcp6_full).header;
  CHECK(b.source == ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535));
  for (const auto& h : {unknown, unknown_longest}) {
    const auto u = parse(h).header;
    CHECK_FALSE(u.source);
    CHECK_FALSE(u.destination);
    CHECK_FALSE(u.local);
  }
  const auto c = parse("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n").header;
  CHECK(c.source == ep("192.168.0.1", 56324));
  CHECK(c.destination == ep("192.168.0.11", 443));
  CHECK(c.length == 47);
}

TEST_CASE("proxy protocol: a v1 line that is too long, malformed or out of range is invalid", "[proxy_protocol]") {
  const std::string_view bad = GENERATE(as<std::string_view>{},
      "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",        // no such protocol
      "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",        // case matters
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",    // port out of range
      "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",       // leading zero
      "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",       // sign
      "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",       // two spaces
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",       // trailing space
      "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",          // a field missing
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",      // a field too many
      "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",       // leading zero in an octet
      "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",      // octet out of range
      "PROXY TCP4 ::1 ::2 1 2\r\n",                // IPv6 under TCP4
      "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",        // IPv4 under TCP6
      "PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n",       // a scope id
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r",        // CR not followed by LF
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          // LF alone: a binary byte on the line
      "PROXY TCP4\r\n",                            // no addresses
      "PROXY \r\n",                                // no protocol
      "PROXY UNKNOWNX\r\n",                        // not UNKNOWN
      "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",       // two spaces after PROXY
      "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",        // signature case
      "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",         // signature without its space
      "GET / HTTP/1.1\r\n",                        // no header at all: known at the first byte
      "G");
  CAPTURE(bad);
  CHECK(parse(bad).status == ProxyParseStatus::invalid);
}

TEST_CASE("proxy protocol: a v1 line without CRLF within 107 bytes is invalid, however it goes on",
          "[proxy_protocol]") {
  const std::string longest =
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  std::string over = longest.substr(0, longest.size() - 2) + "5\r\n";  // 108 bytes
  CHECK(parse(over).status == ProxyParseStatus::invalid);
  CHECK(parse(over.substr(0, 106)).status == ProxyParseStatus::invalid);  // no CR by index 105
  CHECK(parse(over.substr(0, 105)).status == ProxyParseStatus::incomplete);
  CHECK(parse(std::string("PROXY ") + std::string(4000, 'x')).status == ProxyParseStatus::invalid);
}

TEST_CASE("proxy protocol: v2 headers for IPv4, IPv6, LOCAL, AF_UNSPEC and AF_UNIX, each prefix incomplete",
          "[proxy_protocol]") {
  const std::string inet = v2(0x21, 0x11, v4_block);
  const std::string inet6 = v2(0x21, 0x21, v6_block());
  const std::string local = v2(0x20, 0x00, "");
  const std::string local_with_addresses = v2(0x20, 0x11, v4_block);
  const std::string unspec = v2(0x21, 0x00, "");
  const std::string unix_stream = v2(0x21, 0x31, std::string(216, '/'));
  const std::string udp = v2(0x21, 0x12, v4_block);
  for (const auto& h : {inet, inet6, local, local_with_addresses, unspec, unix_stream, udp}) check_prefixes(h);

  const auto a = parse(inet).header;
  CHECK(a.version == ProxyProtocolVersion::v2);
  CHECK(a.source == ep("192.0.2.1", 56324));
  CHECK(a.destination == ep("198.51.100.7", 443));
  CHECK_FALSE(a.local);
  const auto b = parse(inet6).header;
  CHECK(b.source == ep("2001:db8::1", 1234));
  CHECK(b.destination == ep("2001:db8::2", 80));
  // LOCAL: the connection's own addresses stand, even when an address block is there.
  for (const auto& h : {local, local_with_addresses}) {
    const auto l = parse(h).header;
    CHECK(l.local);
    CHECK_FALSE(l.source);
  }
  // UNSPEC, UNIX, a datagram transport: accepted, the connection's own addresses stand.
  for (const auto& h : {unspec, unix_stream, udp}) {
    const auto u = parse(h).header;
    CHECK_FALSE(u.local);
    CHECK_FALSE(u.source);
    CHECK_FALSE(u.destination);
  }
}

TEST_CASE("proxy protocol: v2 TLVs are skipped when they fill the header exactly, refused when they overrun",
          "[proxy_protocol]") {
  // PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "example.com", a NOOP of 0 bytes, an AWS-style 0xEA TLV.
  const std::string tlvs = std::string("\x01\x00\x02h2", 5) + std::string("\x02\x00\x0b", 3) + "example.com" +
                           std::string("\x04\x00\x00", 3) + std::string("\xEA\x00\x05\x01vpce", 8);
  const std::string good = v2(0x21, 0x11, v4_block + tlvs);
  check_prefixes(good);
  CHECK(parse(good).header.source == ep("192.0.2.1", 56324));
  CHECK(parse(v2(0x20, 0x00, tlvs)).status == ProxyParseStatus::complete);

  // A TLV whose length runs past the header, a TLV header cut short, a length that runs one byte over.
  CHECK(parse(v2(0x21, 0x11, v4_block + std::string("\x01\x00\x09h2", 5))).status == ProxyParseStatus::invalid);
  CHECK(parse(v2(0x21, 0x11, v4_block + std::string("\x01\x00", 2))).status == ProxyParseStatus::invalid);
  CHECK(parse(v2(0x21, 0x11, v4_block + std::string("\x01", 1))).status == ProxyParseStatus::invalid);
  CHECK(parse(v2(0x21, 0x11, v4_block + std::string("\x01\x00\x03h2", 5))).status == ProxyParseStatus::invalid);
}

TEST_CASE("proxy protocol: a v2 header with a bad signature, version, command, family, transport or length is "
          "invalid, and one over the size limit too", "[proxy_protocol]") {
  const std::string good = v2(0x21, 0x11, v4_block);
  for (std::size_t i = 0; i < 12; ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    CAPTURE(i);
    CHECK(parse(bad).status == ProxyParseStatus::invalid);
    CHECK(parse(bad.substr(0, i + 1)).status == ProxyParseStatus::invalid);  // known at that byte
  }
  CHECK(parse(v2(0x11, 0x11, v4_block)).status == ProxyParseStatus::invalid);  // version 1 in binary
  CHECK(parse(v2(0x31, 0x11, v4_block)).status == ProxyParseStatus::invalid);  // version 3
  CHECK(parse(v2(0x22, 0x11, v4_block)).status == ProxyParseStatus::invalid);  // command 2
  CHECK(parse(v2(0x21, 0x41, v4_block)).status == ProxyParseStatus::invalid);  // family 4
  CHECK(parse(v2(0x21, 0x13, v4_block)).status == ProxyParseStatus::invalid);  // transport 3
  CHECK(parse(v2(0x21, 0x11, v4_block).substr(0, 13) + "\x41").status == ProxyParseStatus::invalid);
  // A length shorter than the family's address block.
  CHECK(parse(v2(0x21, 0x11, v4_block.substr(0, 11))).status == ProxyParseStatus::invalid);
  CHECK(parse(v2(0x21, 0x21, v4_block)).status == ProxyParseStatus::invalid);
  CHECK(parse(v2(0x21, 0x31, std::string(215, '/'))).status == ProxyParseStatus::invalid);
  // The size limit: the whole header at most proxy_v2_max_length; refused from its first 16 bytes.
  const std::string padding = std::string("\x04\x00\x00", 3);
  std::string at_limit_body = v4_block + std::string("\x04", 1);
  const std::size_t fill = proxy_v2_max_length - 16 - v4_block.size() - 3;
  at_limit_body += static_cast<char>(fill >> 8);
  at_limit_body += static_cast<char>(fill & 0xFF);
  at_limit_body += std::string(fill, '\0');
  CHECK(parse(v2(0x21, 0x11, at_limit_body)).status == ProxyParseStatus::complete);
  const std::string over = v2(0x21, 0x11, at_limit_body + padding);
  CHECK(parse(over).status == ProxyParseStatus::invalid);
  CHECK(parse(over.substr(0, 16)).status == ProxyParseStatus::invalid);
  CHECK(parse(v2(0x21, 0x11, std::string(65535, '\0')).substr(0, 16)).status == ProxyParseStatus::invalid);
}

TEST_CASE("proxy protocol: a listener that accepts one version refuses the other", "[proxy_protocol]") {
  const std::string one = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
  const std::string two = v2(0x21, 0x11, v4_block);
  CHECK(parse(one, ProxyProtocolAccept::v1).status == ProxyParseStatus::complete);
  CHECK(parse(one, ProxyProtocolAccept::v2).status == ProxyParseStatus::invalid);
  CHECK(parse(two, ProxyProtocolAccept::v2).status == ProxyParseStatus::complete);
  CHECK(parse(two, ProxyProtocolAccept::v1).status == ProxyParseStatus::invalid);
  CHECK(parse(two.substr(0, 1), ProxyProtocolAccept::v1).status == ProxyParseStatus::invalid);
  CHECK(parse(one, ProxyProtocolAccept::off).status == ProxyParseStatus::invalid);
}

TEST_CASE("proxy protocol: what the writer writes parses back to the same addresses, both versions, both "
          "families, mixed and mapped", "[proxy_protocol]") {
  const auto version = GENERATE(ProxyProtocolVersion::v1, ProxyProtocolVersion::v2);
  struct Case {
    tcp::endpoint source, destination, expect_source, expect_destination;
  };
  const std::vector<Case> cases{
      {ep("10.0.0.1", 40000), ep("10.0.0.2", 8080), ep("10.0.0.1", 40000), ep("10.0.0.2", 8080)},
      {ep("0.0.0.0", 0), ep("255.255.255.255", 65535), ep("0.0.0.0", 0), ep("255.255.255.255", 65535)},
      {ep("fd00::1", 1), ep("fd00::2", 2), ep("fd00::1", 1), ep("fd00::2", 2)},
      {ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535), ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
       ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535), ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)},
      // IPv4-mapped is written as IPv4; one IPv4 and one IPv6 both as IPv6.
      {ep("::ffff:10.0.0.1", 5), ep("::ffff:10.0.0.2", 6), ep("10.0.0.1", 5), ep("10.0.0.2", 6)},
      {ep("10.0.0.1", 5), ep("fd00::2", 6), ep("::ffff:10.0.0.1", 5), ep("fd00::2", 6)},
  };
  for (const auto& c : cases) {
    CAPTURE(c.source, c.destination);
    std::array<unsigned char, proxy_header_max_written> out{};
    const std::size_t n = write_proxy_header(version, c.source, c.destination, out);
    REQUIRE(n > 0);
    CHECK(n <= (version == ProxyProtocolVersion::v1 ? proxy_v1_max_length : 52u));
    const auto back = parse_proxy_header(std::span<const unsigned char>(out.data(), n));
    REQUIRE(back.status == ProxyParseStatus::complete);
    CHECK(back.header.version == version);
    CHECK(back.header.length == n);
    CHECK(back.header.source == c.expect_source);
    CHECK(back.header.destination == c.expect_destination);
  }
  std::array<unsigned char, proxy_header_max_written - 1> small{};
  CHECK(write_proxy_header(version, ep("10.0.0.1", 1), ep("10.0.0.2", 2), small) == 0);
  std::array<unsigned char, proxy_header_max_written> out{};
  const std::size_t n = write_proxy_header(ProxyProtocolVersion::v1, ep("192.168.0.1", 56324), ep("192.168.0.11", 443), out);
  CHECK(std::string_view(reinterpret_cast<const char*>(out.data()), n) ==
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
}

namespace {

/// Keeps what each connection sent (all of it, to EOF), then answers `pong\n`.
struct RecordingServer {
  std::mutex mutex;
  std::vector<std::string> received;
  Upstream server;

  explicit RecordingServer(tcp::endpoint where = {asio::ip::make_address("127.0.0.1"), 0})
      : server(where, [this](tcp::socket& s) {
          auto [text, error] = read_to_end(s);
          {
            std::lock_guard lock(mutex);
            received.push_back(text);
          }
          asio::write(s, asio::buffer(std::string_view("pong\n")));
          s.shutdown(tcp::socket::shutdown_send);
        }) {}

  std::vector<std::string> all() {
    std::lock_guard lock(mutex);
    return received;
  }
};

/// Sends `bytes`, half-closes, reads to the end: what came back, or the error.
std::string exchange(const tcp::endpoint& to, std::string_view bytes) {
  asio::io_context io;
  tcp::socket client = connect_client(io, to);
  std::error_code ec;
  asio::write(client, asio::buffer(bytes), ec);
  if (ec) return "error: " + ec.message();
  client.shutdown(tcp::socket::shutdown_send, ec);
  const auto [text, error] = read_to_end(client);
  return error ? "error: " + error.message() : text;
}

/// Dials the original destination on 127.0.0.1: only a trusted header can send it anywhere else than
/// the proxy's own listener (which the loop guard refuses).
struct DialOriginalDestination {
  std::optional<UpstreamTarget> upstream_for(const Downstream& d) const {
    return UpstreamTarget{.endpoint = d.original_destination};
  }
};
static_assert(concepts::UpstreamPolicy<DialOriginalDestination>);

}  // namespace

TEMPLATE_TEST_CASE("proxy protocol: the proxy writes the header with the client and the original destination "
                   "before the first relayed byte", "[proxy_protocol][proxy]", SpliceRelay, BufferedRelay) {
  const auto version = GENERATE(ProxyProtocolVersion::v1, ProxyProtocolVersion::v2);
  RecordingServer server;
  Records records;
  RunningProxy<FixedPolicy, TestType> proxy(FixedPolicy{{.endpoint = server.server.endpoint()}}, TestType{},
                                            {.send_proxy_protocol = version, .on_complete = records.callback()});
  CHECK(exchange(proxy.endpoint(), "ping\n") == "pong\n");
  const auto done = records.wait(1);
  REQUIRE(done.size() == 1);
  const auto got = server.all();
  REQUIRE(got.size() == 1);
  const auto parsed = parse(got[0]);
  REQUIRE(parsed.status == ProxyParseStatus::complete);
  CHECK(parsed.header.version == version);
  CHECK(parsed.header.source == done[0].downstream.peer);
  CHECK(parsed.header.destination == proxy.endpoint());
  CHECK(got[0].substr(parsed.header.length) == "ping\n");
  CHECK(done[0].bytes_from_downstream == 5);  // the header is the proxy's, not the client's
}

TEMPLATE_TEST_CASE("proxy protocol: the proxy reads the client's header, relays the stream behind it intact, "
                   "names the header's client, and passes it on", "[proxy_protocol][proxy]", SpliceRelay,
                   BufferedRelay) {
  RecordingServer server;
  Records records;
  const auto send = GENERATE(std::optional<ProxyProtocolVersion>{}, std::optional{ProxyProtocolVersion::v2});
  RunningProxy<FixedPolicy, TestType> proxy(FixedPolicy{{.endpoint = server.server.endpoint()}}, TestType{},
                                            {.send_proxy_protocol = send,
                                             .accept_proxy_protocol = ProxyProtocolAccept::any,
                                             .on_complete = records.callback()});
  std::string payload;
  for (int i = 0; i < 20000; ++i) payload += static_cast<char>('a' + i % 26);
  const std::string header = GENERATE(std::string("PROXY TCP4 203.0.113.9 198.51.100.1 40001 8443\r\n"),
                                      v2(0x21, 0x21, v6_block()));
  CHECK(exchange(proxy.endpoint(), header + payload) == "pong\n");
  const auto done = records.wait(1);
  REQUIRE(done.size() == 1);
  const bool v6 = header[0] == '\r';
  const auto client = v6 ? ep("2001:db8::1", 1234) : ep("203.0.113.9", 40001);
  CHECK(done[0].end == ConnectionEnd::completed);
  CHECK(done[0].downstream.peer == client);
  REQUIRE(done[0].proxied_by);
  CHECK(done[0].proxied_by->address().is_loopback());
  // The header's destination is not trusted: the original destination is still the socket's.
  CHECK(done[0].downstream.original_destination == proxy.endpoint());
  CHECK(done[0].bytes_from_downstream == payload.size());
  const auto got = server.all();
  REQUIRE(got.size() == 1);
  std::string stream = got[0];
  if (send) {
    const auto sent = parse(stream);
    REQUIRE(sent.status == ProxyParseStatus::complete);
    CHECK(sent.header.source == client);
    // An IPv6 client and an IPv4 destination: one family in a header, so the destination goes as mapped.
    REQUIRE(sent.header.destination);
    CHECK(unmapped(*sent.header.destination) == proxy.endpoint());
    stream = stream.substr(sent.header.length);
  }
  CHECK(stream == payload);
}

TEMPLATE_TEST_CASE("proxy protocol: a bad header resets that connection only, counted, while another keeps "
                   "flowing", "[proxy_protocol][proxy]", SpliceRelay, BufferedRelay) {
  RecordingServer server;
  Records records;
  RunningProxy<FixedPolicy, TestType> proxy(FixedPolicy{{.endpoint = server.server.endpoint()}}, TestType{},
                                            {.accept_proxy_protocol = ProxyProtocolAccept::any,
                                             .on_complete = records.callback()});
  asio::io_context io;
  tcp::socket good = connect_client(io, proxy.endpoint());
  asio::write(good, asio::buffer(std::string_view("PROXY TCP4 10.1.1.1 10.2.2.2 1000 2000\r\nfirst ")));
  const std::string_view bad = GENERATE(as<std::string_view>{}, "GET / HTTP/1.1\r\n\r\n",
                                        "PROXY TCP4 10.1.1.1 10.2.2.2 1000 99999\r\nrest",
                                        "PROXY TCP4 10.1.1.1");  // then a FIN: no more can come
  CAPTURE(bad);
  const std::string answer = exchange(proxy.endpoint(), bad);
  CHECK(answer.rfind("error: ", 0) == 0);
  CHECK(eventually([&] { return proxy.stats().downstream_cx_proxy_proto_error.load() == 1; }));
  asio::write(good, asio::buffer(std::string_view("second\n")));
  good.shutdown(tcp::socket::shutdown_send);
  CHECK(read_to_end(good).first == "pong\n");
  const auto done = records.wait(2);
  REQUIRE(done.size() == 2);
  CHECK(done[0].end == ConnectionEnd::bad_proxy_header);
  CHECK_FALSE(done[0].upstream);  // nothing was dialled for it
  CHECK(done[1].end == ConnectionEnd::completed);
  CHECK(server.all() == std::vector<std::string>{"first second\n"});
  CHECK(proxy.stats().upstream_cx_total.load() == 1);
}

TEMPLATE_TEST_CASE("proxy protocol: a header sent slowly in pieces is read, and one left unfinished times out",
                   "[proxy_protocol][proxy]", SpliceRelay, BufferedRelay) {
  RecordingServer server;
  Records records;
  RunningProxy<FixedPolicy, TestType> proxy(FixedPolicy{{.endpoint = server.server.endpoint()}}, TestType{},
                                            {.accept_proxy_protocol = ProxyProtocolAccept::any,
                                             .proxy_protocol_timeout = 800ms,
                                             .on_complete = records.callback()});
  asio::io_context io;
  {
    tcp::socket slow = connect_client(io, proxy.endpoint());
    const std::string header = v2(0x21, 0x11, v4_block) + "data";
    for (std::size_t at = 0; at < header.size(); at += 5) {
      asio::write(slow, asio::buffer(header.substr(at, 5)));
      std::this_thread::sleep_for(20ms);
    }
    slow.shutdown(tcp::socket::shutdown_send);
    CHECK(read_to_end(slow).first == "pong\n");
  }
  tcp::socket stuck = connect_client(io, proxy.endpoint());
  asio::write(stuck, asio::buffer(std::string_view("PROXY TCP4 1.2.")));
  const auto started = std::chrono::steady_clock::now();
  const auto [text, error] = read_to_end(stuck);
  const auto waited = std::chrono::steady_clock::now() - started;
  CHECK(error == asio::error::connection_reset);
  CHECK(waited >= 700ms);
  CHECK(waited < 10s);
  const auto done = records.wait(2);
  REQUIRE(done.size() == 2);
  CHECK(done[0].downstream.peer == ep("192.0.2.1", 56324));
  CHECK(done[1].end == ConnectionEnd::proxy_header_timeout);
  CHECK(proxy.stats().downstream_pre_cx_timeout.load() == 1);
  CHECK(server.all() == std::vector<std::string>{"data"});
}

TEST_CASE("proxy protocol: the header's destination picks the upstream only when trusted", "[proxy_protocol][proxy]") {
  RecordingServer server;
  const bool trust = GENERATE(false, true);
  Records records;
  RunningProxy<DialOriginalDestination, SpliceRelay> proxy(
      DialOriginalDestination{}, SpliceRelay{},
      {.accept_proxy_protocol = ProxyProtocolAccept::any, .trust_proxy_protocol_destination = trust,
       .on_complete = records.callback()});
  const std::string header = "PROXY TCP4 127.0.0.1 127.0.0.1 5555 " +
                             std::to_string(server.server.endpoint().port()) + "\r\n";
  const std::string answer = exchange(proxy.endpoint(), header + "hello");
  const auto done = records.wait(1);
  REQUIRE(done.size() == 1);
  if (trust) {
    CHECK(answer == "pong\n");
    CHECK(done[0].downstream.original_destination == server.server.endpoint());
  } else {
    CHECK(answer.rfind("error: ", 0) == 0);
    CHECK(done[0].end == ConnectionEnd::loop_refused);
    CHECK(server.all().empty());
  }
}

TEST_CASE("proxy protocol: without the options nothing is read or written besides the stream", "[proxy_protocol][proxy]") {
  RecordingServer server;
  RunningProxy<FixedPolicy, SpliceRelay> proxy(FixedPolicy{{.endpoint = server.server.endpoint()}}, SpliceRelay{});
  const std::string header = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
  CHECK(exchange(proxy.endpoint(), header + "x") == "pong\n");
  CHECK(server.all() == std::vector<std::string>{header + "x"});
}
