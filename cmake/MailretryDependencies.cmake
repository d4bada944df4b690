# Finds what mailretry_core needs. Used by the build and, copied into the
# installed package, by find_package(mailretry) (there through find_dependency).
if(NOT COMMAND mailretry_find_dependency)
  macro(mailretry_find_dependency)
    find_package(${ARGN})
  endmacro()
endif()

mailretry_find_dependency(absl CONFIG REQUIRED)
mailretry_find_dependency(Boost 1.74 CONFIG REQUIRED COMPONENTS headers)
# toml++ (Debian libtomlplusplus-dev, a compiled library): the config grammar.
mailretry_find_dependency(tomlplusplus CONFIG REQUIRED)

# RE2: Debian 12 ships only a pkg-config file; newer RE2 ships a CMake package.
if(NOT TARGET mailretry::re2)
  find_package(re2 CONFIG QUIET)
  if(re2_FOUND)
    add_library(mailretry::re2 INTERFACE IMPORTED)
    set_target_properties(mailretry::re2 PROPERTIES INTERFACE_LINK_LIBRARIES re2::re2)
  else()
    find_package(PkgConfig REQUIRED)
    pkg_check_modules(MAILRETRY_RE2 REQUIRED IMPORTED_TARGET re2)
    add_library(mailretry::re2 INTERFACE IMPORTED)
    set_target_properties(mailretry::re2 PROPERTIES
      INTERFACE_LINK_LIBRARIES PkgConfig::MAILRETRY_RE2)
  endif()
endif()
