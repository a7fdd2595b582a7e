// The sidecar's commands: each file registers one CLI11 subcommand on the application.
#pragma once

#include <CLI/CLI.hpp>

namespace sidecar {

// Conventions: a command's callback validates its flags with cli_util.hpp (CLI::ValidationError: message,
// exit 2), and ends with a non-zero status by throwing CLI::RuntimeError(status) after printing why.

/// `init`: writes (or with --clean removes, with --dry-run prints) the capture rules. (init.cpp)
void add_init_command(CLI::App& app);
/// `run`: serves the inbound and outbound listeners and the admin endpoints. (run.cpp)
void add_run_command(CLI::App& app);
/// `wait`: blocks until the sidecar's readiness endpoint answers 200. (wait.cpp)
void add_wait_command(CLI::App& app);
/// `check-binds`: which listening ports each inbound policy can reach, and why. (check_binds.cpp)
void add_check_binds_command(CLI::App& app);

}  // namespace sidecar
