// libFuzzer target: the char-LM checkpoint loader (safetensors, metadata, configuration,
// vocabulary, shapes, then the model and optimizer) must refuse bad files with one error, never crash.
#include <cstdint>

#include "checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        auto file = xgrad::parse_safetensors<float>(data, size, "fuzz");
        charlm::Checkpoint c = charlm::checkpoint_from("fuzz", std::move(file));
        xgrad::Generator gen(0);
        charlm::CharLM model(c.state.config, c.state.vocabulary.size(), gen);
        auto optimizer = charlm::make_optimizer(c.state.config.optimizer, model.parameters(), c.state.config.lr);
        charlm::restore(c, model, optimizer.get());
    } catch (const xgrad::FileFormatError&) {
    } catch (const charlm::InputError&) {
    }
    return 0;
}
