# Run after a test program is built (cmake -P): writes OUTPUT, a CTest file labelling each of the
# program's doctest cases "slow" when it is in doctest's suite "slow"
# (TEST_CASE("..." * doctest::test_suite("slow"))) and LABEL otherwise. doctest_discover_tests'
# own ADD_LABELS cannot serve: it filters by the case's name, which doctest splits at commas.
# Inputs: EXECUTABLE, LABEL, OUTPUT.
cmake_minimum_required(VERSION 3.16)  # script mode starts with no policies set (IN_LIST needs one)
function(list_cases out)
  execute_process(COMMAND ${EXECUTABLE} --list-test-cases ${ARGN}
                  OUTPUT_VARIABLE listing RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${EXECUTABLE} --list-test-cases ${ARGN} failed (${status}):\n${listing}")
  endif()
  string(REPLACE "\n" ";" lines "${listing}")
  set(cases "")
  foreach(line ${lines})
    if(NOT line MATCHES "^(\\[doctest\\] |=====)" AND NOT line STREQUAL "")
      list(APPEND cases "${line}")
    endif()
  endforeach()
  set(${out} "${cases}" PARENT_SCOPE)
endfunction()

list_cases(every_case)
list_cases(slow_cases --test-suite=slow)
set(script "")
foreach(case ${every_case})
  set(label ${LABEL})
  if(case IN_LIST slow_cases)
    set(label slow)
  endif()
  string(APPEND script "set_tests_properties([==[${case}]==] PROPERTIES LABELS ${label})\n")
endforeach()
file(WRITE ${OUTPUT} "${script}")
