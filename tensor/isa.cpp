#include "isa.hpp"

#include <cstdlib>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace xgrad {

namespace {
// libgcc's checks include the operating system's support (XCR0): a CPU with AVX-512 under a kernel
// that does not save its registers counts as without.
Isa widest_supported() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return Isa::avx512;
    if (__builtin_cpu_supports("x86-64-v3")) return Isa::avx2;
    return Isa::baseline;
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
