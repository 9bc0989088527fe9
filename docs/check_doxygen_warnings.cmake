# Run by the `docs` target after doxygen (cmake -DLOG=<warning log> -P check_doxygen_warnings.cmake):
# fails the target, printing the log, unless doxygen's warning log is empty. Every public entity has
# a comment, so a warning is a new declaration without one, or a comment doxygen cannot read.
if(NOT DEFINED LOG)
  message(FATAL_ERROR "check_doxygen_warnings.cmake: pass -DLOG=<doxygen's WARN_LOGFILE>")
endif()
if(NOT EXISTS "${LOG}")
  message(FATAL_ERROR "docs: doxygen wrote no warning log at ${LOG}")
endif()
file(READ "${LOG}" warnings)
string(STRIP "${warnings}" warnings)
if(NOT warnings STREQUAL "")
  string(REGEX MATCHALL "warning:" hits "${warnings}")
  list(LENGTH hits count)
  message(FATAL_ERROR "docs: doxygen reported ${count} warning(s) (${LOG}):\n${warnings}\n"
                      "Document the entity each names (/// before it, or ///< after a member).")
endif()
