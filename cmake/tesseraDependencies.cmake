# Finds tessera's dependencies; shared by the build and the installed package config.
if(DEFINED CMAKE_FIND_PACKAGE_NAME)
  # Inside tesseraConfig.cmake: failures are reported through find_package(tessera).
  include(CMakeFindDependencyMacro)
  find_dependency(Eigen3 3.3 NO_MODULE)
  find_dependency(xsimd)
  find_dependency(OpenMP COMPONENTS CXX)
else()
  # The source tree (top level or add_subdirectory): stop at once with CMake's message.
  find_package(Eigen3 3.3 REQUIRED NO_MODULE)
  find_package(xsimd REQUIRED)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
endif()
# Debian's xsimd 8 exports a link to a target `xtl` without finding xtl; the
# headers need xtl only for xtl::xcomplex support, which tessera does not use.
if(NOT TARGET xtl)
  add_library(xtl INTERFACE IMPORTED)
endif()
