// The Catch2 v2 main for the test binaries (Debian's catch2 2.13 has no Catch2WithMain).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
