// The machine's arithmetic roofline, measured: single-precision FMA throughput of one core with the
// widest vector ISA the CPU has (AVX-512, else AVX2), chosen at run time.
#pragma once

#include <string>

namespace bench {

struct Peak {
    std::string isa;  // "avx512f", "avx2+fma" or "scalar"
    double gflops;    // 2 flops per lane per FMA
};

Peak fma_peak();

}  // namespace bench
