/// @file
/// For .cpp files of kernels compiled once per instruction set (CMake's xgrad_isa_kernels): the
/// namespace each copy lands in, and the pick of the copy that runs (tensor/isa.hpp). Internal.
///
/// @code
///   // lstm_rows.cpp, compiled three times, XGRAD_ISA_NAMESPACE isa_baseline, isa_avx2, isa_avx512:
///   namespace xgrad::nn::cells::XGRAD_ISA_NAMESPACE { template <class T> void lstm_forward_row(...) {...} }
///   // lstm.cpp, once: declare the three, call the one for this CPU
///   XGRAD_FOR_EACH_ISA(template <class T> void lstm_forward_row(const RowForward<T>&);)
///   XGRAD_ISA_PICK(lstm_forward_row<T>)(row);
/// @endcode
#pragma once

#include "isa.hpp"

/// Declares the same thing in the three namespaces the kernel copies land in.
#define XGRAD_FOR_EACH_ISA(...)            \
    namespace isa_baseline {               \
    __VA_ARGS__                            \
    }                                      \
    namespace isa_avx2 {                   \
    __VA_ARGS__                            \
    }                                      \
    namespace isa_avx512 {                 \
    __VA_ARGS__                            \
    }

/// The copy of function `name` (in the isa_* namespaces of the current one) for the set that runs.
#define XGRAD_ISA_PICK(...) \
    ::xgrad::isa_pick(&isa_baseline::__VA_ARGS__, &isa_avx2::__VA_ARGS__, &isa_avx512::__VA_ARGS__)

namespace xgrad {

/// One of three copies of a kernel, by the instruction set that runs (cpu_isa()).
template <class F>
F isa_pick(F baseline, F avx2, F avx512) {
    switch (cpu_isa()) {
        case Isa::avx512: return avx512;
        case Isa::avx2: return avx2;
        case Isa::baseline: break;
    }
    return baseline;
}

}  // namespace xgrad
