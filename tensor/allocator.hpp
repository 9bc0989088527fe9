/// @file
/// Where tensors keep their elements: 64-byte aligned blocks (a cache line, and the widest SIMD
/// register) cut from plain `malloc` blocks.
///
/// Why not `posix_memalign`, as xsimd's allocator does: glibc 2.36 serves an aligned request by
/// splitting padding off a larger block, and the hole a freed block leaves is then too small for
/// the next aligned request of the same size. With freed memory kept in the heap
/// (keep_freed_memory), a loop that freed and allocated one 64 MiB tensor grew the heap by 64 MiB
/// every step (measured, test_memory). Over-allocating by the alignment keeps every request for a
/// size the same `malloc` request, which the block freed before serves exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define XGRAD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XGRAD_ASAN 1
#endif
#endif
#if defined(XGRAD_ASAN)
#include <sanitizer/asan_interface.h>
#endif

/// The allocator's own namespace: a namespace of a template argument is searched for unqualified
/// calls on that type (ADL), so tensors would pull xgrad's ops (sum, mean, ...) into xtensor's own
/// unqualified calls if the allocator lived in `xgrad`.
namespace xgrad::storage {

/// A standard allocator of 64-byte aligned storage over `malloc`; stateless, so any two compare equal.
template <class T>
class AlignedAllocator {
  public:
    /// The element type (what std::allocator_traits reads).
    using value_type = T;
    /// Bytes: a cache line, enough for AVX-512 aligned loads.
    static constexpr std::size_t alignment = 64;

    AlignedAllocator() noexcept = default;
    /// Rebinding copy (allocators of other element types carry no state).
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) noexcept {}

    /// Storage for `n` elements, aligned to `alignment`; throws std::bad_array_new_length when
    /// the byte count overflows and std::bad_alloc when memory runs out.
    T* allocate(std::size_t n) {
        if (n > (SIZE_MAX - alignment) / sizeof(T)) throw std::bad_array_new_length();
        auto* raw = static_cast<unsigned char*>(std::malloc(n * sizeof(T) + alignment));
        if (raw == nullptr) throw std::bad_alloc();
        // At least one byte before the aligned start, where the distance back to `raw` is kept.
        const std::uintptr_t aligned = (reinterpret_cast<std::uintptr_t>(raw) + alignment) & ~std::uintptr_t{alignment - 1};
        auto* start = reinterpret_cast<unsigned char*>(aligned);
        start[-1] = static_cast<unsigned char>(start - raw);  // 1..64
#if defined(XGRAD_ASAN)
        // The padding around the elements is no one's: AddressSanitizer reports a read or write
        // there as it would past the end of a malloc'd block.
        ASAN_POISON_MEMORY_REGION(raw, static_cast<std::size_t>(start - 1 - raw));
        ASAN_POISON_MEMORY_REGION(start + n * sizeof(T), static_cast<std::size_t>(raw + alignment - start));
#endif
        return reinterpret_cast<T*>(start);
    }

    /// Returns storage from allocate(), with the same `n` (null is ignored).
    void deallocate(T* p, [[maybe_unused]] std::size_t n) noexcept {
        if (p == nullptr) return;
        auto* start = reinterpret_cast<unsigned char*>(p);
        auto* raw = start - start[-1];
#if defined(XGRAD_ASAN)
        ASAN_UNPOISON_MEMORY_REGION(raw, static_cast<std::size_t>(start - 1 - raw));
        ASAN_UNPOISON_MEMORY_REGION(start + n * sizeof(T), static_cast<std::size_t>(raw + alignment - start));
#endif
        std::free(raw);
    }

    /// Always true: memory from one allocator may be released by any other.
    template <class U>
    bool operator==(const AlignedAllocator<U>&) const noexcept {
        return true;
    }
};

}  // namespace xgrad::storage

namespace xgrad {
using storage::AlignedAllocator;
}  // namespace xgrad
