// podproxy-sidecar: entry point; every command lives in its own file (see commands.hpp).
#include "cli_util.hpp"
#include "commands.hpp"

#include <podproxy/version.hpp>

#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"podproxy-sidecar: an Istio-style TCP sidecar built from podproxy"};
  app.set_version_flag("--version", PODPROXY_VERSION_STRING);
  app.require_subcommand(1);
  sidecar::add_init_command(app);
  sidecar::add_run_command(app);
  sidecar::add_wait_command(app);
  sidecar::add_check_binds_command(app);
  try {
    app.parse(argc, argv);  // runs the chosen command's callback
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();  // a command's own exit status (it already said why)
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : sidecar::usage_exit;
  }
  return 0;
}
