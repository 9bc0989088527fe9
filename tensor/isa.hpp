/// @file
/// The instruction sets xgrad's own kernels (the fused cells' rows, the small-rows GEMM, the loss's
/// rows, the optimizers' updates) are compiled for, each kernel once per set, and the one that runs:
/// the widest this CPU has, chosen once at start. The environment variable XGRAD_ISA caps it
/// ("baseline", "avx2", "avx512"), as ONEDNN_MAX_CPU_ISA caps oneDNN's, so that a machine with
/// AVX-512 can run the code an AVX2 machine runs.
///
/// @code
///   fmt::print("kernels: {}\n", xgrad::isa_name(xgrad::cpu_isa()));   // "avx2" on an AMD Zen 3
/// @endcode
#pragma once

#include <string_view>

namespace xgrad {

/// What xgrad's kernels are built for: baseline is what the build targets (x86-64's SSE2 unless
/// XGRAD_NATIVE), avx2 is x86-64-v3 (AVX2, FMA), avx512 is x86-64-v4 (AVX-512 F, BW, CD, DQ, VL).
enum class Isa { baseline, avx2, avx512 };

/// The set the kernels run: the widest the CPU (and its operating system) supports, capped by
/// XGRAD_ISA. Throws std::invalid_argument naming XGRAD_ISA when it holds none of the names (and
/// again on the next call).
Isa cpu_isa();

/// "baseline", "avx2" or "avx512".
std::string_view isa_name(Isa isa);

}  // namespace xgrad
