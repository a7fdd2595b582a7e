// Unit tests of Istio's TCP metrics: the downward-API labels parser, the pod identity's fallbacks, label
// escaping, and the series the counters render (flags merged, bounded whatever the connections).
#include "istio_metrics.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>

namespace {

std::vector<std::string> lines_starting(const std::string& text, std::string_view prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  }
  return out;
}

podproxy::ConnectionRecord record(podproxy::ConnectionEnd end, bool connected, std::uint64_t rx, std::uint64_t tx,
                                  std::uint16_t client_port) {
  podproxy::ConnectionRecord r;
  r.downstream.peer = {asio::ip::make_address("10.0.0.9"), client_port};
  r.end = end;
  r.upstream_connected = connected;
  r.bytes_from_downstream = rx;
  r.bytes_from_upstream = tx;
  return r;
}

}  // namespace

TEST_CASE("istio metrics: the downward API's labels file, Go-quoted values, bad lines skipped", "[sidecar][istio]") {
  const auto labels = sidecar::parse_downward_labels(
      "app=\"reviews\"\n"
      "note=\"say \\\"hi\\\"\\\\ \\n done\"\n"
      "service.istio.io/canonical-name=\"reviews\"\r\n"
      "no-quotes=reviews\n"
      "=\"no key\"\n"
      "unterminated=\"abc\\\"\n"
      "\n"
      "empty=\"\"");
  CHECK(labels.at("app") == "reviews");
  CHECK(labels.at("note") == "say \"hi\"\\ \n done");
  CHECK(labels.at("service.istio.io/canonical-name") == "reviews");
  CHECK(labels.at("empty").empty());
  CHECK(labels.count("no-quotes") == 0);
  CHECK(labels.count("") == 0);
  CHECK(labels.count("unterminated") == 0);
}

TEST_CASE("istio metrics: the pod's identity follows the injector's fallbacks", "[sidecar][istio]") {
  std::map<std::string, std::string> env{{"POD_NAMESPACE", "shop"}, {"ISTIO_META_WORKLOAD_NAME", "reviews-v2"}};
  const auto from = [&](const char* name) -> std::optional<std::string> {
    const auto it = env.find(name);
    return it == env.end() ? std::nullopt : std::optional(it->second);
  };
  SECTION("nothing but the environment: canonical service is the workload, revision latest") {
    const auto id = sidecar::pod_identity(from, {});
    CHECK(id.workload == "reviews-v2");
    CHECK(id.namespace_name == "shop");
    CHECK(id.app == "unknown");
    CHECK(id.version == "unknown");
    CHECK(id.canonical_service == "reviews-v2");
    CHECK(id.canonical_revision == "latest");
    CHECK(id.cluster == "unknown");
  }
  SECTION("the app.kubernetes.io labels when app and version are absent") {
    const auto id = sidecar::pod_identity(from, {{"app.kubernetes.io/name", "rev"}, {"app.kubernetes.io/version", "3"}});
    CHECK(id.app == "rev");
    CHECK(id.version == "3");
    CHECK(id.canonical_service == "rev");
    CHECK(id.canonical_revision == "3");
  }
  SECTION("the canonical labels win") {
    const auto id = sidecar::pod_identity(from, {{"app", "a"},
                                                 {"version", "v1"},
                                                 {"service.istio.io/canonical-name", "cs"},
                                                 {"service.istio.io/canonical-revision", "cr"}});
    CHECK(id.app == "a");
    CHECK(id.version == "v1");
    CHECK(id.canonical_service == "cs");
    CHECK(id.canonical_revision == "cr");
  }
  SECTION("no environment at all") {
    env.clear();
    const auto id = sidecar::pod_identity(from, {});
    CHECK(id.workload == "unknown");
    CHECK(id.canonical_service == "unknown");
  }
}

