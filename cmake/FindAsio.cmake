# FindAsio: locates standalone (non-Boost) Asio, which Debian ships as headers
# only (libasio-dev), with neither a CMake config nor a pkg-config file.
#
# Result: the imported target asio::asio, Asio_FOUND, Asio_VERSION,
# Asio_INCLUDE_DIR. Installed next to podproxyConfig.cmake so that consumers
# find it through find_dependency(Asio).
include(FindPackageHandleStandardArgs)

find_path(Asio_INCLUDE_DIR NAMES asio.hpp asio/version.hpp
  HINTS ENV ASIO_ROOT PATH_SUFFIXES include)

if(Asio_INCLUDE_DIR AND EXISTS "${Asio_INCLUDE_DIR}/asio/version.hpp")
  file(STRINGS "${Asio_INCLUDE_DIR}/asio/version.hpp" _asio_version_line
       REGEX "^#define ASIO_VERSION [0-9]+")
  string(REGEX REPLACE "^#define ASIO_VERSION ([0-9]+).*" "\\1" _asio_v "${_asio_version_line}")
  math(EXPR _asio_major "${_asio_v} / 100000")
  math(EXPR _asio_minor "${_asio_v} / 100 % 1000")
  math(EXPR _asio_patch "${_asio_v} % 100")
  set(Asio_VERSION "${_asio_major}.${_asio_minor}.${_asio_patch}")
endif()

find_package_handle_standard_args(Asio
  REQUIRED_VARS Asio_INCLUDE_DIR
  VERSION_VAR Asio_VERSION)

if(Asio_FOUND AND NOT TARGET asio::asio)
  find_package(Threads REQUIRED)
  add_library(asio::asio INTERFACE IMPORTED)
  set_target_properties(asio::asio PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${Asio_INCLUDE_DIR}"
    # Standalone mode, no deprecated interfaces, and one allocation scheme everywhere: Asio 1.22 picks
    # aligned_alloc or operator new by testing a libstdc++ macro without including a standard header, so
    # translation units that include Asio first and those that do not would mix the two (an
    # alloc-dealloc mismatch, which ASan reports). Pinning the choice makes include order irrelevant.
    INTERFACE_COMPILE_DEFINITIONS "ASIO_STANDALONE;ASIO_NO_DEPRECATED;ASIO_DISABLE_STD_ALIGNED_ALLOC"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
endif()
mark_as_advanced(Asio_INCLUDE_DIR)
