#include "isa.hpp"

#include <cpuid.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace xgrad {

namespace {
// The compiler's runtime checks include the operating system's support (XCR0): a CPU with AVX-512
// under a kernel that does not save its registers counts as without. Clang 14 knows neither the
// level names ("x86-64-v3") nor F16C, MOVBE and LZCNT, which x86-64-v3 code may also use: those
// three are read from CPUID (they need no operating-system state).
bool has_v3_extras() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool movbe = c & (1u << 22), f16c = c & (1u << 29);
    if (!__get_cpuid(0x80000001, &a, &b, &c, &d)) return false;
    const bool lzcnt = c & (1u << 5);
    return movbe && f16c && lzcnt;
}

Isa widest_supported() {
    __builtin_cpu_init();
    const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
                    __builtin_cpu_supports("bmi2") && has_v3_extras();
    const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                    __builtin_cpu_supports("avx512vl");
    return v4 ? Isa::avx512 : v3 ? Isa::avx2 : Isa::baseline;
}

Isa chosen() {
    const Isa widest = widest_supported();
    const char* cap = std::getenv("XGRAD_ISA");
    if (!cap || !*cap) return widest;
    for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512}) {
        if (isa_name(isa) == cap) return isa < widest ? isa : widest;
    }
    throw std::invalid_argument(fmt::format("XGRAD_ISA: '{}' is none of baseline, avx2, avx512", cap));
}
}  // namespace

Isa cpu_isa() {
    static const Isa isa = chosen();
    return isa;
}

std::string_view isa_name(Isa isa) {
    switch (isa) {
        case Isa::avx2: return "avx2";
        case Isa::avx512: return "avx512";
        case Isa::baseline: break;
    }
    return "baseline";
}

}  // namespace xgrad
