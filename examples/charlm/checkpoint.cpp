#include "checkpoint.hpp"

#include <cmath>
#include <fmt/format.h>

#include "memory_estimate.hpp"

namespace charlm {

namespace {
const std::string model_prefix = "model.", optimizer_prefix = "optimizer.", hidden_key = "state.hidden",
                  cell_key = "state.cell", gemm_choices_key = "gemm_choices";

// An integer from the file in [0, max]: every count it holds is used in arithmetic later.
std::int64_t parse_int(const std::string& path, const std::string& key, const std::string& text, std::int64_t max) {
    std::size_t used = 0;
    long long value = -1;
    try {
        value = std::stoll(text, &used);
    } catch (const std::logic_error&) {
        used = 0;
    }
    if (used != text.size() || text.empty() || value < 0 || value > max) {
        throw InputError(fmt::format("checkpoint {}: metadata '{}' is not an integer in [0, {}]", path, key, max));
    }
    return value;
}

// Larger than any text this program could hold in memory as code points and indices.
constexpr std::int64_t max_characters = std::int64_t{1} << 40;
}  // namespace

void save_checkpoint(const std::string& path, const TrainingState& state, CharLM& model,
                     const xgrad::optim::Optimizer<float>& optimizer) {
    xgrad::TensorFile<float> file;
    for (auto& [name, value] : model.state_dict()) file.tensors[model_prefix + name] = std::move(value);
    xgrad::TensorFile<float> opt = optimizer.state_dict();
    for (auto& [name, value] : opt.tensors) file.tensors[optimizer_prefix + name] = std::move(value);
    for (const auto& [key, value] : opt.metadata) file.metadata[optimizer_prefix + key] = value;
    file.tensors[hidden_key] = state.carried.h;
    if (state.carried.c.dimension() == 3) file.tensors[cell_key] = state.carried.c;
    nlohmann::json vocabulary = nlohmann::json::array();
    for (char32_t c : state.vocabulary.symbols()) vocabulary.push_back(static_cast<std::uint32_t>(c));
    file.metadata["format"] = "xgrad-charlm";
    file.metadata["format_version"] = std::to_string(checkpoint_format_version);
    file.metadata["config"] = state.config.to_json().dump();
    file.metadata["vocabulary"] = vocabulary.dump();
    file.metadata["step"] = std::to_string(state.step);
    file.metadata["data_position"] = std::to_string(state.data_position);
    file.metadata["train_chars"] = std::to_string(state.train_chars);
    file.metadata["dropout_rng"] = model.rnn.dropout_generator().state();
    file.metadata[gemm_choices_key] = xgrad::saved_gemm_choices();
    xgrad::save_safetensors(path, file);
}

Checkpoint read_checkpoint(const std::string& path) {
    xgrad::TensorFile<float> file;
    try {
        file = xgrad::load_safetensors<float>(path);
    } catch (const std::exception& e) {
        throw InputError(fmt::format("checkpoint {}", e.what()));
    }
    return checkpoint_from(path, std::move(file));
}

// The checks below are the rules docs/charlm.md states under "The checkpoint format"; torch_interop.py applies
// the same ones: a change here belongs there too.
Checkpoint checkpoint_from(const std::string& path, xgrad::TensorFile<float> file) {
    Checkpoint c;
    c.path = path;
    c.file = std::move(file);
    auto meta = [&](const std::string& key) -> const std::string& {
        auto it = c.file.metadata.find(key);
        if (it == c.file.metadata.end()) throw InputError(fmt::format("checkpoint {}: no '{}' in its metadata", path, key));
        return it->second;
    };
    auto found = c.file.metadata.find("format");
    if (found == c.file.metadata.end() || found->second != "xgrad-charlm") {
        throw InputError(fmt::format("checkpoint {}: not an xgrad-charlm checkpoint (no format 'xgrad-charlm' in its metadata)", path));
    }
    const std::int64_t version = parse_int(path, "format_version", meta("format_version"), 1 << 20);
    if (version > checkpoint_format_version) {
        throw InputError(fmt::format("checkpoint {}: format version {} is newer than this program reads ({})", path,
                                     version, checkpoint_format_version));
    }
    try {
        c.state.config = Config::from_json(nlohmann::json::parse(meta("config")));
        std::u32string symbols;
        const nlohmann::json vocabulary = nlohmann::json::parse(meta("vocabulary"));
        // A range-for over a JSON object or number would visit its values as if they were a list.
        if (!vocabulary.is_array()) throw InputError(fmt::format("the vocabulary is {}, not an array", vocabulary.type_name()));
        for (const auto& v : vocabulary) {
            // get<std::uint32_t>() would wrap a negative or huge number into some other character.
            if (!v.is_number_unsigned() || v.get<std::uint64_t>() > 0x10FFFF || !is_scalar_value(v.get<std::uint32_t>())) {
                throw InputError(fmt::format("vocabulary entry {} is not a Unicode scalar value", v.dump()));
            }
            symbols.push_back(v.get<std::uint32_t>());
        }
        c.state.vocabulary = Vocabulary(std::move(symbols));
    } catch (const nlohmann::json::exception& e) {
        throw InputError(fmt::format("checkpoint {}: malformed configuration or vocabulary: {}", path, e.what()));
    } catch (const InputError& e) {
        throw InputError(fmt::format("checkpoint {}: {}", path, e.what()));
    }
    const Config& cfg = c.state.config;
    cfg.validate(fmt::format("checkpoint {}", path));
    if (c.state.vocabulary.size() < 2) throw InputError(fmt::format("checkpoint {}: a vocabulary of fewer than 2 characters", path));
    // The stored weights must be exactly what the configuration describes, before anything is built from it.
    std::size_t stored = 0;
    for (const auto& [name, value] : c.file.tensors) {
        if (name.starts_with(model_prefix)) stored += value.size();
    }
    if (stored != parameter_count(cfg, c.state.vocabulary.size())) {
        throw InputError(fmt::format("checkpoint {}: its model tensors hold {} values, its configuration needs {}", path,
                                     stored, parameter_count(cfg, c.state.vocabulary.size())));
    }
    // The least any use of the model needs (training in checkpointed segments where it can): a
    // training run checks its own settings again, and a checkpoint written with segments loads.
    Config least = cfg;
    if (cfg.zoneout == 0 && cfg.variational_dropout == 0) {
        least.checkpoint_segment = static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(cfg.seq))));
    }
    check_memory(least, c.state.vocabulary.size(), 0, fmt::format("checkpoint {}", path));
    c.state.step = parse_int(path, "step", meta("step"), xgrad::optim::Optimizer<float>::max_steps);
    // The optimizer reads its own step count on --resume; sample and eval refuse the same file all the same.
    parse_int(path, "optimizer.step", meta("optimizer.step"), xgrad::optim::Optimizer<float>::max_steps);
    c.state.train_chars = static_cast<std::size_t>(parse_int(path, "train_chars", meta("train_chars"), max_characters));
    c.state.data_position = static_cast<std::size_t>(
        parse_int(path, "data_position", meta("data_position"), static_cast<std::int64_t>(c.state.train_chars)));
    // Damaged or diverged weights would print garbage or NaN bits per character with exit status 0.
    for (const auto& [name, value] : c.file.tensors) {
        if (const auto bad = xgrad::first_non_finite(value)) {
            throw InputError(fmt::format("checkpoint {}: tensor '{}' holds {} at flat index {}", path, name, value.data()[*bad], *bad));
        }
    }
    const xgrad::Shape expected = {cfg.layers, cfg.batch, cfg.hidden};
    const bool with_cell_state = xgrad::nn::make_cell<float>(cfg.cell)->states() == 2;  // LSTM's c
    for (const std::string& key : {hidden_key, cell_key}) {
        if (key == cell_key && !with_cell_state) continue;
        auto found = c.file.tensors.find(key);
        if (found == c.file.tensors.end() || xgrad::shape_of(found->second) != expected) {
            throw InputError(fmt::format("checkpoint {}: '{}' missing or not of shape {}", path, key, xgrad::shape_str(expected)));
        }
        (key == hidden_key ? c.state.carried.h : c.state.carried.c) = found->second;
    }
    meta("dropout_rng");
    return c;
}

