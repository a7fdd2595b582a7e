// SessionRegistry: the live connections of a proxy, so that timeouts and a drain deadline can reach them.
#pragma once

#include <mutex>

namespace podproxy::detail {

/// What a registered session carries: its links in the registry's list (no allocation to register).
struct RegistryHook {
  RegistryHook* prev = nullptr;
  RegistryHook* next = nullptr;
};

/// Thread-safe intrusive list of live sessions.
class SessionRegistry {
 public:
  SessionRegistry() noexcept { head_.prev = head_.next = &head_; }
  SessionRegistry(const SessionRegistry&) = delete;
  SessionRegistry& operator=(const SessionRegistry&) = delete;

  void add(RegistryHook& hook) noexcept {
    std::lock_guard lock(mutex_);
    hook.prev = head_.prev;
    hook.next = &head_;
    head_.prev->next = &hook;
    head_.prev = &hook;
  }

  void remove(RegistryHook& hook) noexcept {
    std::lock_guard lock(mutex_);
    hook.prev->next = hook.next;
    hook.next->prev = hook.prev;
    hook.prev = hook.next = nullptr;
  }

  /// Calls `f(RegistryHook&)` for every live session, under the registry's lock: a session cannot be
  /// removed (and so destroyed) by another thread while `f` looks at it. `f` must not block or call back
  /// into the registry; it may destroy the session it is given (the next one is read before the call).
  template <class F>
  void for_each(F&& f) {
    std::lock_guard lock(mutex_);
    for (RegistryHook* hook = head_.next; hook != &head_;) {
      RegistryHook* next = hook->next;
      f(*hook);
      hook = next;
    }
  }

 private:
  std::mutex mutex_;
  RegistryHook head_;
};

}  // namespace podproxy::detail
