// SockmapProgram::load: opens, loads and attaches the embedded skeleton (libbpf).
#include <podproxy/relay/sockmap_program.hpp>

#include "sockmap_relay.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace podproxy {

struct SockmapProgram::Loaded {
  sockmap_relay* skeleton = nullptr;
};

namespace {

// libbpf prints its own diagnostics (verifier logs, missing BTF) on stderr by default; the library
// never logs by itself, so they are silenced and `why` carries the reason instead.
int quiet(enum libbpf_print_level, const char*, va_list) { return 0; }

std::string failed(const char* step, int error) {
  return std::string(step) + ": " + std::strerror(error < 0 ? -error : error);
}

}  // namespace

std::shared_ptr<const SockmapProgram> SockmapProgram::load(std::string& why) {
  libbpf_set_print(quiet);
  sockmap_relay* skeleton = sockmap_relay::open_and_load();
  if (!skeleton) {
    why = failed("loading the sockmap program", errno);
    return nullptr;
  }
  const int sockets = bpf_map__fd(skeleton->maps.sockets);
  const int peers = bpf_map__fd(skeleton->maps.peers);
  const int program = bpf_program__fd(skeleton->progs.relay_verdict);
  if (bpf_prog_attach(program, sockets, BPF_SK_SKB_STREAM_VERDICT, 0) != 0) {
    why = failed("attaching the stream verdict program to the sockhash", errno);
    sockmap_relay::destroy(skeleton);
    return nullptr;
  }
  auto* loaded = new (std::nothrow) Loaded{skeleton};
  if (!loaded) {
    sockmap_relay::destroy(skeleton);
    why = "out of memory";
    return nullptr;
  }
  return std::shared_ptr<const SockmapProgram>(new SockmapProgram(loaded, sockets, peers));
}

SockmapProgram::~SockmapProgram() {
  sockmap_relay::destroy(loaded_->skeleton);
  delete loaded_;
}

}  // namespace podproxy
