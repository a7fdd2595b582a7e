# Install rules (top level only): headers, the exported INTERFACE target, a
# package config with its version file, and FindAsio.cmake for find_dependency.
include(CMakePackageConfigHelpers)

set(PODPROXY_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/podproxy"
    CACHE STRING "Where podproxy's CMake package files are installed")

# The sockmap relay's headers stay in-tree with their component (experimental, not installed: README).
install(DIRECTORY include/podproxy DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  PATTERN "sockmap_*" EXCLUDE)
install(TARGETS podproxy EXPORT podproxyTargets)
install(EXPORT podproxyTargets
  NAMESPACE podproxy::
  DESTINATION "${PODPROXY_INSTALL_CMAKEDIR}")

configure_package_config_file(cmake/podproxyConfig.cmake.in
  "${PROJECT_BINARY_DIR}/podproxyConfig.cmake"
  INSTALL_DESTINATION "${PODPROXY_INSTALL_CMAKEDIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/podproxyConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)
install(FILES
  "${PROJECT_BINARY_DIR}/podproxyConfig.cmake"
  "${PROJECT_BINARY_DIR}/podproxyConfigVersion.cmake"
  cmake/FindAsio.cmake
  DESTINATION "${PODPROXY_INSTALL_CMAKEDIR}")
