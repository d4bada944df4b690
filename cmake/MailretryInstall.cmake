# Installs libmailretry.a, the public headers and a CMake package so that
#   find_package(mailretry CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE mailretry::core)
# works from any prefix.
include(CMakePackageConfigHelpers)

install(TARGETS mailretry_core mailretry_sim EXPORT mailretryTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
foreach(header IN LISTS MAILRETRY_PUBLIC_HEADERS)
  file(RELATIVE_PATH rel ${CMAKE_CURRENT_SOURCE_DIR}/cpp ${header})
  get_filename_component(dir ${rel} DIRECTORY)
  install(FILES ${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/${dir})
endforeach()

set(_cmakedir ${CMAKE_INSTALL_LIBDIR}/cmake/mailretry)
install(EXPORT mailretryTargets NAMESPACE mailretry:: DESTINATION ${_cmakedir})
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/mailretryConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/mailretryConfig.cmake INSTALL_DESTINATION ${_cmakedir})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mailretryConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/mailretryConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/mailretryConfigVersion.cmake
  ${CMAKE_CURRENT_SOURCE_DIR}/cmake/MailretryDependencies.cmake
  DESTINATION ${_cmakedir})
