# Configures tests/subproject in a fresh build folder (a cache left from an earlier run would keep
# its option values): cmake -DXGRAD_SOURCE_DIR=<source> -DWORK_DIR=<folder> -P check.cmake
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${WORK_DIR}
                        -DXGRAD_SOURCE_DIR=${XGRAD_SOURCE_DIR} -DXGRAD_MPI=OFF
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring a project that includes xgrad with add_subdirectory failed:\n${out}")
endif()
message(STATUS "${out}")
