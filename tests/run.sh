#!/bin/bash
# The test command: installs what is missing, builds with -Wall -Wextra -Werror, runs every test.
#   bash tests/run.sh          the dev preset (Debug)
#   bash tests/run.sh asan     AddressSanitizer + UndefinedBehaviorSanitizer
#   bash tests/run.sh tsan     ThreadSanitizer
# Many tests make network namespaces and iptables rules (inside those namespaces only): run as root.
set -euo pipefail
preset=${1:-dev}
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
ctest --preset "$preset" --output-on-failure
