// WorkerGroup: proxies served by several threads, each with an io_context and SO_REUSEPORT listeners of its own.
#pragma once

#include <podproxy/acceptor.hpp>
#include <podproxy/concepts/destination_source.hpp>
#include <podproxy/concepts/relay.hpp>
#include <podproxy/concepts/upstream_policy.hpp>
#include <podproxy/proxy.hpp>
#include <podproxy/proxy_options.hpp>
#include <podproxy/stats.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace podproxy {

/// What a listener added to a WorkerGroup is: where it listens, and the counters its proxies share.
struct WorkerListener {
  asio::ip::tcp::endpoint local_endpoint;
  std::shared_ptr<ProxyStats> stats;
};

/// N workers, each an io_context run by one thread of its own. Every listener added gets one Proxy per
/// worker, on an SO_REUSEPORT acceptor of the same port, and the proxies of a listener count into one
/// ProxyStats; what the relay shares (a SpliceRelay's PipePool) is shared by all. The kernel spreads new
/// connections over the workers and a connection stays on the thread that accepted it: no strand, no lock,
/// no hop between threads on the relay's path. The fast way to use several cores (bench/README.md).
///
/// Worker 0's io_context runs on the thread that calls run(): put what is not a proxy (an admin server,
/// signals) there, through context(0).
///
/// Thread safety: add() before start(), from one thread. start, stop, halt and active may be called from any
/// thread. Lifetime: the group must outlive run(); destroying it resets whatever connections are left.
class WorkerGroup {
 public:
  /// `threads` workers (at least 1).
  explicit WorkerGroup(unsigned threads) {
    if (threads == 0) throw std::invalid_argument("WorkerGroup: at least one thread");
    for (unsigned i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>());
  }
  WorkerGroup(const WorkerGroup&) = delete;
  WorkerGroup& operator=(const WorkerGroup&) = delete;

  /// Adds a listener served by every worker. The first worker's acceptor binds `acceptor.endpoint` (port 0
  /// asks the kernel for one) and the others join its port. `reuse_port` is set when there are several
  /// workers, and `strand_per_connection` cleared (each io_context has one thread). `options.stats`, when
  /// null, gets counters of the listener's own. Throws what binding throws (std::system_error).
  template <concepts::DestinationSource Source = RedirectedOrLocal, concepts::UpstreamPolicy Policy,
            concepts::Relay Relay>
  WorkerListener add(AcceptorOptions acceptor, const Policy& policy, const Relay& relay, ProxyOptions options = {}) {
    using ProxyType = Proxy<Acceptor<Source>, Policy, Relay>;
    if (!options.stats) options.stats = std::make_shared<ProxyStats>();
    acceptor.reuse_port = acceptor.reuse_port || workers_.size() > 1;
    acceptor.strand_per_connection = false;
    for (auto& worker : workers_) {
      auto served = std::make_unique<Served<ProxyType>>(Acceptor<Source>(worker->io.get_executor(), acceptor), policy,
                                                        relay, options);
      acceptor.endpoint = served->proxy.local_endpoint();
      worker->proxies.push_back(std::move(served));
    }
    return {acceptor.endpoint, options.stats};
  }

  [[nodiscard]] std::size_t size() const noexcept { return workers_.size(); }
  /// Worker `i`'s io_context (worker 0's is run by the thread that calls run()).
  [[nodiscard]] asio::io_context& context(std::size_t i) { return workers_.at(i)->io; }

  /// Connections open now, over every listener and worker.
  [[nodiscard]] std::size_t active() const {
    std::size_t n = 0;
    for (const auto& worker : workers_) {
      for (const auto& proxy : worker->proxies) n += proxy->active();
    }
    return n;
  }

  /// Starts every proxy (they accept once run() runs their io_contexts).
  void start() {
    for (const auto& worker : workers_) {
      for (const auto& proxy : worker->proxies) proxy->start();
    }
  }

  /// Stops accepting on every listener, lets in-flight connections finish for up to `drain`, then resets
  /// the rest (Proxy::stop). `on_stopped` is called once, from the thread of the proxy that finished last,
  /// when every connection is gone. A later call (from the first call's thread, or once it returned) may
  /// only bring the deadline closer; its `on_stopped` is ignored (Proxy::stop).
  void stop(std::chrono::steady_clock::duration drain, std::function<void()> on_stopped = {}) {
    if (stopping_.exchange(true)) {
      for (const auto& worker : workers_) {
        for (const auto& proxy : worker->proxies) proxy->stop(drain, {});
      }
      return;
    }
    on_stopped_ = std::move(on_stopped);
    std::size_t proxies = 0;
    for (const auto& worker : workers_) proxies += worker->proxies.size();
    remaining_.store(proxies);
    if (proxies == 0) {
      if (on_stopped_) on_stopped_();
      return;
    }
    for (const auto& worker : workers_) {
      for (const auto& proxy : worker->proxies) {
        proxy->stop(drain, [this] {
          if (remaining_.fetch_sub(1) == 1 && on_stopped_) on_stopped_();
        });
      }
    }
  }

  /// Stops every io_context now: run() returns, and connections still open are reset when the group is
  /// destroyed.
  void halt() {
    for (const auto& worker : workers_) worker->io.stop();
  }

  /// Runs worker 0 on this thread and every other worker on a thread of its own. Returns when every
  /// worker's io_context has stopped: halt(), or each ran out of work (its proxies stopped, nothing else
  /// queued). Worker 0 running out of work first must not stop the others: they may still be draining.
  void run() {
    std::vector<std::jthread> threads;
    for (std::size_t i = 1; i < workers_.size(); ++i) {
      threads.emplace_back([&io = workers_[i]->io] { io.run(); });
    }
    workers_.front()->io.run();
  }  // joins the others

 private:
  /// One proxy of one worker, behind what the group needs of it.
  struct Runnable {
    virtual ~Runnable() = default;
    virtual void start() = 0;
    virtual void stop(std::chrono::steady_clock::duration drain, std::function<void()> on_stopped) = 0;
    [[nodiscard]] virtual std::size_t active() const = 0;
  };
  template <class ProxyType>
  struct Served final : Runnable {
    template <class... Args>
    explicit Served(Args&&... args) : proxy(std::forward<Args>(args)...) {}
    void start() override { proxy.start(); }
    void stop(std::chrono::steady_clock::duration drain, std::function<void()> on_stopped) override {
      proxy.stop(drain, std::move(on_stopped));
    }
    [[nodiscard]] std::size_t active() const override { return proxy.active(); }
    ProxyType proxy;
  };
  /// The proxies are declared after the io_context: destroyed first, while their timers' context exists.
  struct Worker {
    asio::io_context io{1};
    std::vector<std::unique_ptr<Runnable>> proxies;
  };

  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> remaining_{0};
  std::function<void()> on_stopped_;
};

}  // namespace podproxy
