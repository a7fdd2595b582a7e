// libFuzzer targets for the sidecar's parsers (examples/sidecar/src): flag values, per-port overrides and
// the admin HTTP request line; and the library's PROXY protocol header parser (podproxy/proxy_protocol.hpp). One source, one binary per target: PODPROXY_FUZZ_TARGET picks the parser.
// Each parser either returns a value that satisfies its contract or throws CLI::ValidationError naming the
// flag; anything else (another exception, a crash, an out-of-range value, a sanitizer report) is a finding.
#include "cli_util.hpp"
#include "http.hpp"
#include "init_flags.hpp"
#include "run_flags.hpp"

#include <podproxy/proxy_protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

/// Runs `parse`; a ValidationError must name the flag.
template <class Parse>
void expect_value_or_validation_error(std::string_view flag, Parse parse) {
  try {
    parse();
  } catch (const CLI::ValidationError& e) {
    check(std::string_view(e.what()).find(flag) != std::string_view::npos);
  }
}

std::string endpoint_text(const asio::ip::tcp::endpoint& e) {
  const auto a = e.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(e.port());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  using namespace sidecar;
#if PODPROXY_FUZZ_TARGET == 1  // ports and port lists (--inbound-port, --inbound-ports, --exclude-*-ports)
  expect_value_or_validation_error("--inbound-port", [&] {
    const auto port = parse_port("--inbound-port", text);
    check(port >= 1);
  });
  expect_value_or_validation_error("--inbound-ports", [&] {
    const auto ports = parse_port_list("--inbound-ports", text);
    check(ports.size() <= text.size() / 2 + 1);
    for (const auto p : ports) check(p >= 1);
  });
  expect_value_or_validation_error("--exclude-inbound-ports", [&] {
    const auto selection = parse_port_selection("--exclude-inbound-ports", text);
    check(selection.has_value() || text == "*");
  });
#elif PODPROXY_FUZZ_TARGET == 2  // addresses and endpoints (--pod-ip, --listen-address, HOST:PORT)
  expect_value_or_validation_error("--pod-ip", [&] { (void)parse_address("--pod-ip", text); });
  expect_value_or_validation_error("--endpoint", [&] {
    const auto e = parse_endpoint("--endpoint", text);
    // What parses prints back to something that parses to the same endpoint.
    check(parse_endpoint("--endpoint", endpoint_text(e)) == e);
  });
#elif PODPROXY_FUZZ_TARGET == 3  // durations (--connect-timeout, --idle-timeout, --drain-timeout, --timeout)
  expect_value_or_validation_error("--connect-timeout", [&] {
    const auto d = parse_duration("--connect-timeout", text);
    check(d.count() >= 0 && d <= std::chrono::hours(365 * 24));
  });
#elif PODPROXY_FUZZ_TARGET == 4  // numbers, ids, marks (--threads, --uid, --proxy-gid, --mark)
  expect_value_or_validation_error("--threads", [&] {
    const auto n = parse_number("--threads", text, 1, 256);
    check(n >= 1 && n <= 256);
  });
  expect_value_or_validation_error("--uid", [&] { check(parse_id("--uid", text) != UINT32_MAX); });
  expect_value_or_validation_error("--mark", [&] { check(parse_mark("--mark", text) != 0); });
#elif PODPROXY_FUZZ_TARGET == 5  // per-port overrides and URLs (--inbound-default-endpoint, wait --url)
  expect_value_or_validation_error("--inbound-default-endpoint", [&] {
    const auto [port, endpoint] = parse_default_endpoint("--inbound-default-endpoint", text);
    check(port >= 1 && endpoint.port() >= 1);
  });
  expect_value_or_validation_error("--url", [&] {
    const auto url = parse_http_url("--url", text);
    check(!url.target.empty() && url.endpoint.port() >= 1);
    for (const char c : url.target) check(c > ' ' && c != 0x7f);
  });
#elif PODPROXY_FUZZ_TARGET == 6  // the admin endpoint's HTTP request head
  const auto parsed = http::parse_request(text);
  if (const auto* request = std::get_if<http::Request>(&parsed)) {
    check(!request->method.empty() && !request->path.empty() && request->path.front() == '/');
    for (const char c : request->path) check(c > ' ' && c != 0x7f && c != '?');
    (void)http::serialize({200, request->path}, request->method == "HEAD");
  } else {
    const int status = std::get<int>(parsed);
    check(status == 400 || status == 505);
  }
#elif PODPROXY_FUZZ_TARGET == 7  // the PROXY protocol header a client sends first (bytes off the wire)
  using namespace podproxy;
  const std::span<const unsigned char> bytes(data, size);
  for (const auto accept : {ProxyProtocolAccept::any, ProxyProtocolAccept::v1, ProxyProtocolAccept::v2}) {
    const auto r = parse_proxy_header(bytes, accept);
    switch (r.status) {
      case ProxyParseStatus::complete: {
        const auto& h = r.header;
        check(accepts(accept, h.version));
        check(h.length > 0 && h.length <= size && h.length <= proxy_header_max_length);
        if (h.version == ProxyProtocolVersion::v1) check(h.length <= proxy_v1_max_length);
        check(h.source.has_value() == h.destination.has_value());
        check(!(h.local && h.source));
        // The header alone parses the same: nothing after it was looked at; one byte less is a prefix.
        const auto alone = parse_proxy_header(bytes.first(h.length), accept);
        check(alone.status == ProxyParseStatus::complete && alone.header.length == h.length &&
              alone.header.source == h.source && alone.header.destination == h.destination);
        check(parse_proxy_header(bytes.first(h.length - 1), accept).status == ProxyParseStatus::incomplete);
        if (h.source) {  // what the writer makes of its addresses parses back to them
          unsigned char out[proxy_header_max_written];
          const std::size_t n = write_proxy_header(h.version, *h.source, *h.destination, out);
          const auto back = parse_proxy_header(std::span<const unsigned char>(out, n), accept);
          check(back.status == ProxyParseStatus::complete && back.header.length == n);
          check(back.header.source->port() == h.source->port() && back.header.destination->port() == h.destination->port());
        }
        break;
      }
      case ProxyParseStatus::incomplete: check(size < proxy_header_max_length); break;
      case ProxyParseStatus::invalid:
        // No byte added can make it valid: a receiver may reset at once.
        for (const unsigned char more : {0x00, 0x0A, 0x0D, 0x20, 0xFF}) {
          unsigned char longer[proxy_header_max_length + 1];
          const std::size_t n = std::min(size, proxy_header_max_length);
          std::memcpy(longer, data, n);
          longer[n] = more;
          if (n == size) {
            check(parse_proxy_header(std::span<const unsigned char>(longer, n + 1), accept).status ==
                  ProxyParseStatus::invalid);
          }
        }
        break;
    }
  }
#else
#error "define PODPROXY_FUZZ_TARGET (1-7)"
#endif
  return 0;
}
