// podproxy's version, for code that must know which release it builds against.
#pragma once

#define PODPROXY_VERSION_MAJOR 0
#define PODPROXY_VERSION_MINOR 1
#define PODPROXY_VERSION_PATCH 0
#define PODPROXY_VERSION_STRING "0.1.0"
