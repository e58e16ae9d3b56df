# tokenfab_test(NAME <name> SOURCES <files...> [DEPS <targets...>] [LABELS <labels...>]
#               [ENVIRONMENT <VAR=value...>] [PREFIX <prefix>])
# PREFIX goes before each case's name in ctest, for one test source built
# twice (the CUDA tests on a GPU and on the emulator).
# One gtest binary per unit, discovered test by test so ctest reports each case.
function(tokenfab_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT;PREFIX" "SOURCES;DEPS;LABELS;ENVIRONMENT" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} tokenfab_test_support GTest::gtest GTest::gmock
                                          GTest::gtest_main)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set(_props TIMEOUT ${T_TIMEOUT})
  if(T_LABELS)
    list(APPEND _props LABELS "${T_LABELS}")
  endif()
  if(T_ENVIRONMENT)
    list(APPEND _props ENVIRONMENT "${T_ENVIRONMENT}")
  endif()
  gtest_discover_tests(${T_NAME} DISCOVERY_MODE PRE_TEST TEST_PREFIX "${T_PREFIX}"
                       WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                       PROPERTIES ${_props})
endfunction()
