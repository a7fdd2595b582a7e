// A minimal HTTP/1.1 responder and client on Asio, for the admin (/stats, /ready) and health
// (/healthz/ready) endpoints and for `wait`.
//
// Hand-written on purpose: Debian 12 packages no HTTP server library that fits a header-only, standalone
// Asio program (Boost.Beast needs Boost; cpp-httplib and civetweb run their own blocking thread pools).
// What these endpoints need is small: one GET per connection, a request line and headers up to a blank
// line, a bounded size, `Connection: close`.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace sidecar::http {

/// Requests larger than this (request line and headers) are answered 431 and closed.
inline constexpr std::size_t max_request_head = 8 * 1024;

struct Request {
  std::string method;  ///< as sent ("GET")
  std::string path;    ///< the target without its query ("/stats")
  std::string query;   ///< after '?', may be empty
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain; charset=utf-8";
};

/// Parses a request head (everything up to and including the blank line). Returns the request, or the
/// status to answer with: 400 for a malformed request line, 505 for a version other than HTTP/1.0 or 1.1.
[[nodiscard]] std::variant<Request, int> parse_request(std::string_view head);

/// The bytes of a response with Content-Length and `Connection: close`; `head_only` omits the body (HEAD).
[[nodiscard]] std::string serialize(const Response& response, bool head_only);

[[nodiscard]] std::string_view reason_phrase(int status) noexcept;

/// Answers GET and HEAD with the handler's response, anything else with 405 (Allow: GET, HEAD). The
/// handler runs on the connection's strand, possibly on several threads at once; it must not block.
using Handler = std::function<Response(const Request&)>;

/// Listens on one endpoint and answers each connection's single request. Bounded: a request head of at
/// most max_request_head bytes, `max_connections` at once (more are closed at once), `request_timeout`
/// to send the request.
class Server {
 public:
  /// Binds and listens (SO_REUSEADDR); throws std::system_error naming the endpoint on failure.
  Server(asio::any_io_executor executor, asio::ip::tcp::endpoint endpoint, Handler handler,
         std::size_t max_connections = 64, std::chrono::milliseconds request_timeout = std::chrono::seconds(5));
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  /// Stops accepting; connections being served finish. Any thread.
  void close();
  [[nodiscard]] asio::ip::tcp::endpoint local_endpoint() const { return local_; }

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(asio::ip::tcp::socket socket);

  asio::any_io_executor executor_;
  asio::strand<asio::any_io_executor> strand_;
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::endpoint local_;
  Handler handler_;
  std::size_t max_connections_;
  std::chrono::milliseconds request_timeout_;
  std::shared_ptr<std::atomic<std::size_t>> open_ = std::make_shared<std::atomic<std::size_t>>(0);
};

/// What one GET returned, or why it failed.
struct ClientResult {
  std::optional<int> status;  ///< set when a status line was read
  std::string error;          ///< why not, otherwise
};

/// GET http://endpoint/target with a Host header, `Connection: close`; reads the status line. Never throws
/// for network outcomes (refused, reset, timeout): they come back in `error`.
asio::awaitable<ClientResult> get_status(asio::ip::tcp::endpoint endpoint, std::string host, std::string target,
                                         std::chrono::milliseconds timeout);

}  // namespace sidecar::http
