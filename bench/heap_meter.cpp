#include "heap_meter.hpp"

#include <atomic>
#include <cerrno>
#include <malloc.h>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {
std::atomic<long> in_use{0}, high{0};

void note(long delta) {
    const long now = in_use.fetch_add(delta, std::memory_order_relaxed) + delta;
    long seen = high.load(std::memory_order_relaxed);
    while (now > seen && !high.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
}

long size_of(void* p) { return p ? static_cast<long>(malloc_usable_size(p)) : 0; }
}  // namespace

extern "C" {
void* malloc(std::size_t n) {
    void* p = __libc_malloc(n);
    note(size_of(p));
    return p;
}
void* calloc(std::size_t n, std::size_t size) {
    void* p = __libc_calloc(n, size);
    note(size_of(p));
    return p;
}
void* realloc(void* old, std::size_t n) {
    const long before = size_of(old);
    void* p = __libc_realloc(old, n);
    if (p || n == 0) note(size_of(p) - before);
    return p;
}
void free(void* p) {
    note(-size_of(p));
    __libc_free(p);
}
void* memalign(std::size_t alignment, std::size_t n) {
    void* p = __libc_memalign(alignment, n);
    note(size_of(p));
    return p;
}
void* aligned_alloc(std::size_t alignment, std::size_t n) { return memalign(alignment, n); }
int posix_memalign(void** out, std::size_t alignment, std::size_t n) {
    void* p = memalign(alignment, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
}

namespace bench {
std::size_t heap_in_use() { return static_cast<std::size_t>(in_use.load()); }
void reset_peak_heap() { high.store(in_use.load()); }
std::size_t peak_heap() { return static_cast<std::size_t>(high.load()); }
}  // namespace bench
