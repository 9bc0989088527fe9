// Verifies an RNN's (or LSTM's, GRU's) gradients three ways, parameter by parameter: the handwritten-BPTT kernel
// against generic graph backprop, and graph backprop against central differences. Prints the
// errors and ||∂L/∂h_t|| per time step from both implementations; exits 1 beyond tolerance.
//
//   verify_gradients --layers 2 --bidirectional --lengths 6,3,4
//   verify_gradients --steps 40 --loss-last --recurrent-scale 0.5   # vanishing gradients
//   verify_gradients --cell lstm --steps 40 --loss-last --no-numeric  # the same sequence through an LSTM
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "cli_checks.hpp"
#include "guards.hpp"

namespace {
constexpr const char* sizes = "--hidden, --layers, --steps, --batch or --input-size";  // the flags that decide the memory

// Refuses a check that would not fit in memory: every layer and direction's parameters, and a
// training step's activations over steps x batch positions, in double (twice a float's bytes).
void check_fits(const xgrad::nn::RecurrentVerifyOptions& o) {
    const double directions = o.bidirectional() ? 2 : 1, layers = static_cast<double>(o.num_layers()) * directions;
    const auto gates = xgrad::nn::make_cell<double>(o.cell())->gates();
    const double H = static_cast<double>(o.hidden_size()), widest_input = std::max(static_cast<double>(o.input_size()), directions * H);
    const double parameters = layers * static_cast<double>(gates) * H * (widest_input + H + 2) + static_cast<double>(o.classes()) * directions * H;
    const double positions = static_cast<double>(o.steps()) * static_cast<double>(o.batch());
    examples::check_memory("this check",
                           2 * examples::training_bytes(parameters,
                                                        layers * examples::recurrent_floats(positions, o.hidden_size(), gates)),
                           sizes);
}

int run(int argc, char** argv) {
    const xgrad::nn::RecurrentVerifyOptions defaults;  // each flag's default
    std::string cell = defaults.cell(), nonlinearity = "tanh";
    std::size_t input_size = defaults.input_size(), hidden = defaults.hidden_size(), layers = defaults.num_layers();
    std::size_t steps = defaults.steps(), batch = defaults.batch(), classes = defaults.classes();
    std::vector<std::int64_t> lengths;
    double recurrent_scale = defaults.recurrent_scale(), forget_bias = defaults.forget_bias();
    std::uint64_t seed = defaults.seed();
    bool bidirectional = false, loss_last = false, no_bias = false, skip_numeric = false;
    CLI::App app{"Check an RNN's handwritten BPTT against autograd, and autograd against finite differences."};
    app.add_option("--cell", cell, "rnn, lstm or gru")->check(CLI::IsMember(xgrad::nn::recurrent_cell_names()));
    app.add_option("--input-size", input_size, "input features")->check(CLI::Range(1, 1000000));
    app.add_option("--hidden", hidden, "hidden size")->check(CLI::Range(1, 1000000));
    app.add_option("--layers", layers, "stacked layers")->check(CLI::Range(1, 1000000));
    app.add_option("--steps", steps, "sequence length T")->check(CLI::Range(1, 1000000));
    app.add_option("--batch", batch, "sequences per batch")->check(CLI::Range(1, 1000000));
    app.add_option("--classes", classes, "output classes")->check(CLI::Range(1, 1000000));
    app.add_flag("--bidirectional", bidirectional, "run both directions");
    app.add_flag("--no-bias", no_bias, "RNN without biases");
    app.add_option("--nonlinearity", nonlinearity, "tanh or relu")->check(CLI::IsMember({"tanh", "relu"}));
    app.add_option("--lengths", lengths, "per-sequence lengths, comma separated")->delimiter(',');
    app.add_flag("--loss-last", loss_last, "loss on each sequence's last step only");
    app.add_option("--recurrent-scale", recurrent_scale, "multiply W_hh by this after initialization")
        ->check(examples::finite_number());
    app.add_option("--forget-bias", forget_bias, "LSTM: add this to the forget gates' bias")->check(examples::finite_number());
    app.add_option("--seed", seed, "random seed")->check(examples::seed_number());
    app.add_flag("--no-numeric", skip_numeric, "skip finite differences (large models)");
    // 1 means gradients beyond tolerance: a bad option is 2, as every other error here.
    if (auto status = examples::parse_command_line(app, argc, argv, "verify_gradients")) return *status == 0 ? 0 : 2;
    const auto o = xgrad::nn::RecurrentVerifyOptions()
                       .cell(cell)
                       .input_size(input_size)
                       .hidden_size(hidden)
                       .num_layers(layers)
                       .steps(steps)
                       .batch(batch)
                       .classes(classes)
                       .bidirectional(bidirectional)
                       .bias(!no_bias)
                       .nonlinearity(nonlinearity == "relu" ? xgrad::nn::Nonlinearity::relu : xgrad::nn::Nonlinearity::tanh)
                       .lengths(lengths)
                       .loss_at_last_step_only(loss_last)
                       .recurrent_scale(recurrent_scale)
                       .forget_bias(forget_bias)
                       .seed(seed)
                       .finite_differences(!skip_numeric);

    check_fits(o);
    const xgrad::nn::RecurrentVerifyReport report = xgrad::nn::verify_recurrent_gradients(o);
    fmt::print("{}", xgrad::nn::format_report(report, o));
    return report.passed ? 0 : 1;
}
}  // namespace

// Status 1 means gradients beyond tolerance: an error (a bad option, too little memory) exits 2.
int main(int argc, char** argv) {
    return examples::run_guarded("verify_gradients", sizes, [&] { return run(argc, argv); }, 2);
}
