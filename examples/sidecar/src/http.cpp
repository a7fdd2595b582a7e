// The admin HTTP responder and the readiness client (see http.hpp for why they are hand-written).
#include "http.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <list>
#include <system_error>

namespace sidecar::http {

namespace {

using asio::experimental::as_tuple;
using namespace asio::experimental::awaitable_operators;

}  // namespace

namespace detail {

/// One held connection. Its node in ServerState::held owns the socket, so that closing the oldest connection
/// to make room needs no cooperation from its coroutine (which then sees its operations aborted).
struct Connection {
  asio::ip::tcp::socket socket;
  bool waiting_on_client = true;  ///< reading the head, or lingering after the answer: may be evicted
  bool evicted = false;
};

struct ServerState {
  ServerState(asio::strand<asio::any_io_executor> strand, Handler handler, ServerOptions options)
      : handler(std::move(handler)), options(options), slot_freed(std::move(strand)) {}

  Handler handler;
  ServerOptions options;
  std::list<Connection> held;  ///< in accept order: the front is the oldest
  /// The accept loop waits on it at the cap; a connection that ends cancels it.
  asio::steady_timer slot_freed;

  /// Closes the oldest held connection that waits on its client; false when every one is being answered.
  bool evict_oldest_waiting() {
    const auto victim =
        std::ranges::find_if(held, [](const Connection& c) { return c.waiting_on_client && !c.evicted; });
    if (victim == held.end()) return false;
    victim->evicted = true;
    std::error_code ignored;
    victim->socket.close(ignored);
    return true;
  }
};

}  // namespace detail

namespace {

// GCC 12 at -O2 with the sanitizers reports -Wmismatched-new-delete inside this coroutine's frame
// (Asio's awaitable_frame_base has a matching operator new/delete pair; GCC's inliner loses track of it).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
// One exchange. Touches only `state` (never the Server, which may be gone when the frame is destroyed).
asio::awaitable<void> serve(std::shared_ptr<detail::ServerState> state, std::list<detail::Connection>::iterator connection) {
  struct Unregister {
    std::shared_ptr<detail::ServerState> state;
    std::list<detail::Connection>::iterator connection;
    ~Unregister() {
      state->held.erase(connection);
      state->slot_freed.cancel();
    }
  } unregister{state, connection};
  auto& socket = connection->socket;
  const ServerOptions& options = state->options;

  // The head's deadline runs from the accept, for the whole head: a client that trickles bytes gains nothing.
  std::string head;
  asio::steady_timer timer(socket.get_executor());
  timer.expires_after(options.head_timeout);
  auto read = co_await (asio::async_read_until(socket, asio::dynamic_buffer(head, max_request_head), "\r\n\r\n",
                                               as_tuple(asio::use_awaitable)) ||
                        timer.async_wait(as_tuple(asio::use_awaitable)));
  if (connection->evicted) co_return;
  Response response;
  bool head_only = false;
  if (read.index() == 1) {
    response = {408, "request timeout\n"};
  } else if (const auto [ec, n] = std::get<0>(read); ec) {
    if (ec != asio::error::not_found) co_return;  // the client went away: nobody to answer
    response = {431, "request head too large\n"};  // the buffer's limit was reached before the blank line
  } else {
    // A complete request: answered before anything newer, so it is no longer evicted to make room.
    connection->waiting_on_client = false;
    auto parsed = parse_request(std::string_view(head).substr(0, n));
    if (const int* status = std::get_if<int>(&parsed)) {
      response = {*status, std::string(reason_phrase(*status)) + "\n"};
    } else {
      auto& request = std::get<Request>(parsed);
      std::error_code peer_error;
      request.peer = socket.remote_endpoint(peer_error);
      if (!options.any_method && request.method != "GET" && request.method != "HEAD") {
        response = {405, "only GET and HEAD\n"};
      } else {
        head_only = request.method == "HEAD";
        try {
          response = state->handler(request);
        } catch (const std::exception& e) {
          response = {500, std::string(e.what()) + "\n"};
        }
      }
    }
  }
  std::string().swap(head);  // the head's buffer is not needed while the answer goes out
  const std::string bytes = serialize(response, head_only);
  timer.expires_after(options.write_timeout);
  co_await (asio::async_write(socket, asio::buffer(bytes), as_tuple(asio::use_awaitable)) ||
            timer.async_wait(as_tuple(asio::use_awaitable)));
  if (connection->evicted) co_return;
  connection->waiting_on_client = true;
  // FIN, then read what the client may still send (a body we ignored) until it closes, so that closing
  // with unread bytes does not turn into a RST that could destroy the response in flight.
  std::error_code ignored;
  socket.shutdown(asio::socket_base::shutdown_send, ignored);
  std::array<char, 1024> sink{};
  std::size_t drained = 0;
  timer.expires_after(options.linger);
  while (drained < 64 * 1024) {
    auto rest = co_await (socket.async_read_some(asio::buffer(sink), as_tuple(asio::use_awaitable)) ||
                          timer.async_wait(as_tuple(asio::use_awaitable)));
    if (rest.index() == 1) break;
    const auto [ec, n] = std::get<0>(rest);
    if (ec) break;
    drained += n;
  }
}
#pragma GCC diagnostic pop

}  // namespace

Server::Server(asio::any_io_executor executor, asio::ip::tcp::endpoint endpoint, Handler handler,
               ServerOptions options)
    : strand_(asio::make_strand(executor)),
      acceptor_(strand_),
      state_(std::make_shared<detail::ServerState>(strand_, std::move(handler), options)) {
  const auto fail = [&](std::error_code ec, const char* what) {
    throw std::system_error(ec, fmt::format("listen on {}:{}: {}", endpoint.address().to_string(), endpoint.port(), what));
  };
  std::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (ec) fail(ec, "socket");
  acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) fail(ec, "SO_REUSEADDR");
  if (endpoint.address().is_v6()) {
    // A probe may come over either family (the kubelet uses the pod IP it knows), whatever the host's
    // net.ipv6.bindv6only says: an IPv6 address serves IPv4 too where the kernel can.
    acceptor_.set_option(asio::ip::v6_only(false), ec);
    if (ec) fail(ec, "IPV6_V6ONLY");
  }
  acceptor_.bind(endpoint, ec);
  if (ec) fail(ec, "bind");
  acceptor_.listen(options.backlog, ec);
  if (ec) fail(ec, "listen");
  local_ = acceptor_.local_endpoint();
}