void restore(const Checkpoint& c, CharLM& model, xgrad::optim::Optimizer<float>* optimizer) {
    try {
        xgrad::nn::StateDict<float> weights;
        xgrad::TensorFile<float> opt;
        for (const auto& [name, value] : c.file.tensors) {
            if (name.starts_with(model_prefix)) weights[name.substr(model_prefix.size())] = value;
            if (name.starts_with(optimizer_prefix)) opt.tensors[name.substr(optimizer_prefix.size())] = value;
        }
        for (const auto& [key, value] : c.file.metadata) {
            if (key.starts_with(optimizer_prefix)) opt.metadata[key.substr(optimizer_prefix.size())] = value;
        }
        model.load_state_dict(weights);
        model.rnn.dropout_generator().set_state(c.file.metadata.at("dropout_rng"));
        if (optimizer) optimizer->load_state_dict(opt);
    } catch (const std::exception& e) {
        throw InputError(fmt::format("checkpoint {}: {}", c.path, e.what()));
    }
    // A resumed run multiplies with the GEMM providers the first run measured, so that it goes on
    // exactly as an uninterrupted run would (measured again, a close call could go the other way).
    const auto choices = c.file.metadata.find(gemm_choices_key);
    if (optimizer && choices != c.file.metadata.end()) {
        try {
            xgrad::restore_gemm_choices(choices->second);
        } catch (const std::invalid_argument& e) {
            fmt::print(stderr, "xgrad-charlm: checkpoint {}: its GEMM choices are ignored ({}), so the resumed run may differ from an uninterrupted one in the last bits\n",
                       c.path, e.what());
        }
    }
}

}  // namespace charlm
