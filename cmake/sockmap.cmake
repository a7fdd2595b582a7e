# The optional component podproxy::sockmap (SockmapRelay's eBPF half): a static library that links
# libbpf and embeds the verdict program, compiled with clang -target bpf and wrapped by
# `bpftool gen skeleton` at build time. Built when its tools are found (PODPROXY_SOCKMAP=AUTO), always
# (ON: missing tools are an error) or never (OFF). The header-only podproxy::podproxy does not need it.
set(PODPROXY_SOCKMAP AUTO CACHE STRING "Build the sockmap relay component (AUTO, ON, OFF)")
set_property(CACHE PODPROXY_SOCKMAP PROPERTY STRINGS AUTO ON OFF)
set(PODPROXY_HAS_SOCKMAP OFF)
if(PODPROXY_SOCKMAP STREQUAL "OFF")
  return()
endif()

find_program(PODPROXY_BPF_CLANG NAMES clang clang-14)
find_program(PODPROXY_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin)
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(LIBBPF QUIET IMPORTED_TARGET libbpf)
endif()
if(NOT PODPROXY_BPF_CLANG OR NOT PODPROXY_BPFTOOL OR NOT LIBBPF_FOUND)
  set(missing_tools "")
  foreach(tool PODPROXY_BPF_CLANG PODPROXY_BPFTOOL)
    if(NOT ${tool})
      list(APPEND missing_tools ${tool})
    endif()
  endforeach()
  if(NOT LIBBPF_FOUND)
    list(APPEND missing_tools libbpf)
  endif()
  if(PODPROXY_SOCKMAP STREQUAL "ON")
    message(FATAL_ERROR "PODPROXY_SOCKMAP=ON but missing: ${missing_tools} (Debian: clang bpftool libbpf-dev)")
  endif()
  message(STATUS "podproxy: sockmap relay not built (missing: ${missing_tools})")
  return()
endif()

set(sockmap_gen "${PROJECT_BINARY_DIR}/sockmap")
set(sockmap_source "${PROJECT_SOURCE_DIR}/src/sockmap/sockmap_relay.bpf.c")
# <asm/types.h> lives under the multiarch include directory on Debian.
set(bpf_includes -I/usr/include/${CMAKE_LIBRARY_ARCHITECTURE})
foreach(dir ${LIBBPF_INCLUDE_DIRS})
  list(APPEND bpf_includes -I${dir})
endforeach()
add_custom_command(
  OUTPUT "${sockmap_gen}/sockmap_relay.bpf.o"
  COMMAND ${CMAKE_COMMAND} -E make_directory "${sockmap_gen}"
  COMMAND "${PODPROXY_BPF_CLANG}" -O2 -g -target bpf ${bpf_includes} -c "${sockmap_source}"
          -o "${sockmap_gen}/sockmap_relay.bpf.o"
  DEPENDS "${sockmap_source}"
  COMMENT "Compiling the sockmap verdict program (clang -target bpf)"
  VERBATIM)
add_custom_command(
  OUTPUT "${sockmap_gen}/sockmap_relay.skel.h"
  COMMAND "${PODPROXY_BPFTOOL}" gen skeleton "${sockmap_gen}/sockmap_relay.bpf.o" name sockmap_relay
          > "${sockmap_gen}/sockmap_relay.skel.h"
  DEPENDS "${sockmap_gen}/sockmap_relay.bpf.o"
  COMMENT "Embedding it in a skeleton header (bpftool gen skeleton)"
  VERBATIM)

add_library(podproxy_sockmap STATIC
  src/sockmap/sockmap_program.cpp "${sockmap_gen}/sockmap_relay.skel.h")
add_library(podproxy::sockmap ALIAS podproxy_sockmap)
target_include_directories(podproxy_sockmap PRIVATE "${sockmap_gen}")
target_link_libraries(podproxy_sockmap PUBLIC podproxy::podproxy PRIVATE PkgConfig::LIBBPF)
target_compile_options(podproxy_sockmap PRIVATE -Wall -Wextra -Werror)
set_target_properties(podproxy_sockmap PROPERTIES EXPORT_NAME sockmap POSITION_INDEPENDENT_CODE ON)
target_compile_definitions(podproxy_sockmap INTERFACE PODPROXY_HAS_SOCKMAP=1)
set(PODPROXY_HAS_SOCKMAP ON)