void Server::start() { asio::co_spawn(strand_, accept_loop(), asio::detached); }

void Server::close() {
  asio::post(strand_, [this] {
    std::error_code ignored;
    acceptor_.close(ignored);
    state_->slot_freed.cancel();  // an accept loop waiting for room sees the acceptor closed
  });
}

asio::awaitable<void> Server::accept_loop() {
  const auto state = state_;
  asio::steady_timer backoff(strand_);
  while (acceptor_.is_open()) {
    if (state->held.size() >= state->options.max_connections) {
      // Full: make room by closing the oldest connection that waits on its client, or, when every one
      // is being answered, wait for one to end. Either way stop accepting meanwhile, so that new
      // connections queue in the listen backlog rather than being closed.
      state->evict_oldest_waiting();
      state->slot_freed.expires_at(asio::steady_timer::time_point::max());
      co_await state->slot_freed.async_wait(as_tuple(asio::use_awaitable));
      continue;
    }
    auto [ec, socket] = co_await acceptor_.async_accept(as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
    if (ec) {
      // Out of descriptors or memory: pause instead of spinning; anything else concerns one client.
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(as_tuple(asio::use_awaitable));
      continue;
    }
    // Registered before its coroutine starts, so that the count is right however the strand orders them.
    state->held.push_back(detail::Connection{std::move(socket)});
    asio::co_spawn(strand_, serve(state, std::prev(state->held.end())), asio::detached);
  }
}

asio::awaitable<ClientResult> get_status(asio::ip::tcp::endpoint endpoint, std::string host, std::string target,
                                         std::chrono::milliseconds timeout) {
  auto executor = co_await asio::this_coro::executor;
  asio::ip::tcp::socket socket(executor);
  asio::steady_timer timer(executor);
  timer.expires_after(timeout);
  auto connected = co_await (socket.async_connect(endpoint, as_tuple(asio::use_awaitable)) ||
                             timer.async_wait(as_tuple(asio::use_awaitable)));
  if (connected.index() == 1) co_return ClientResult{{}, "connect timed out"};
  if (const auto [ec] = std::get<0>(connected); ec) co_return ClientResult{{}, ec.message()};

  const std::string request =
      fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: podproxy-sidecar-wait\r\nConnection: close\r\n\r\n",
                  target, host);
  auto written = co_await (asio::async_write(socket, asio::buffer(request), as_tuple(asio::use_awaitable)) ||
                           timer.async_wait(as_tuple(asio::use_awaitable)));
  if (written.index() == 1) co_return ClientResult{{}, "request timed out"};
  if (const auto [ec, n] = std::get<0>(written); ec) co_return ClientResult{{}, ec.message()};

  std::string line;
  auto read = co_await (asio::async_read_until(socket, asio::dynamic_buffer(line, 1024), "\r\n",
                                               as_tuple(asio::use_awaitable)) ||
                        timer.async_wait(as_tuple(asio::use_awaitable)));
  if (read.index() == 1) co_return ClientResult{{}, "response timed out"};
  if (const auto [ec, n] = std::get<0>(read); ec) co_return ClientResult{{}, ec.message()};
  // "HTTP/1.1 200 OK"
  int status = 0;
  if (line.size() < 12 || line.compare(0, 5, "HTTP/") != 0 || line[8] != ' ' ||
      std::from_chars(line.data() + 9, line.data() + 12, status).ptr != line.data() + 12) {
    co_return ClientResult{{}, "not an HTTP response"};
  }
  co_return ClientResult{status, {}};
}

}  // namespace sidecar::http
