# The README's install recipes, followed as a user follows them, then used as a user's project uses
# the installed package (docs/using.md, "Using xgrad from your project", the page the README's map
# links to; RECIPES below):
#  1. the recipe for the libraries alone (the ```sh block after <!-- readme-install: -->), run as
#     written by sh in a copy of the source tree, with WORK_DIR/prefix for its /opt/xgrad. It builds
#     the core libraries only, so the package must hold them and no xgrad::dist;
#  2. this build tree, which the suite has built whole, installed as the first recipe installs it:
#     xgrad::dist must be in the package exactly when it was built (EXPECT_DIST), the API reference
#     exactly when the docs target has run.
# Each prefix is then found by tests/install/CMakeLists.txt, and the first one is also used through
# xgrad.pc by the README's pkg-config recipe (<!-- readme-pkg-config: -->) on main.cpp.
#   cmake -DSOURCE_DIR=<source> -DBUILD_DIR=<build> -DWORK_DIR=<folder> -DCXX=<compiler>
#         -DEXPECT_DIST=ON|OFF -P check.cmake
include(${CMAKE_CURRENT_LIST_DIR}/../readme_block.cmake)
# The page that holds the recipes, each the ```sh block right after its marker comment.
set(RECIPES ${SOURCE_DIR}/docs/using.md)
set(CONSUMER_DIR ${CMAKE_CURRENT_LIST_DIR})
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "IN" "")
  if(NOT arg_IN)
    set(arg_IN ${WORK_DIR})
  endif()
  execute_process(COMMAND ${arg_UNPARSED_ARGUMENTS} WORKING_DIRECTORY ${arg_IN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${arg_UNPARSED_ARGUMENTS}\n${out}")
  endif()
  message(STATUS "${out}")
endfunction()

# The block of RECIPES after <marker>, /opt/xgrad replaced by <prefix>, run by sh -ex in <folder>.
function(run_readme_recipe marker prefix folder)
  xgrad_readme_block(${RECIPES} ${marker} sh recipe)
  string(REPLACE "/opt/xgrad" "${prefix}" script "${recipe}")
  if(script STREQUAL recipe)
    message(FATAL_ERROR "${RECIPES}: the ${marker} recipe names no /opt/xgrad to install to or use")
  endif()
  file(WRITE ${WORK_DIR}/${marker}.sh "${script}")
  run(sh -ex ${WORK_DIR}/${marker}.sh IN ${folder})
endfunction()

# Configures tests/install against <prefix>: find_package(xgrad), and xgrad::dist when <expect_dist>,
# which it must not find otherwise; then builds <target> and runs it when it is `consumer`.
function(consume prefix expect_dist target)
  set(build ${prefix}-consumer)
  run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${build} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX}
      -DCMAKE_BUILD_TYPE=Release -DEXPECT_DIST=${expect_dist})
  # No build flag of xgrad's reaches a user's code: the consumer's compile lines carry no -march
  # (xgrad's own code is built for this CPU) and no xtensor setting.
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${build} --target ${target} --verbose
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "building the consumer's ${target} failed (${rc}):\n${out}")
  endif()
  string(REGEX MATCHALL "[^\n]*main\\.cpp\\.o -c[^\n]*" compile_lines "${out}")
  if(NOT compile_lines)
    message(FATAL_ERROR "no compile line for the consumer's ${target} in the verbose build output:\n${out}")
  endif()
  foreach(line IN LISTS compile_lines)
    if(line MATCHES "-march|-mno-|-mavx|XTENSOR_USE_XSIMD|-Werror")
      message(FATAL_ERROR "xgrad's build flags reached the consumer (${CMAKE_MATCH_0}):\n${line}")
    endif()
  endforeach()
  if(target STREQUAL "consumer")
    run(${build}/consumer)
  endif()
endfunction()

# 1. The libraries alone, in a copy of the sources without their build trees (the recipe's `build`
# is then the copy's own) and without this test's folder.
set(copy ${WORK_DIR}/source)
file(MAKE_DIRECTORY ${copy})
file(GLOB entries RELATIVE ${SOURCE_DIR} ${SOURCE_DIR}/* ${SOURCE_DIR}/.*)
foreach(entry IN LISTS entries)
  set(path ${SOURCE_DIR}/${entry})
  string(FIND "${WORK_DIR}/" "${path}/" holds_work_dir)
  if(entry MATCHES "^\\.(git|\\.?)$" OR EXISTS ${path}/CMakeCache.txt OR holds_work_dir EQUAL 0)
    continue()
  endif()
  file(COPY ${path} DESTINATION ${copy})
endforeach()
# The recipe's own cmake and compiler are this build's.
get_filename_component(cmake_bin ${CMAKE_COMMAND} DIRECTORY)
set(ENV{PATH} "${cmake_bin}:$ENV{PATH}")
set(ENV{CXX} ${CXX})
run_readme_recipe(readme-install ${WORK_DIR}/prefix ${copy})
if(EXISTS ${WORK_DIR}/prefix/include/xgrad/dist)
  message(FATAL_ERROR "xgrad::dist was not built, but its headers were installed")
endif()
consume(${WORK_DIR}/prefix OFF consumer)

# The same program built without CMake, from the installed xgrad.pc, by the README's commands.
file(GLOB_RECURSE pc_files ${WORK_DIR}/prefix/*/xgrad.pc)
if(NOT pc_files)
  message(FATAL_ERROR "xgrad.pc was not installed under ${WORK_DIR}/prefix")
endif()
file(MAKE_DIRECTORY ${WORK_DIR}/app)
configure_file(${CONSUMER_DIR}/main.cpp ${WORK_DIR}/app/app.cpp COPYONLY)
run_readme_recipe(readme-pkg-config ${WORK_DIR}/prefix ${WORK_DIR}/app)
run(${WORK_DIR}/app/app)
find_program(PKG_CONFIG NAMES pkg-config pkgconf REQUIRED)
get_filename_component(pc_dir "${pc_files}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs xgrad RESULT_VARIABLE rc OUTPUT_VARIABLE pc_flags ERROR_VARIABLE pc_error)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs xgrad failed: ${pc_error}")
endif()
if(pc_flags MATCHES "-march|-mno-|XTENSOR_USE_XSIMD")
  message(FATAL_ERROR "xgrad.pc passes xgrad's build flags on (${CMAKE_MATCH_0}): ${pc_flags}")
endif()

# 2. This build tree, installed whole. The core was consumed above; here the optional parts.
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/full)
set(docs_built FALSE)
set(docs_installed FALSE)
if(EXISTS ${BUILD_DIR}/docs/html/index.html)
  set(docs_built TRUE)
endif()
if(EXISTS ${WORK_DIR}/full/share/doc/xgrad/html/index.html)
  set(docs_installed TRUE)
endif()
if(NOT docs_built STREQUAL docs_installed)
  message(FATAL_ERROR "the API reference was built: ${docs_built}, installed: ${docs_installed}")
endif()
if(docs_installed)  # its main page, the README, links the pages beside it, not a checkout's build/docs/html
  file(STRINGS ${WORK_DIR}/full/share/doc/xgrad/html/index.html checkout_links REGEX "href=\"build/docs/html/")
  if(checkout_links)
    message(FATAL_ERROR "the installed API reference links pages of a checkout's build folder:\n${checkout_links}")
  endif()
endif()
if(EXPECT_DIST)
  consume(${WORK_DIR}/full ON dist_consumer)
else()
  consume(${WORK_DIR}/full OFF consumer)
endif()
