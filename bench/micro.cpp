// podproxy_bench: microbenchmarks of the relays over loopback TCP, each against a direct socket-to-socket
// baseline in the same binary: throughput (with the proxy thread's CPU per GiB), connection setup rate,
// 64-byte round-trip percentiles, and the memory and pipes idle connections hold.
//
//   cmake --preset release && cmake --build build/release --target podproxy_bench -j2
//   build/release/bench/podproxy_bench [--benchmark_filter=Throughput]
//
// Clients and servers are blocking sockets on their own threads; the proxy runs on one thread with its own
// io_context (as podproxy-tcp does). Any failure (a refused connect, a short read, a wrong reply) ends the
// benchmark with SkipWithError: no number is reported for it.
#include <podproxy/podproxy.hpp>

#include <benchmark/benchmark.h>

#include <asio/io_context.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------------------
// Blocking socket helpers.

/// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  [[nodiscard]] int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

void set_nodelay(int fd) {
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/// A loopback listener on a kernel-chosen port.
Fd listen_loopback(unsigned short& port, int backlog = 1024) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return {};
  const int one = 1;
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return {};
  if (::listen(fd.get(), backlog) != 0) return {};
  socklen_t length = sizeof address;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length);
  port = ntohs(address.sin_port);
  return fd;
}

Fd connect_loopback(unsigned short port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return {};
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return {};
  set_nodelay(fd.get());
  return fd;
}

