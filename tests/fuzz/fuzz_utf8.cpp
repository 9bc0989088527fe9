// libFuzzer target: the corpus reader's UTF-8 decoder. Bad bytes give an offset inside the input;
// good text survives encode and decode unchanged, and its vocabulary indexes every character.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "corpus.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    for (bool text_only : {true, false}) {
        charlm::Utf8Error error;
        auto text = charlm::decode_utf8(bytes, error, text_only);
        if (!text) {
            if (error.offset >= size) std::abort();
            continue;
        }
        if (charlm::encode_utf8(*text) != bytes) std::abort();
        const auto vocabulary = charlm::Vocabulary::of(*text);
        for (char32_t c : *text) {
            if (!vocabulary.index(c)) std::abort();
            (void)charlm::describe(c);
        }
    }
    return 0;
}
