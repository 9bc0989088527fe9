// Heap bytes in use and their peak, counted by wrapping malloc and friends (glibc's __libc_*
// functions do the work). Linked into the benchmark only: it sees xgrad's and libtorch's tensors
// alike, so both are measured the same way.
#pragma once

#include <cstddef>

namespace bench {

std::size_t heap_in_use();
// Restarts the peak at the current level; peak_heap() is then the high-water mark since.
void reset_peak_heap();
std::size_t peak_heap();

}  // namespace bench
