# xgrad_readme_block(<file.md> <marker> <language> <out-var>): the text of the fenced ```<language>
# block that follows the markdown file's `<!-- <marker>: ... -->` comment, without its fences. The
# README's programs (tests/CMakeLists.txt, from README.md) and its install recipes
# (tests/install/check.cmake, from docs/using.md) are taken from them this way, so that the tests
# run what a reader copies.
function(xgrad_readme_block readme_file marker language out_var)
  file(READ ${readme_file} readme)
  string(FIND "${readme}" "<!-- ${marker}:" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${readme_file} has no <!-- ${marker}: ... --> comment")
  endif()
  string(SUBSTRING "${readme}" ${at} -1 rest)
  # The comment's end, then the fence at once: a block of another language there must not send the
  # search on to a later block that belongs to another marker.
  string(FIND "${rest}" "-->" comment_end)
  string(FIND "${rest}" "-->\n```${language}\n" open)
  if(open EQUAL -1 OR NOT open EQUAL comment_end)
    message(FATAL_ERROR "${readme_file}: no ```${language} block right after <!-- ${marker}: ... -->")
  endif()
  string(LENGTH "-->\n```${language}\n" fence)
  math(EXPR open "${open} + ${fence}")
  string(SUBSTRING "${rest}" ${open} -1 rest)
  string(FIND "${rest}" "```" close)
  string(SUBSTRING "${rest}" 0 ${close} block)
  set(${out_var} "${block}" PARENT_SCOPE)
endfunction()
