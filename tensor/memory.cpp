#include "memory.hpp"

#include <algorithm>
#include <climits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace xgrad {

bool keep_freed_memory(std::size_t largest_block, std::size_t keep) {
#if defined(__GLIBC__)
    const auto as_int = [](std::size_t v) { return static_cast<int>(std::min<std::size_t>(v, INT_MAX)); };
    const std::size_t glibc_limit = std::size_t{32} << 20;  // mallopt refuses larger mmap thresholds on 64-bit
    const bool thresholds = mallopt(M_MMAP_THRESHOLD, as_int(std::min(largest_block, glibc_limit))) == 1 &&
                            mallopt(M_TRIM_THRESHOLD, as_int(keep)) == 1;
    // Larger blocks than glibc's threshold can follow only if it maps nothing at all.
    return thresholds && (largest_block <= glibc_limit || mallopt(M_MMAP_MAX, 0) == 1);
#else
    (void)largest_block;
    (void)keep;
    return false;
#endif
}

}  // namespace xgrad
