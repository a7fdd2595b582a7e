// concepts::ConnectionAcceptor: what a Proxy needs of the listener it takes connections from.
#pragma once

#include <podproxy/acceptor.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <chrono>
#include <concepts>

namespace podproxy::concepts {

/// A listener the proxy watches in its own epoll set (`native_handle`, then `accept_some` whenever it turns
/// readable, on `get_executor()`), or drives through Asio's reactor (`run`) when it cannot; `close` stops
/// it from any thread. Model: Acceptor<Source>.
template <class A>
concept ConnectionAcceptor = std::move_constructible<A> &&
    requires(A& acceptor, const A& view, void (*on_connection)(AcceptedConnection&&)) {
      { view.get_executor() } -> std::convertible_to<asio::any_io_executor>;
      { view.context_executor() } -> std::convertible_to<asio::any_io_executor>;
      { view.native_handle() } -> std::same_as<int>;
      { view.local_endpoint() } -> std::same_as<asio::ip::tcp::endpoint>;
      { view.options().overload_backoff } -> std::convertible_to<std::chrono::steady_clock::duration>;
      { acceptor.accept_some(on_connection) } -> std::same_as<AcceptStatus>;
      { acceptor.run(on_connection) } -> std::same_as<asio::awaitable<void>>;
      acceptor.close();
    };

static_assert(ConnectionAcceptor<Acceptor<>>);

}  // namespace podproxy::concepts
