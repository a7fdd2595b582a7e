// podproxy-bench-proxy: a fixed-target TCP proxy with N threads (one io_context and one SO_REUSEPORT
// Acceptor per thread, sharing one ProxyStats and one PipePool), for bench/compare and the memory benchmark.
//
//   podproxy-bench-proxy --listen 127.0.0.1:0 --upstream 127.0.0.1:8080 [--relay splice|buffered]
//                        [--threads N] [--pipe-size BYTES] [--max-pipes N] [--control]
//
// Prints "listening on HOST:PORT" once every thread accepts. With --control it reads commands from stdin
// ("stats" prints one line of key=value figures: connections open, pipes lent and idle, VmRSS, heap in
// use, the process's CPU seconds) and exits when stdin closes, so a parent that dies takes it along.
// Without --control it runs until SIGINT or SIGTERM.
#include <podproxy/podproxy.hpp>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include <malloc.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace {

struct Options {
  asio::ip::tcp::endpoint listen{asio::ip::address_v4::loopback(), 0};
  asio::ip::tcp::endpoint upstream{};
  std::string relay = "splice";
  unsigned threads = 1;
  std::size_t pipe_size = 1024 * 1024;
  std::size_t max_pipes = 64;
  bool control = false;
};

asio::ip::tcp::endpoint parse_endpoint(const std::string& text) {
  const auto endpoint = podproxy::parse_endpoint(text);
  if (!endpoint) throw std::invalid_argument("expected HOST:PORT, got " + text);
  return *endpoint;
}

Options parse(int argc, char** argv) {
  Options o;
  bool have_upstream = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--listen") o.listen = parse_endpoint(value());
    else if (arg == "--upstream") o.upstream = parse_endpoint(value()), have_upstream = true;
    else if (arg == "--relay") o.relay = value();
    else if (arg == "--threads") o.threads = static_cast<unsigned>(std::stoul(value()));
    else if (arg == "--pipe-size") o.pipe_size = std::stoul(value());
    else if (arg == "--max-pipes") o.max_pipes = std::stoul(value());
    else if (arg == "--control") o.control = true;
    else throw std::invalid_argument("unknown option " + arg);
  }
  if (!have_upstream) throw std::invalid_argument("--upstream HOST:PORT is required");
  if (o.relay != "splice" && o.relay != "buffered") throw std::invalid_argument("--relay splice|buffered");
  if (o.threads == 0 || o.threads > 64) throw std::invalid_argument("--threads 1..64");
  return o;
}

long vm_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "podproxy-bench-proxy: " << e.what() << '\n';
    return 2;
  }
  // Idle-connection runs need thousands of descriptors: take the hard limit.
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &limit);
  }

  auto stats = std::make_shared<podproxy::ProxyStats>();
  auto pool = std::make_shared<podproxy::PipePool>(
      podproxy::PipePoolOptions{.pipe_size = options.pipe_size, .max_pipes = options.max_pipes});
  const podproxy::FixedPolicy policy{{.endpoint = options.upstream}};
  podproxy::WorkerGroup workers(options.threads);
  asio::ip::tcp::endpoint bound;
  try {
    const podproxy::AcceptorOptions listen{.endpoint = options.listen, .reuse_port = true};
    const podproxy::ProxyOptions proxy_options{.stats = stats};
    bound = options.relay == "splice"
                ? workers.add<podproxy::LocalAddress>(listen, policy, podproxy::SpliceRelay(pool), proxy_options).local_endpoint
                : workers.add<podproxy::LocalAddress>(listen, policy, podproxy::BufferedRelay{}, proxy_options).local_endpoint;
  } catch (const std::system_error& e) {
    std::cerr << "podproxy-bench-proxy: " << e.what() << '\n';
    return 1;
  }
  workers.start();
  std::thread runner([&] { workers.run(); });
  std::cout << "listening on " << bound << std::endl;

  const auto stop_all = [&] { workers.stop(std::chrono::milliseconds(0), [&] { workers.halt(); }); };
  std::thread control;
  asio::io_context signals_io{1};
  asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  if (options.control) {
    control = std::thread([&] {
      std::string command;
      while (std::getline(std::cin, command)) {
        if (command == "stats") {
          const std::size_t active = workers.active();
          const auto pipes = pool->stats();
          const auto heap = ::mallinfo2();
          rusage usage{};
          ::getrusage(RUSAGE_SELF, &usage);
          const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                             static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
          std::cout << "active=" << active << " lent=" << pipes.lent << " idle_pipes=" << pipes.idle
                    << " pipes_created=" << pipes.created << " pipe_capacity=" << pipes.pipe_capacity
                    << " rss_kib=" << vm_rss_kib() << " heap_bytes=" << heap.uordblks
                    << " cx_total=" << stats->downstream_cx_total.load() << " cpu_s=" << cpu << std::endl;
        } else {
          std::cout << "error unknown command" << std::endl;
        }
      }
      stop_all();
    });
  } else {
    signals.async_wait([&](std::error_code, int) { stop_all(); });
    control = std::thread([&] { signals_io.run(); });
  }
  runner.join();
  signals_io.stop();
  if (control.joinable()) control.join();
  return 0;
}
