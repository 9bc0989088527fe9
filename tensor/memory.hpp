/// @file
/// Keeping freed memory for the next step. glibc hands blocks above its mmap threshold (128 KiB,
/// rising adaptively) back to the kernel when they are freed and trims the heap's top when it grows
/// past twice that; a training step that frees and reallocates megabytes of activations then pays
/// for fresh, zeroed pages every step (measured: the fused M RNN step 14.5 ms, 7.9 ms with blocks
/// kept; the fused L GRU step 236 -> 192 ms once blocks above 32 MiB, the largest mmap threshold
/// glibc accepts, come from the heap too). xgrad-charlm and the benchmark call this at start; a
/// library leaves the process's allocator alone unless asked. A heap that keeps freed blocks
/// must be able to reuse them: tensors' storage (AlignedAllocator) asks `malloc` for the same
/// size every time, which a freed block serves exactly (aligned requests through
/// `posix_memalign` grew the heap by a block every step: allocator.hpp).
///
/// @code
///   xgrad::keep_freed_memory();   // before training
/// @endcode
#pragma once

#include <cstddef>
#include <cstdint>

namespace xgrad {

/// Serves blocks up to `largest_block` bytes from the heap (by default every block: above 32 MiB,
/// glibc's largest mmap threshold, that means no mmap at all) and keeps up to `keep` bytes of freed
/// memory at the heap's top instead of returning them. Returns false where the C library offers no
/// such control.
bool keep_freed_memory(std::size_t largest_block = SIZE_MAX, std::size_t keep = std::size_t{512} << 20);

}  // namespace xgrad
