// podproxy: every public header, for users who want the whole library in one include.
#pragma once

#include <podproxy/acceptor.hpp>
#include <podproxy/concepts/connection_acceptor.hpp>
#include <podproxy/concepts/destination_source.hpp>
#include <podproxy/concepts/relay.hpp>
#include <podproxy/concepts/upstream_policy.hpp>
#include <podproxy/connection_record.hpp>
#include <podproxy/address.hpp>
#include <podproxy/downstream.hpp>
#include <podproxy/native_socket.hpp>
#include <podproxy/original_dst.hpp>
#include <podproxy/policy/fixed.hpp>
#include <podproxy/policy/loopback.hpp>
#include <podproxy/policy/original_source.hpp>
#include <podproxy/policy/pod_ip.hpp>
#include <podproxy/policy/port_override.hpp>
#include <podproxy/proxy.hpp>
#include <podproxy/proxy_options.hpp>
#include <podproxy/relay/buffered_relay.hpp>
#include <podproxy/relay/pipe.hpp>
#include <podproxy/relay/pipe_pool.hpp>
#include <podproxy/relay/pump.hpp>
#include <podproxy/relay/splice_relay.hpp>
#include <podproxy/stats.hpp>
#include <podproxy/upstream_target.hpp>
#include <podproxy/version.hpp>