TEST_CASE("istio metrics: label values are escaped for the Prometheus text format", "[sidecar][istio]") {
  CHECK(sidecar::escape_label_value("plain-1.2") == "plain-1.2");
  CHECK(sidecar::escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(sidecar::render_labels({{"x", "1"}, {"y", "q\""}}) == "x=\"1\",y=\"q\\\"\"");
  sidecar::PodIdentity pod;
  pod.workload = "w\"1";
  const auto labels = sidecar::istio_listener_labels(pod, true);
  CHECK_THAT(labels, Catch::StartsWith("reporter=\"destination\",source_workload=\"unknown\""));
  CHECK_THAT(labels, Catch::Contains("destination_workload=\"w\\\"1\""));
  CHECK_THAT(labels, Catch::EndsWith("request_protocol=\"tcp\""));
}

TEST_CASE("istio metrics: series per listener and response flags, merged where the flags are the same, and "
          "bounded whatever the connections",
          "[sidecar][istio]") {
  using podproxy::ConnectionEnd;
  sidecar::PodIdentity pod;
  pod.workload = "reviews-v2";
  sidecar::IstioTcpMetrics metrics(pod);
  CHECK(lines_starting(metrics.prometheus_text(), "istio_").empty());

  metrics.connected(sidecar::IstioTcpMetrics::inbound);
  auto text = metrics.prometheus_text();
  REQUIRE(lines_starting(text, "istio_").size() == 1);  // opened while open; nothing closed yet
  CHECK_THAT(lines_starting(text, "istio_")[0],
             Catch::StartsWith("istio_tcp_connections_opened_total{reporter=\"destination\"") &&
                 Catch::EndsWith("response_flags=\"-\",connection_security_policy=\"none\"} 1"));

  metrics.completed(sidecar::IstioTcpMetrics::inbound, record(ConnectionEnd::completed, true, 5, 11, 40000));
  // Refused and timed out upstreams are one UF,URX series; a policy refusal and the loop guard one NR.
  metrics.completed(sidecar::IstioTcpMetrics::outbound, record(ConnectionEnd::upstream_connect_failed, false, 0, 0, 40001));
  metrics.completed(sidecar::IstioTcpMetrics::outbound, record(ConnectionEnd::upstream_connect_timeout, false, 0, 0, 40002));
  metrics.completed(sidecar::IstioTcpMetrics::outbound, record(ConnectionEnd::refused_by_policy, false, 0, 0, 40003));
  metrics.completed(sidecar::IstioTcpMetrics::outbound, record(ConnectionEnd::loop_refused, false, 0, 0, 40004));
  text = metrics.prometheus_text();
  const auto closed = lines_starting(text, "istio_tcp_connections_closed_total");
  REQUIRE(closed.size() == 3);
  CHECK_THAT(closed[0], Catch::Contains("reporter=\"destination\"") && Catch::EndsWith("response_flags=\"-\",connection_security_policy=\"none\"} 1"));
  CHECK_THAT(closed[1], Catch::Contains("reporter=\"source\"") && Catch::EndsWith("response_flags=\"NR\",connection_security_policy=\"unknown\"} 2"));
  CHECK_THAT(closed[2], Catch::Contains("reporter=\"source\"") && Catch::EndsWith("response_flags=\"UF,URX\",connection_security_policy=\"unknown\"} 2"));
  // Never connected: counted opened at their end, with their flags.
  const auto opened = lines_starting(text, "istio_tcp_connections_opened_total");
  REQUIRE(opened.size() == 3);
  CHECK_THAT(opened[2], Catch::EndsWith("response_flags=\"UF,URX\",connection_security_policy=\"unknown\"} 2"));
  CHECK_THAT(lines_starting(text, "istio_tcp_received_bytes_total{reporter=\"destination\"")[0], Catch::EndsWith("} 5"));
  CHECK_THAT(lines_starting(text, "istio_tcp_sent_bytes_total{reporter=\"destination\"")[0], Catch::EndsWith("} 11"));

  const auto series = lines_starting(text, "istio_").size();
  for (std::uint16_t port = 1024; port < 1024 + 5000; ++port) {
    metrics.connected(sidecar::IstioTcpMetrics::inbound);
    metrics.completed(sidecar::IstioTcpMetrics::inbound, record(ConnectionEnd::completed, true, 1, 1, port));
  }
  text = metrics.prometheus_text();
  CHECK(lines_starting(text, "istio_").size() == series);
  CHECK_THAT(lines_starting(text, "istio_tcp_received_bytes_total{reporter=\"destination\"")[0], Catch::EndsWith("} 5005"));
  CHECK(text.find("10.0.0.9") == std::string::npos);
}
