// Unit tests of what `run` and `wait` print and parse: the access-log line, the Prometheus text, the
// HTTP request parser, the flag parsers, and the TPROXY policy's loopback exception.
#include "access_log.hpp"
#include "http.hpp"
#include "prometheus.hpp"
#include "run_flags.hpp"
#include "tproxy_policy.hpp"

#include <podproxy/policy/loopback_policy.hpp>
#include <podproxy/policy/pod_ip_policy.hpp>

#include <catch2/catch.hpp>

namespace {

asio::ip::tcp::endpoint ep(const char* address, unsigned short port) {
  return {asio::ip::make_address(address), port};
}

}  // namespace

TEST_CASE("access log: a completed connection has every field, in order", "[sidecar][access-log]") {
  podproxy::ConnectionRecord record;
  record.downstream = {ep("10.0.0.9", 51234), ep("10.0.0.5", 15006), ep("10.0.0.5", 8080)};
  record.upstream = podproxy::UpstreamTarget{.endpoint = ep("10.0.0.5", 8080)};
  record.upstream_local = ep("127.0.0.6", 40000);
  record.bytes_from_downstream = 5;
  record.bytes_from_upstream = 7;
  record.start = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'795'651'200'123));
  record.duration = std::chrono::milliseconds(3);
  CHECK(sidecar::access_log_line("inbound", record) ==
        "[2026-11-26T00:00:00.123Z] inbound 10.0.0.9:51234 -> 10.0.0.5:8080 upstream=10.0.0.5:8080 "
        "src=127.0.0.6:40000 rx=5 tx=7 dur_ms=3 flags=- end=completed error=-");
}

TEST_CASE("access log: a refused upstream says UF,URX and why, IPv6 and v4-mapped addresses print plainly",
          "[sidecar][access-log]") {
  podproxy::ConnectionRecord record;
  record.downstream = {ep("::ffff:10.0.0.9", 1), ep("::", 15006), ep("fd00::5", 8080)};
  record.upstream = podproxy::UpstreamTarget{.endpoint = ep("fd00::5", 8080)};
  record.end = podproxy::ConnectionEnd::upstream_connect_failed;
  record.error = std::make_error_code(std::errc::connection_refused);
  const auto line = sidecar::access_log_line("inbound", record);
  CHECK_THAT(line, Catch::Contains(" inbound 10.0.0.9:1 -> [fd00::5]:8080 upstream=[fd00::5]:8080 src=- rx=0 tx=0 "));
  CHECK_THAT(line, Catch::EndsWith("flags=UF,URX end=upstream_connect_failed error=\"Connection refused\""));
  CHECK_THAT(sidecar::access_log_line("inbound", record, "nothing listens on 8080"),
             Catch::EndsWith("error=\"Connection refused\" hint=\"nothing listens on 8080\""));

  record.upstream.reset();
  record.end = podproxy::ConnectionEnd::loop_refused;
  record.error = {};
  CHECK_THAT(sidecar::access_log_line("outbound", record), Catch::Contains("upstream=- src=- rx=0 tx=0"));
  CHECK_THAT(sidecar::access_log_line("outbound", record), Catch::EndsWith("flags=NR end=loop_refused error=-"));
}

TEST_CASE("prometheus: one family per statistic with TYPE, one sample per listener", "[sidecar][stats]") {
  podproxy::ProxyStats inbound, outbound;
  inbound.downstream_cx_total = 3;
  inbound.downstream_cx_active = 1;
  outbound.downstream_cx_total = 2;
  const auto text = sidecar::prometheus_text({{"inbound", &inbound}, {"outbound", &outbound}}, nullptr);
  CHECK_THAT(text, Catch::Contains("# TYPE podproxy_downstream_cx_total counter\n"
                                   "podproxy_downstream_cx_total{listener=\"inbound\"} 3\n"
                                   "podproxy_downstream_cx_total{listener=\"outbound\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("# TYPE podproxy_downstream_cx_active gauge\n"
                                   "podproxy_downstream_cx_active{listener=\"inbound\"} 1\n"));
  std::size_t families = 0;
  inbound.for_each([&](std::string_view, std::uint64_t, podproxy::ProxyStats::Kind) { ++families; });
  std::size_t type_lines = 0;
  for (std::size_t at = text.find("# TYPE "); at != std::string::npos; at = text.find("# TYPE ", at + 1)) ++type_lines;
  CHECK(type_lines == families);
  CHECK_THAT(text, !Catch::Contains("pipe_pool"));
  podproxy::PipePool pool;
  CHECK_THAT(sidecar::prometheus_text({{"inbound", &inbound}}, &pool), Catch::Contains("podproxy_pipe_pool_lent 0\n"));
}

