// Whether repeating some work stops growing the heap. A leak grows it every round; allocator caches,
// BLAS and oneDNN buffers and lazily built tables grow it for a few rounds and then stop, after how
// many rounds depends on the CPU's code path and the thread count (one warm-up round was enough on
// AVX-512 machines, three were needed on an AVX2 Zen 3), so a test waits for the growth to stop
// instead of assuming when it does.
#pragma once

#include <malloc.h>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace test {

// Heap bytes in use: glibc's chunks and its separately mapped blocks.
inline std::size_t heap_bytes_in_use() {
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

struct HeapGrowth {
    bool stopped = false;             // `settled` consecutive rounds added at most `slack` bytes each
    std::vector<std::size_t> levels;  // the heap in use before the first round and after each, for messages
};

// Runs `round` until `settled` consecutive rounds leave the heap no higher than `slack` bytes above
// its highest level so far, at most `max_rounds` times.
template <class Round>
HeapGrowth heap_growth(Round round, int max_rounds = 16, int settled = 2, std::size_t slack = 4096) {
    HeapGrowth growth;
    growth.levels.push_back(heap_bytes_in_use());
    std::size_t highest = growth.levels.back();
    int quiet = 0;
    for (int i = 0; i < max_rounds && quiet < settled; ++i) {
        round();
        const std::size_t now = heap_bytes_in_use();
        growth.levels.push_back(now);
        quiet = now <= highest + slack ? quiet + 1 : 0;
        highest = std::max(highest, now);
    }
    growth.stopped = quiet >= settled;
    return growth;
}

}  // namespace test
