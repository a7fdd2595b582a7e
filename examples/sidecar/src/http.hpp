// A minimal HTTP/1.1 responder and client on Asio, for the admin (/stats, /ready) and health
// (/healthz/ready) endpoints and for `wait`.
//
// Hand-written on purpose: Debian 12 packages no HTTP server library that fits a header-only, standalone
// Asio program (Boost.Beast needs Boost; cpp-httplib and civetweb run their own blocking thread pools).
// What these endpoints need is small: one GET per connection, a request line and headers up to a blank
// line, a bounded size, `Connection: close`.
#pragma once

// Asio 1.22 decides between aligned_alloc and operator new for its allocations by testing a libstdc++
// macro without including any standard header: a translation unit whose first include is Asio's gets the
// other choice than one that included a standard header first, and the two mix (alloc-dealloc mismatch
// under ASan). A standard header first, always.
#include <cstddef>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/strand.hpp>
#include <fmt/format.h>

#include <algorithm>

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
  asio::ip::tcp::endpoint peer{};  ///< who sent it (set by the Server)
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain; charset=utf-8";
  std::string allow = "GET, HEAD";  ///< the Allow header of a 405
};

// parse_request(head): the request, or the status to answer with: 400 for a malformed request line, 505
// for a version other than HTTP/1.0 or 1.1. `head` is everything up to and including the blank line.
// serialize(response, head_only): the bytes of a response with Content-Length and `Connection: close`;
// `head_only` omits the body (HEAD).
namespace detail {

inline bool is_token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace detail

inline std::variant<Request, int> parse_request(std::string_view head) {
  const auto line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) return 400;
  const auto line = head.substr(0, line_end);
  const auto first_space = line.find(' ');
  if (first_space == std::string_view::npos || first_space == 0) return 400;
  const auto second_space = line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos || second_space == first_space + 1) return 400;
  const auto method = line.substr(0, first_space);
  const auto target = line.substr(first_space + 1, second_space - first_space - 1);
  const auto version = line.substr(second_space + 1);
  if (!std::ranges::all_of(method, detail::is_token_char)) return 400;
  if (target.front() != '/' || std::ranges::any_of(target, [](char c) { return c <= ' ' || c == 0x7f; })) return 400;
  if (version.substr(0, 5) != "HTTP/") return 400;
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return 505;
  const auto question = target.find('?');
  return Request{std::string(method), std::string(target.substr(0, question)),
                 question == std::string_view::npos ? std::string() : std::string(target.substr(question + 1))};
}

inline std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

inline std::string serialize(const Response& response, bool head_only) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", response.status,
                                reason_phrase(response.status), response.content_type, response.body.size());
  if (response.status == 405) out += "Allow: " + response.allow + "\r\n";
  out += "Connection: close\r\n\r\n";
  if (!head_only) out += response.body;
  return out;
}


/// Answers GET and HEAD with the handler's response, anything else with 405 (Allow: GET, HEAD) unless
/// ServerOptions::any_method hands every method to the handler. The handler runs on the server's strand;
/// it must not block.
using Handler = std::function<Response(const Request&)>;

/// How a Server bounds what clients can make it hold. A health probe sends its whole request head in one
/// segment as soon as it connects; a client that does not is either slow or hostile, and must not keep a
/// probe out. So: a deadline for the whole head counted from the accept (not per read, or a client that
/// trickles a byte at a time keeps its slot), a cap on connections held at once far above what probes
/// need, and at the cap the oldest connection that is waiting on its client (for its head, or to close
/// after its answer) is closed to make room. When every held connection is being answered, the server
/// stops accepting until one finishes: new connections wait in the listen backlog instead of being closed.
struct ServerOptions {
  std::size_t max_connections = 1024;  ///< held at once; each holds at most max_request_head bytes
  std::chrono::milliseconds head_timeout = std::chrono::seconds(1);   ///< for the whole request head
  std::chrono::milliseconds write_timeout = std::chrono::seconds(2);  ///< for the answer
  std::chrono::milliseconds linger = std::chrono::seconds(1);  ///< after the answer, for the client to close
  int backlog = asio::socket_base::max_listen_connections;     ///< the kernel caps it at net.core.somaxconn
  /// Hand every method to the handler, which then answers 405 itself where a method does not fit (an
  /// admin endpoint taking POST). A request body is not read: what the client sends after the head is
  /// drained after the answer.
  bool any_method = false;
};

namespace detail {
struct ServerState;  // what a Server's accept loop and its connections share (http.cpp)
}  // namespace detail

/// Listens on one endpoint and answers each connection's single request within the bounds of
/// ServerOptions. Every connection runs on the server's strand.
class Server {
 public:
  /// Binds and listens (SO_REUSEADDR); throws std::system_error naming the endpoint on failure.
  Server(asio::any_io_executor executor, asio::ip::tcp::endpoint endpoint, Handler handler,
         ServerOptions options = {});
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  /// Stops accepting; connections being served finish. Any thread.
  void close();
  [[nodiscard]] asio::ip::tcp::endpoint local_endpoint() const { return local_; }

 private:
  asio::awaitable<void> accept_loop();

  asio::strand<asio::any_io_executor> strand_;
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::endpoint local_;
  // Shared with every connection's coroutine: the io_context destroys unfinished coroutine frames after
  // the Server is gone, and a frame unregisters its connection in its destructor.
  std::shared_ptr<detail::ServerState> state_;
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
