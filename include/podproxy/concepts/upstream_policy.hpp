// concepts::UpstreamPolicy: how a proxy chooses the upstream for each accepted connection.
#pragma once

#include <podproxy/downstream.hpp>
#include <podproxy/upstream_target.hpp>

#include <concepts>
#include <optional>

namespace podproxy::concepts {

/// A policy maps a downstream connection to the upstream to dial, or to std::nullopt to refuse it (the
/// proxy then resets the client). It is a small value type: copyable, and `upstream_for` is const and
/// may be called from several threads at once, so it must not mutate shared state without its own
/// synchronisation.
template <class P>
concept UpstreamPolicy = std::copy_constructible<P> && requires(const P& policy, const Downstream& downstream) {
  { policy.upstream_for(downstream) } -> std::same_as<std::optional<UpstreamTarget>>;
};

}  // namespace podproxy::concepts
