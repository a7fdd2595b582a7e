// podproxy-tcp: the shortest useful podproxy program, a TCP proxy from a port to an upstream.
//
//   podproxy-tcp --listen 127.0.0.1:9000 --upstream 127.0.0.1:8080 [--relay splice|buffered]
//   podproxy-tcp --listen 0.0.0.0:15006 --policy pod-ip       (behind an iptables REDIRECT rule)
//   podproxy-tcp ... --batch-pause-us 0                        (block as soon as there is nothing to do)
#include <podproxy/podproxy.hpp>

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include <iostream>
#include <string>
#include <type_traits>

namespace {

asio::ip::tcp::endpoint parse_endpoint(const std::string& text) {
  const auto endpoint = podproxy::parse_endpoint(text);
  if (!endpoint) throw CLI::ValidationError(text, "expected HOST:PORT with an IP address (IPv6 as [ADDR]:PORT)");
  return *endpoint;
}

template <class Source, class Policy, class Relay>
int serve(const asio::ip::tcp::endpoint& listen, Policy policy, Relay relay, podproxy::ProxyOptions options) {
  asio::io_context io{1};  // one thread: connections need no strand
  podproxy::Proxy proxy(
      podproxy::Acceptor<Source>(io.get_executor(), {.endpoint = listen, .strand_per_connection = false}),
      std::move(policy), std::move(relay), std::move(options));
  proxy.start();
  std::cout << "listening on " << proxy.local_endpoint() << std::endl;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int) { proxy.stop(std::chrono::seconds(5)); });
  io.run();
  return 0;
}

// The fixed policy ignores where the client meant to go, so its listener skips SO_ORIGINAL_DST.
template <class Policy>
int with_relay(const std::string& relay, const asio::ip::tcp::endpoint& listen, Policy policy,
               podproxy::ProxyOptions options) {
  using Source = std::conditional_t<std::is_same_v<Policy, podproxy::FixedPolicy>, podproxy::LocalAddress,
                                    podproxy::RedirectedOrLocal>;
  if (relay == "buffered") {
    return serve<Source>(listen, std::move(policy), podproxy::BufferedRelay{}, std::move(options));
  }
  return serve<Source>(listen, std::move(policy), podproxy::SpliceRelay{}, std::move(options));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"podproxy-tcp: a TCP proxy built from podproxy's parts"};
  std::string listen = "127.0.0.1:9000", upstream, policy = "fixed", relay = "splice";
  app.add_option("--listen", listen, "HOST:PORT to accept on")->capture_default_str();
  app.add_option("--upstream", upstream, "HOST:PORT to dial (policy fixed)");
  app.add_option("--policy", policy, "fixed, loopback (Istio <= 1.9) or pod-ip (Istio >= 1.10)")
      ->check(CLI::IsMember({"fixed", "loopback", "pod-ip"}))->capture_default_str();
  app.add_option("--relay", relay, "splice or buffered")->check(CLI::IsMember({"splice", "buffered"}))
      ->capture_default_str();
  long pause_us = podproxy::ProxyOptions{}.batch_pause.count();
  app.add_option("--batch-pause-us", pause_us,
                 "after a busy wake-up, pause this long and look again before blocking (0 disables)")
      ->check(CLI::Range(0L, static_cast<long>(podproxy::ProxyOptions::max_batch_pause.count())))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
    const auto listen_at = parse_endpoint(listen);
    const podproxy::ProxyOptions options{.batch_pause = std::chrono::microseconds(pause_us)};
    if (policy == "fixed") {
      if (upstream.empty()) throw CLI::RequiredError("--upstream (policy fixed)");
      return with_relay(relay, listen_at, podproxy::FixedPolicy{{.endpoint = parse_endpoint(upstream)}}, options);
    }
    if (policy == "loopback") return with_relay(relay, listen_at, podproxy::LoopbackPolicy{}, options);
    return with_relay(relay, listen_at, podproxy::PodIpPolicy{}, options);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const std::system_error& e) {
    std::cerr << "podproxy-tcp: " << e.what() << '\n';
    return 1;
  }
}