bool write_all(int fd, const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool read_exact(int fd, void* data, std::size_t size) {
  auto* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::recv(fd, p, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

/// Reads until EOF (at most `limit` bytes); nullopt on an error or when more than `limit` arrive.
std::optional<std::string> read_to_eof(int fd, std::size_t limit = 64) {
  std::string text;
  char buffer[64];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > limit) return std::nullopt;
  }
}

/// Reads up to and including the first '\n' (at most `limit` bytes).
std::optional<std::string> read_line(int fd, std::size_t limit = 64) {
  std::string text;
  char c;
  while (text.size() < limit) {
    const ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    text.push_back(c);
    if (c == '\n') return text;
  }
  return std::nullopt;
}

/// A loopback server: one thread accepts and serves each connection in turn with `serve(fd)`. Stopped by
/// shutting the listener down, which wakes the blocked accept.
class Server {
 public:
  explicit Server(std::function<void(int)> serve) : serve_(std::move(serve)) {
    listener_ = listen_loopback(port_);
    if (!listener_) return;
    thread_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EINTR || errno == ECONNABORTED) continue;
          return;  // shut down
        }
        set_nodelay(fd);
        Fd connection(fd);
        serve_(connection.get());
      }
    });
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server() {
    if (listener_) ::shutdown(listener_.get(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] bool ok() const noexcept { return static_cast<bool>(listener_); }
  [[nodiscard]] unsigned short port() const noexcept { return port_; }

 private:
  std::function<void(int)> serve_;
  unsigned short port_ = 0;
  Fd listener_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------------------
// The proxy under test, in process on its own thread.

enum class Path { direct, splice, buffered };

using Acceptor = podproxy::Acceptor<podproxy::LocalAddress>;

/// One thread running one io_context with a podproxy Proxy to a fixed upstream.
template <class Relay>
class ProxyThread {
 public:
  ProxyThread(unsigned short upstream_port, Relay relay)
      : proxy_(Acceptor(io_.get_executor(), {.strand_per_connection = false}),
               podproxy::FixedPolicy{{.endpoint = {asio::ip::address_v4::loopback(), upstream_port}}},
               std::move(relay)) {
    proxy_.start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ProxyThread(const ProxyThread&) = delete;
  ProxyThread& operator=(const ProxyThread&) = delete;
  ~ProxyThread() {
    auto stopped = std::make_shared<std::promise<void>>();
    auto done = stopped->get_future();
    proxy_.stop(0ms, [stopped] { stopped->set_value(); });
    // Bounded: a proxy that does not stop is not waited for forever.
    (void)done.wait_for(5s);
    io_.stop();
    thread_.join();
  }

  [[nodiscard]] unsigned short port() const { return proxy_.local_endpoint().port(); }
  [[nodiscard]] const Relay& relay() const { return proxy_.relay(); }

  /// CPU seconds the proxy's thread has used so far (user + system).
  [[nodiscard]] double cpu_seconds() const {
    clockid_t clock{};
    if (::pthread_getcpuclockid(const_cast<std::thread&>(thread_).native_handle(), &clock) != 0) return -1;
    timespec ts{};
    if (::clock_gettime(clock, &ts) != 0) return -1;
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  }

 private:
  asio::io_context io_{1};
  podproxy::Proxy<Acceptor, podproxy::FixedPolicy, Relay> proxy_;
  std::thread thread_;
};

/// The path a benchmark's client takes to the server: straight there, or through a proxy of one relay.
class Route {
 public:
  Route(Path path, unsigned short server_port, std::size_t pipe_size) : server_port_(server_port) {
    switch (path) {
      case Path::direct: break;
      case Path::splice:
        pool_ = std::make_shared<podproxy::PipePool>(podproxy::PipePoolOptions{.pipe_size = pipe_size});
        splice_ = std::make_unique<ProxyThread<podproxy::SpliceRelay>>(server_port, podproxy::SpliceRelay(pool_));
        break;
      case Path::buffered:
        buffered_ = std::make_unique<ProxyThread<podproxy::BufferedRelay>>(server_port, podproxy::BufferedRelay{});
        break;
    }
  }
  [[nodiscard]] unsigned short port() const {
    return splice_ ? splice_->port() : buffered_ ? buffered_->port() : server_port_;
  }
  [[nodiscard]] bool proxied() const { return splice_ || buffered_; }
  [[nodiscard]] double proxy_cpu_seconds() const {
    return splice_ ? splice_->cpu_seconds() : buffered_ ? buffered_->cpu_seconds() : 0.0;
  }
  [[nodiscard]] const podproxy::PipePool* pool() const { return pool_.get(); }

 private:
  unsigned short server_port_;
  std::shared_ptr<podproxy::PipePool> pool_;
  std::unique_ptr<ProxyThread<podproxy::SpliceRelay>> splice_;
  std::unique_ptr<ProxyThread<podproxy::BufferedRelay>> buffered_;
};

std::size_t pipe_size_arg(const benchmark::State& state, Path path) {
  return path == Path::splice ? static_cast<std::size_t>(state.range(1)) * 1024 : 0;
}

// ---------------------------------------------------------------------------------------------------------
// Throughput: one long-lived connection; each iteration sends `size` bytes, the server acknowledges them
// with one byte once all arrived.

template <Path path>
void BM_Throughput(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  Server server([size](int fd) {
    std::vector<char> buffer(1024 * 1024);
    std::size_t pending = 0;
    for (;;) {
      const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      pending += static_cast<std::size_t>(n);
      for (; pending >= size; pending -= size) {
        if (!write_all(fd, "k", 1)) return;
      }
    }
  });
  if (!server.ok()) return state.SkipWithError("server: cannot listen");
  Route route(path, server.port(), pipe_size_arg(state, path));
  Fd client = connect_loopback(route.port());
  if (!client) return state.SkipWithError("connect failed");
  const std::vector<char> payload(std::min<std::size_t>(size, 4 * 1024 * 1024), 'x');

  const double cpu_before = route.proxy_cpu_seconds();
  for (auto _ : state) {
    for (std::size_t sent = 0; sent < size;) {
      const std::size_t chunk = std::min(payload.size(), size - sent);
      if (!write_all(client.get(), payload.data(), chunk)) return state.SkipWithError("send failed");
      sent += chunk;
    }
    char ack = 0;
    if (!read_exact(client.get(), &ack, 1) || ack != 'k') return state.SkipWithError("no acknowledgement");
  }
  const double cpu = route.proxy_cpu_seconds() - cpu_before;
  const double bytes = static_cast<double>(state.iterations()) * static_cast<double>(size);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  if (route.proxied()) {
    state.counters["proxy_cpu_s_per_GiB"] = cpu / (bytes / (1024.0 * 1024.0 * 1024.0));
  }
  if (const auto* pool = route.pool()) {
    const auto s = pool->stats();
    state.counters["pipe_capacity_KiB"] = static_cast<double>(s.pipe_capacity) / 1024.0;
    state.counters["pool_exhausted"] = static_cast<double>(s.exhausted);
  }
}

void direct_sizes(benchmark::internal::Benchmark* b) {
  for (const std::int64_t s : {4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20}) b->Args({s});
  b->ArgNames({"bytes"});
}
void splice_sizes(benchmark::internal::Benchmark* b) {
  for (const std::int64_t s : {4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20}) {
    for (const std::int64_t pipe_kib : {64, 1024}) b->Args({s, pipe_kib});
  }
  b->ArgNames({"bytes", "pipe_KiB"});
}

BENCHMARK(BM_Throughput<Path::direct>)->Name("Throughput/direct")->Apply(direct_sizes)->UseRealTime();
BENCHMARK(BM_Throughput<Path::splice>)->Name("Throughput/splice")->Apply(splice_sizes)->UseRealTime();
BENCHMARK(BM_Throughput<Path::buffered>)->Name("Throughput/buffered")->Apply(direct_sizes)->UseRealTime();

// ---------------------------------------------------------------------------------------------------------
// Connection setup: connect, send "ping\n", read "pong\n" to EOF, close. The server closes first, as an
// HTTP/1.0 server does, so TIME_WAIT stays on its fixed port and the client's ephemeral ports are reused.

void serve_ping(int fd) {
  const auto line = read_line(fd);
  if (line && *line == "ping\n") (void)write_all(fd, "pong\n", 5);
}

template <Path path>
void BM_ConnectionRate(benchmark::State& state) {
  Server server(serve_ping);
  if (!server.ok()) return state.SkipWithError("server: cannot listen");
  Route route(path, server.port(), 64 * 1024);
  const double cpu_before = route.proxy_cpu_seconds();
  for (auto _ : state) {
    Fd client = connect_loopback(route.port());
    if (!client) return state.SkipWithError("connect failed");
    if (!write_all(client.get(), "ping\n", 5)) return state.SkipWithError("send failed");
    const auto reply = read_to_eof(client.get());
    if (!reply || *reply != "pong\n") return state.SkipWithError("no pong");
  }
  state.counters["connections_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  // CPU time is far less disturbed than wall time by other load on a shared machine: compare this first.
  if (route.proxied()) {
    state.counters["proxy_cpu_us_per_conn"] =
        (route.proxy_cpu_seconds() - cpu_before) * 1e6 / static_cast<double>(state.iterations());
  }
}

BENCHMARK(BM_ConnectionRate<Path::direct>)->Name("ConnectionRate/direct")->UseRealTime()->MinTime(0.5);
BENCHMARK(BM_ConnectionRate<Path::splice>)->Name("ConnectionRate/splice")->UseRealTime()->MinTime(0.5);
BENCHMARK(BM_ConnectionRate<Path::buffered>)->Name("ConnectionRate/buffered")->UseRealTime()->MinTime(0.5);

// ---------------------------------------------------------------------------------------------------------
// Round trip: 64 bytes to an echo server and back on one connection; p50 and p99 of the iterations.

template <Path path>
void BM_RoundTrip(benchmark::State& state) {
  constexpr std::size_t kSize = 64;
  Server server([](int fd) {
    char buffer[kSize];
    while (read_exact(fd, buffer, kSize) && write_all(fd, buffer, kSize)) {
    }
  });
  if (!server.ok()) return state.SkipWithError("server: cannot listen");
  Route route(path, server.port(), 64 * 1024);
  Fd client = connect_loopback(route.port());
  if (!client) return state.SkipWithError("connect failed");
  char out[kSize];
  char in[kSize];
  std::memset(out, 'p', kSize);
  std::vector<double> micros;
  micros.reserve(1 << 20);
  const double cpu_before = route.proxy_cpu_seconds();
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    if (!write_all(client.get(), out, kSize) || !read_exact(client.get(), in, kSize)) {
      return state.SkipWithError("echo failed");
    }
    if (micros.size() < micros.capacity()) {
      micros.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
    }
  }
  if (micros.empty()) return state.SkipWithError("no samples");
  std::sort(micros.begin(), micros.end());
  const auto at = [&](double q) { return micros[static_cast<std::size_t>(q * static_cast<double>(micros.size() - 1))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  if (route.proxied()) {
    state.counters["proxy_cpu_us_per_rt"] =
        (route.proxy_cpu_seconds() - cpu_before) * 1e6 / static_cast<double>(state.iterations());
  }
}

BENCHMARK(BM_RoundTrip<Path::direct>)->Name("RoundTrip64/direct")->UseRealTime()->MinTime(0.5);
BENCHMARK(BM_RoundTrip<Path::splice>)->Name("RoundTrip64/splice")->UseRealTime()->MinTime(0.5);
BENCHMARK(BM_RoundTrip<Path::buffered>)->Name("RoundTrip64/buffered")->UseRealTime()->MinTime(0.5);

// ---------------------------------------------------------------------------------------------------------
// Idle connections: 8,000 connections through podproxy-bench-proxy in a child process (the proxy uses 2
// descriptors per connection, this process another 2: 16,000 each, under the 20,000 limit), each having
// carried one ping and pong, then left idle. Reported from the child: VmRSS and heap in use (mallinfo2)
// growth per connection, and the pipes the pool has lent (idle connections must hold none).

/// The bench proxy as a child process, driven over its stdin/stdout (--control).
class ChildProxy {
 public:
  ChildProxy(const std::string& relay, unsigned short upstream_port) {
    int to_child[2];
    int from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0) return;
    if (::pipe2(from_child, O_CLOEXEC) != 0) {
      ::close(to_child[0]);
      ::close(to_child[1]);
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
    const std::string upstream = "127.0.0.1:" + std::to_string(upstream_port);
    std::vector<std::string> args = {PODPROXY_BENCH_PROXY, "--listen", "127.0.0.1:0", "--upstream", upstream,
                                     "--relay", relay, "--pipe-size", "65536", "--control"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, PODPROXY_BENCH_PROXY, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(to_child[0]);
    ::close(from_child[1]);
    to_ = Fd(to_child[1]);
    from_ = Fd(from_child[0]);
    if (rc != 0) {
      pid_ = -1;
      return;
    }
    const auto line = line_from_child(10s);
    if (line && line->rfind("listening on ", 0) == 0) {
      port_ = static_cast<unsigned short>(std::stoul(line->substr(line->rfind(':') + 1)));
    }
  }
  ChildProxy(const ChildProxy&) = delete;
  ChildProxy& operator=(const ChildProxy&) = delete;
  ~ChildProxy() {
    to_.reset();  // EOF on its stdin: the child stops and exits
    if (pid_ <= 0) return;
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(50ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }

  [[nodiscard]] unsigned short port() const noexcept { return port_; }

  /// One "stats" reply as key -> value.
  std::optional<std::map<std::string, double>> stats() {
    if (::write(to_.get(), "stats\n", 6) != 6) return std::nullopt;  // a pipe: send(2) would fail
    const auto line = line_from_child(10s);
    if (!line) return std::nullopt;
    std::map<std::string, double> values;
    std::istringstream words(*line);
    std::string word;
    while (words >> word) {
      const auto eq = word.find('=');
      if (eq != std::string::npos) values[word.substr(0, eq)] = std::stod(word.substr(eq + 1));
    }
    return values;
  }

 private:
  std::optional<std::string> line_from_child(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto newline = buffered_.find('\n');
      if (newline != std::string::npos) {
        std::string line = buffered_.substr(0, newline);
        buffered_.erase(0, newline + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return std::nullopt;
      pollfd p{from_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[512];
      const ssize_t n = ::read(from_.get(), chunk, sizeof chunk);
      if (n <= 0) return std::nullopt;
      buffered_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  pid_t pid_ = -1;
  Fd to_;
  Fd from_;
  std::string buffered_;
  unsigned short port_ = 0;
};

/// Opens a connection through the proxy, accepts its upstream side and passes one ping and pong.
bool open_idle_connection(unsigned short proxy_port, int listener, std::vector<Fd>& keep) {
  Fd client = connect_loopback(proxy_port);
  if (!client) return false;
  if (!write_all(client.get(), "ping\n", 5)) return false;
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) return false;
  Fd server(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!server) return false;
  const auto line = read_line(server.get());
  if (!line || *line != "ping\n" || !write_all(server.get(), "pong\n", 5)) return false;
  const auto reply = read_line(client.get());
  if (!reply || *reply != "pong\n") return false;
  keep.push_back(std::move(client));
  keep.push_back(std::move(server));
  return true;
}

void BM_IdleConnections(benchmark::State& state, const std::string& relay) {
  const auto count = static_cast<std::size_t>(state.range(0));
  unsigned short server_port = 0;
  Fd listener = listen_loopback(server_port, 4096);
  if (!listener) return state.SkipWithError("server: cannot listen");
  for (auto _ : state) {
    ChildProxy proxy(relay, server_port);
    if (proxy.port() == 0) return state.SkipWithError("cannot start " PODPROXY_BENCH_PROXY);
    std::vector<Fd> connections;
    connections.reserve(2 * count);
    // Warm up (first allocations of Asio's reactor, the pool's idle pipes) before the baseline.
    for (int i = 0; i < 32; ++i) {
      if (!open_idle_connection(proxy.port(), listener.get(), connections)) return state.SkipWithError("warm-up failed");
    }
    connections.clear();
    std::this_thread::sleep_for(200ms);
    const auto before = proxy.stats();
    if (!before) return state.SkipWithError("no stats from the proxy");
    for (std::size_t i = 0; i < count; ++i) {
      if (!open_idle_connection(proxy.port(), listener.get(), connections)) {
        return state.SkipWithError(("connection " + std::to_string(i) + " failed").c_str());
      }
    }
    std::this_thread::sleep_for(200ms);
    const auto after = proxy.stats();
    if (!after) return state.SkipWithError("no stats from the proxy");
    const auto n = static_cast<double>(count);
    state.counters["connections"] = after->at("active");
    state.counters["rss_B_per_conn"] = (after->at("rss_kib") - before->at("rss_kib")) * 1024.0 / n;
    state.counters["heap_B_per_conn"] = (after->at("heap_bytes") - before->at("heap_bytes")) / n;
    state.counters["pipes_lent"] = after->at("lent");
    state.counters["pipes_pooled"] = after->at("idle_pipes");
    if (after->at("active") != n) return state.SkipWithError("the proxy does not hold every connection");
    if (after->at("lent") != 0) return state.SkipWithError("idle connections hold pipes");
  }
}

BENCHMARK_CAPTURE(BM_IdleConnections, splice, std::string("splice"))
    ->Name("IdleConnections/splice")->Arg(8000)->ArgNames({"connections"})->Iterations(1)->UseRealTime();
BENCHMARK_CAPTURE(BM_IdleConnections, buffered, std::string("buffered"))
    ->Name("IdleConnections/buffered")->Arg(8000)->ArgNames({"connections"})->Iterations(1)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &limit);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
