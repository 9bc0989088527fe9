// Verifies an RNN's (or LSTM's, GRU's) gradients three ways, parameter by parameter: the handwritten-BPTT kernel
// against generic graph backprop, and graph backprop against central differences. Prints the
// errors and ||∂L/∂h_t|| per time step from both implementations; exits 1 beyond tolerance.
//
//   verify_gradients --layers 2 --bidirectional --lengths 6,3,4
//   verify_gradients --steps 40 --loss-last --recurrent-scale 0.5   # vanishing gradients
//   verify_gradients --cell lstm --steps 40 --loss-last --no-numeric  # the same sequence through an LSTM
#include <algorithm>
#include <cmath>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

#include "cli_checks.hpp"

namespace {
std::string bar(double value, double top) {
    // Log scale over 8 decades below the largest norm, so vanishing gradients stay visible.
    if (!(value > 0) || !(top > 0)) return "";
    const double decades = std::clamp(8.0 + std::log10(value / top), 0.0, 8.0);
    return std::string(static_cast<std::size_t>(std::lround(decades * 5)), '#');
}
}  // namespace

int main(int argc, char** argv) {
    xgrad::nn::RNNVerifyOptions o;
    std::string nonlinearity = "tanh", cell = "rnn";
    bool no_bias = false, skip_numeric = false;
    CLI::App app{"Check an RNN's handwritten BPTT against autograd, and autograd against finite differences."};
    app.add_option("--cell", cell, "rnn, lstm or gru")->check(CLI::IsMember({"rnn", "lstm", "gru"}));
    app.add_option("--input-size", o.input_size, "input features")->check(CLI::Range(1, 1000000));
    app.add_option("--hidden", o.hidden_size, "hidden size")->check(CLI::Range(1, 1000000));
    app.add_option("--layers", o.num_layers, "stacked layers")->check(CLI::Range(1, 1000000));
    app.add_option("--steps", o.steps, "sequence length T")->check(CLI::Range(1, 1000000));
    app.add_option("--batch", o.batch, "sequences per batch")->check(CLI::Range(1, 1000000));
    app.add_option("--classes", o.classes, "output classes")->check(CLI::Range(1, 1000000));
    app.add_flag("--bidirectional", o.bidirectional, "run both directions");
    app.add_flag("--no-bias", no_bias, "RNN without biases");
    app.add_option("--nonlinearity", nonlinearity, "tanh or relu")->check(CLI::IsMember({"tanh", "relu"}));
    app.add_option("--lengths", o.lengths, "per-sequence lengths, comma separated")->delimiter(',');
    app.add_flag("--loss-last", o.loss_at_last_step_only, "loss on each sequence's last step only");
    app.add_option("--recurrent-scale", o.recurrent_scale, "multiply W_hh by this after initialization")
        ->check(examples::finite_number());
    app.add_option("--forget-bias", o.forget_bias, "LSTM: add this to the forget gates' bias")->check(examples::finite_number());
    app.add_option("--seed", o.seed, "random seed")->check(CLI::NonNegativeNumber);
    app.add_flag("--no-numeric", skip_numeric, "skip finite differences (large models)");
    if (auto status = examples::parse_command_line(app, argc, argv, "verify_gradients")) return *status;
    o.bias = !no_bias;
    o.finite_differences = !skip_numeric;
    o.nonlinearity = nonlinearity == "relu" ? xgrad::nn::Nonlinearity::relu : xgrad::nn::Nonlinearity::tanh;
    o.mode = cell == "lstm" ? xgrad::nn::RecurrentMode::lstm
             : cell == "gru" ? xgrad::nn::RecurrentMode::gru : xgrad::nn::RecurrentMode::rnn;

    xgrad::nn::RNNVerifyReport report;
    try {
        report = xgrad::nn::verify_rnn_gradients(o);
    } catch (const std::exception& e) {
        fmt::print(stderr, "verify_gradients: {}\n", e.what());
        return 2;
    }
    const std::string kind = cell == "rnn" ? "RNN" : cell == "lstm" ? "LSTM" : "GRU";
    fmt::print("{}({} -> {}, layers {}, {}{}{}) + Linear({}) + cross-entropy; T {}, B {}; loss {:.6f}\n\n", kind,
               o.input_size, o.hidden_size, o.num_layers, cell == "rnn" ? nonlinearity + ", " : "",
               o.bidirectional ? "bidirectional, " : "",
               o.bias ? "bias" : "no bias", o.classes, o.steps, o.batch, report.loss);
    fmt::print("{:<24} {:>22} {:>22}\n", "parameter", "|handwritten-autograd|", "|autograd-numeric|");
    fmt::print("{:<24} {:>11} {:>10} {:>11} {:>10}\n", "", "max abs", "rel", "max abs", "rel");
    for (const auto& p : report.parameters) {
        const auto& a = p.fused_vs_graph;
        const auto& n = p.graph_vs_numeric;
        fmt::print("{:<24} {:>11.2e} {:>10.2e} {:>11} {:>10} {}\n", p.name, a.max_abs, a.max_rel,
                   o.finite_differences ? fmt::format("{:.2e}", n.max_abs) : "-",
                   o.finite_differences ? fmt::format("{:.2e}", n.max_rel) : "-",
                   a.passed && n.passed ? "ok" : "FAIL");
    }
    const auto& g = report.hidden_grad_norms_graph;
    const auto& f = report.hidden_grad_norms_fused;
    fmt::print("\n||dL/dh_t|| per time step (graph | fused), log-scale bar over 8 decades:\n");
    for (std::size_t k = 0; k < g.shape(0); ++k) {
        const std::size_t D = o.bidirectional ? 2 : 1;
        fmt::print("layer {}{}:\n", k / D, k % D ? " reverse" : "");
        double top = 0;
        for (std::size_t t = 0; t < g.shape(1); ++t) top = std::max(top, g(k, t));
        for (std::size_t t = 0; t < g.shape(1); ++t) {
            fmt::print("  t={:<4} {:>10.3e} | {:>10.3e}  {}\n", t, g(k, t), f(k, t), bar(g(k, t), top));
        }
    }
    fmt::print("\n{}\n", report.passed ? "all gradients agree" : "GRADIENTS DISAGREE beyond tolerance");
    return report.passed ? 0 : 1;
}
