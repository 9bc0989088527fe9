# Every symbol a kernel copy compiled for AVX2 or AVX-512 defines must be its own (in its isa_*
# namespace, or local): a definition another object also has (an inline function or template
# instantiated alike) is merged by the linker, which may keep the AVX-512 copy for every caller and
# crash a CPU without it. Run as: cmake -DNM=<nm> -DOBJECTS=<a.o|b.o|...> -P check_symbols.cmake
string(REPLACE "|" ";" OBJECTS "${OBJECTS}")
set(shared "")
foreach(object ${OBJECTS})
  execute_process(COMMAND ${NM} -C --defined-only ${object} OUTPUT_VARIABLE symbols RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "isa: ${NM} failed on ${object}")
  endif()
  string(REPLACE "\n" ";" lines "${symbols}")
  foreach(line ${lines})
    # Global or weak definitions (upper-case type letters other than the personality reference).
    if(line MATCHES "^[0-9a-f]+ [TWVDRB] (.*)$")
      set(symbol "${CMAKE_MATCH_1}")  # kept before the next MATCHES overwrites CMAKE_MATCH_1
      if(NOT symbol MATCHES "isa_avx(2|512)|^DW\\.ref\\.__gxx_personality_v0$")
        list(APPEND shared "${object}: ${symbol}")
      endif()
    endif()
  endforeach()
endforeach()
list(LENGTH OBJECTS count)
if(count EQUAL 0)
  message(FATAL_ERROR "isa: no kernel copies were given")
endif()
if(shared)
  list(JOIN shared "\n  " listed)
  message(FATAL_ERROR "isa: kernel copies define symbols other objects may define too:\n  ${listed}")
endif()
message(STATUS "isa: ${count} kernel copies define only their own symbols")
