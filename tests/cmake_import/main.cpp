// Consumer check: proxies one connection through an installed podproxy and checks what came back.
#include <podproxy/podproxy.hpp>

#include <asio/io_context.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <iostream>
#include <string>
#include <thread>

int main() {
  using asio::ip::tcp;
  asio::io_context io;

  // The upstream: answers "pong\n" to one client.
  tcp::acceptor upstream(io, {asio::ip::address_v4::loopback(), 0});
  std::thread server([&] {
    tcp::socket s = upstream.accept();
    char request[5];
    asio::read(s, asio::buffer(request));
    asio::write(s, asio::buffer(std::string_view("pong\n")));
  });

  podproxy::Proxy proxy(podproxy::Acceptor<>(io.get_executor(), {}),
                        podproxy::FixedPolicy{{.endpoint = upstream.local_endpoint()}}, podproxy::SpliceRelay{});
  proxy.start();
  std::thread runner([&] { io.run(); });

  asio::io_context client_io;
  tcp::socket client(client_io);
  client.connect(proxy.local_endpoint());
  asio::write(client, asio::buffer(std::string_view("ping\n")));
  std::string reply(5, '\0');
  asio::read(client, asio::buffer(reply));
  client.close();
  server.join();
  proxy.stop(std::chrono::seconds(1));
  runner.join();

  const bool ok = reply == "pong\n" && proxy.stats().downstream_cx_total == 1;
  std::cout << (ok ? "consumer: proxied one connection through podproxy " PODPROXY_VERSION_STRING "\n"
                   : "consumer: unexpected reply\n");
  return ok ? 0 : 1;
}
