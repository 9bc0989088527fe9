// libFuzzer target: the safetensors reader must refuse bad bytes with FileFormatError, never crash,
// and whatever it accepts must serialize and parse back to the same tensors.
#include <cstdint>
#include <cstdlib>

#include <xgrad/tensor/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    xgrad::TensorFile<double> file;
    try {
        file = xgrad::parse_safetensors<double>(data, size, "fuzz");
    } catch (const xgrad::FileFormatError&) {
        return 0;
    }
    const auto bytes = xgrad::serialize_safetensors(file);
    const auto again = xgrad::parse_safetensors<double>(bytes.data(), bytes.size(), "round trip");
    if (again.tensors.size() != file.tensors.size() || again.metadata != file.metadata) std::abort();
    for (const auto& [name, t] : file.tensors) {
        const auto& u = again.tensors.at(name);
        if (u.shape() != t.shape()) std::abort();
        for (std::size_t i = 0; i < t.size(); ++i) {
            if (!(u.data()[i] == t.data()[i]) && !(t.data()[i] != t.data()[i])) std::abort();  // NaN != NaN
        }
    }
    return 0;
}
