// The inbound policy of `run --mode tproxy`: the library's OriginalSourcePolicy, except toward loopback.
#pragma once

#include <cstddef>  // before any Asio header: see http.hpp

#include <podproxy/policy/original_source_policy.hpp>

#include <utility>

namespace sidecar {

/// Delivers from the client's own address (podproxy::OriginalSourcePolicy) so the application sees the real
/// client, except when the target is a loopback address (the loopback policy, a 127.0.0.1 default
/// endpoint): a packet from a non-local source to 127.0.0.1 is a martian the kernel drops, so those are
/// delivered from loopback as under REDIRECT, and the application sees 127.0.0.1.
template <podproxy::concepts::UpstreamPolicy Inner>
class OriginalSourceOffLoopbackPolicy {
 public:
  explicit OriginalSourceOffLoopbackPolicy(Inner inner) : inner_(inner), transparent_(std::move(inner)) {}

  [[nodiscard]] std::optional<podproxy::UpstreamTarget> upstream_for(const podproxy::Downstream& downstream) const {
    auto target = inner_.upstream_for(downstream);
    if (!target || target->endpoint.address().is_loopback()) return target;
    return transparent_.upstream_for(downstream);
  }

 private:
  Inner inner_;
  podproxy::OriginalSourcePolicy<Inner> transparent_;
};

}  // namespace sidecar