TEST_CASE("http: request lines parse, or give the status to answer", "[sidecar][http]") {
  using sidecar::http::parse_request;
  const auto ok = parse_request("GET /stats?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(std::holds_alternative<sidecar::http::Request>(ok));
  CHECK(std::get<sidecar::http::Request>(ok).method == "GET");
  CHECK(std::get<sidecar::http::Request>(ok).path == "/stats");
  CHECK(std::get<sidecar::http::Request>(ok).query == "x=1");
  const auto [head, status] = GENERATE(table<const char*, int>({
      {"GET / HTTP/1.0\r\n\r\n", 0},
      {"GARBAGE\r\n\r\n", 400},
      {"GET  HTTP/1.1\r\n\r\n", 400},
      {"GET stats HTTP/1.1\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\n\r\n", 400},
      {"GET / FTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"GET / HTTP/1.1", 400},
  }));
  CAPTURE(head);
  const auto parsed = parse_request(head);
  if (status == 0) {
    CHECK(std::holds_alternative<sidecar::http::Request>(parsed));
  } else {
    REQUIRE(std::holds_alternative<int>(parsed));
    CHECK(std::get<int>(parsed) == status);
  }
}

TEST_CASE("http: responses carry length and Connection: close, HEAD has no body, 405 says Allow",
          "[sidecar][http]") {
  using sidecar::http::serialize;
  CHECK(serialize({200, "LIVE\n"}, false) ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\n\r\nLIVE\n");
  CHECK_THAT(serialize({200, "LIVE\n"}, true), Catch::EndsWith("Content-Length: 5\r\nConnection: close\r\n\r\n"));
  CHECK_THAT(serialize({405, "no\n"}, false), Catch::Contains("\r\nAllow: GET, HEAD\r\n"));
}

TEST_CASE("flags: PORT=HOST:PORT and http URLs", "[sidecar][flags]") {
  const auto [port, target] = sidecar::parse_default_endpoint("--x", "8080=127.0.0.1:9090");
  CHECK(port == 8080);
  CHECK(target == ep("127.0.0.1", 9090));
  CHECK(sidecar::parse_default_endpoint("--x", "80=[::1]:81").second == ep("::1", 81));
  CHECK_THROWS_AS(sidecar::parse_default_endpoint("--x", "8080"), CLI::ValidationError);
  CHECK_THROWS_AS(sidecar::parse_default_endpoint("--x", "=127.0.0.1:1"), CLI::ValidationError);
  CHECK_THROWS_WITH(sidecar::parse_default_endpoint("--x", "1=a:1"), Catch::StartsWith("--x"));

  const auto url = sidecar::parse_http_url("--url", "http://127.0.0.1:15021/healthz/ready");
  CHECK(url.endpoint == ep("127.0.0.1", 15021));
  CHECK(url.host_header == "127.0.0.1:15021");
  CHECK(url.target == "/healthz/ready");
  CHECK(sidecar::parse_http_url("--url", "http://[::1]:15021").target == "/");
  CHECK_THROWS_AS(sidecar::parse_http_url("--url", "ftp://127.0.0.1:1/"), CLI::ValidationError);
  CHECK_THROWS_AS(sidecar::parse_number("--threads", "0", 1, 256), CLI::ValidationError);
  CHECK(sidecar::parse_number("--threads", "256", 1, 256) == 256);
}

TEST_CASE("tproxy policy: the client's address toward the pod IP, loopback toward loopback", "[sidecar][policy]") {
  const podproxy::Downstream downstream{ep("10.0.0.9", 5000), ep("10.0.0.5", 8080), ep("10.0.0.5", 8080)};
  const sidecar::OriginalSourceOffLoopbackPolicy pod_ip{podproxy::PodIpPolicy{}};
  const auto to_pod = pod_ip.upstream_for(downstream);
  REQUIRE(to_pod);
  CHECK(to_pod->endpoint == ep("10.0.0.5", 8080));
  CHECK(to_pod->source == asio::ip::make_address("10.0.0.9"));
  CHECK(to_pod->transparent);

  const sidecar::OriginalSourceOffLoopbackPolicy loopback{podproxy::LoopbackPolicy{}};
  const auto to_lo = loopback.upstream_for(downstream);
  REQUIRE(to_lo);
  CHECK(to_lo->endpoint == ep("127.0.0.1", 8080));
  CHECK_FALSE(to_lo->source);
  CHECK_FALSE(to_lo->transparent);
}
