// Every built-in cell, two ways, one answer: each name recurrent_cell_names() lists runs the
// graph path against the fused kernel over the full grid of options, passes gradcheck and the
// verification report, and registers PyTorch-named parameters that strict loading checks. A cell
// added to the registry (nn/rnn.cpp) joins every case here without a change to this file.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

#include "recurrent_grid.hpp"

using xgrad::Tensor;
using xgrad::Var;
using xgrad::nn::RecurrentImplementation;
namespace nn = xgrad::nn;

TEST_CASE("every built-in cell: graph and fused agree on outputs, states and every gradient over the full grid, double (1e-10)") {
    for (const std::string& cell : nn::recurrent_cell_names()) {
        for (const grid::Config& c : grid::full_grid(cell)) {
            CAPTURE(c.name());
            grid::check_agreement<double>(c, 1e-10);
        }
    }
}

TEST_CASE("every built-in cell: graph and fused agree over the full grid in float (5e-5 absolute)") {
    for (const std::string& cell : nn::recurrent_cell_names()) {
        for (const grid::Config& c : grid::full_grid(cell)) {
            CAPTURE(c.name());
            grid::check_agreement<float>(c, 5e-5);
        }
    }
}

TEST_CASE("every built-in cell passes gradcheck in double, both implementations, for input, every state and every weight") {
    for (const std::string& cell : nn::recurrent_cell_names()) {
        for (RecurrentImplementation impl : {RecurrentImplementation::graph, RecurrentImplementation::fused}) {
            CAPTURE(cell);
            xgrad::Generator gen(3);
            auto layer = grid::make_layer<double>({cell, nn::Nonlinearity::tanh, true, 2, true, false, true, true}, gen);
            layer->settings().implementation(impl);
            const std::size_t S = layer->cell().states();
            const std::vector<std::int64_t> lengths = {4, 2};
            std::vector<Tensor<double>> inputs = {xgrad::uniform<double>({4, 2, grid::I}, -1, 1, gen)};
            for (std::size_t i = 0; i < S; ++i) inputs.push_back(xgrad::uniform<double>({4, 2, grid::H}, -1, 1, gen));
            auto report = xgrad::gradcheck([&](const std::vector<Var<double>>& v) {
                auto r = layer->forward_states(v[0], std::vector<Var<double>>(v.begin() + 1, v.end()), lengths);
                std::vector<Var<double>> parts = {xgrad::reshape(r.output, {-1})};
                for (const Var<double>& state : r.states) parts.push_back(xgrad::reshape(state, {-1}));
                return xgrad::concat(parts, 0);
            }, inputs, layer->parameters());
            INFO(report.summary());
            CHECK(report.passed);
        }
    }
}

TEST_CASE("every built-in cell: the verification report agrees on handwritten, autograd and numeric gradients" * doctest::test_suite("slow")) {
    for (const std::string& cell : nn::recurrent_cell_names()) {
        CAPTURE(cell);
        nn::RecurrentVerifyOptions o;
        o.cell(cell);
        o.num_layers(2);
        o.bidirectional(true);
        o.lengths({6, 2, 4});
        auto report = nn::verify_recurrent_gradients(o);
        CHECK(report.passed);
        const std::size_t per_direction = 2 + nn::make_cell<double>(cell)->parameters(4).size();  // weight_ih, bias_ih, the cell's
        CHECK(report.parameters.size() == 2 * 2 * per_direction + 2 + 1);  // the layer's, the head, the input
        for (const auto& p : report.parameters) {
            CAPTURE(p.name);
            CHECK(p.fused_vs_graph.max_abs <= 1e-10);
            CHECK(p.graph_vs_numeric.max_abs <= 1e-6);
        }
    }
}

TEST_CASE("every built-in cell registers PyTorch's names and shapes, and strict loading names what does not fit") {
    for (const std::string& cell : nn::recurrent_cell_names()) {
        CAPTURE(cell);
        auto layer = nn::make_recurrent<float>(cell, nn::RecurrentOptions(3, 4).num_layers(2).bidirectional(true));
        const std::size_t gates_h = layer->cell().gates() * 4;
        const auto declared = layer->cell().parameters(4);
        // Per (layer, direction): weight_ih, the cell's weights, bias_ih, the cell's biases, PyTorch's order.
        std::vector<std::pair<std::string, xgrad::Shape>> expected;
        for (std::size_t l = 0; l < 2; ++l) {
            for (const char* suffix : {"", "_reverse"}) {
                const std::string at = fmt::format("_l{}{}", l, suffix);
                expected.push_back({"weight_ih" + at, {gates_h, l == 0 ? std::size_t{3} : std::size_t{8}}});
                for (bool biases : {false, true}) {
                    if (biases) expected.push_back({"bias_ih" + at, {gates_h}});
                    for (const nn::CellParameter& p : declared) {
                        if (p.is_bias == biases) expected.push_back({p.name + at, p.shape});
                    }
                }
            }
        }
        std::vector<std::pair<std::string, xgrad::Shape>> registered;
        for (const auto& [name, p] : layer->named_parameters()) registered.push_back({name, p.shape()});
        CHECK(registered == expected);
        auto misshaped = layer->state_dict();
        misshaped["weight_ih_l1"] = Tensor<float>::from_shape({gates_h, 5});
        const Tensor<float> before = layer->named_parameters()[0].second.value();
        const std::string message = fmt::format("parameter 'weight_ih_l1' has shape ({}, 5) in the state dict, expected ({}, 8)",
                                                gates_h, gates_h);
        CHECK_THROWS_WITH_AS(layer->load_state_dict(misshaped), doctest::Contains(message.c_str()), xgrad::ShapeError);
        CHECK(layer->named_parameters()[0].second.value() == before);  // nothing changed
    }
}

TEST_CASE("RecurrentOptions carries its structure to spec() and every setting to the layer's settings()") {
    const auto options = nn::RecurrentOptions(3, 4)
                             .num_layers(2)
                             .bias(false)
                             .bidirectional(true)
                             .batch_first(true)
                             .dropout(0.1)
                             .implementation(RecurrentImplementation::fused)
                             .dropout_input(0.2)
                             .dropout_output(0.3)
                             .dropout_recurrent(0.4)
                             .zoneout(0.5)
                             .zoneout_cell(0.6)
                             .checkpoint_every(7);
    const nn::RecurrentSpec spec = options.spec();
    CHECK(spec.input_size == 3);
    CHECK(spec.hidden_size == 4);
    CHECK(spec.num_layers == 2);
    CHECK_FALSE(spec.bias);
    CHECK(spec.bidirectional);
    auto layer = nn::make_recurrent<float>("gru", options);
    const nn::RecurrentSettings& s = layer->settings();
    CHECK(s.batch_first());
    CHECK(s.dropout() == 0.1);
    CHECK(s.implementation() == RecurrentImplementation::fused);
    CHECK(s.dropout_input() == 0.2);
    CHECK(s.dropout_output() == 0.3);
    CHECK(s.dropout_recurrent() == 0.4);
    CHECK(s.zoneout() == 0.5);
    CHECK(s.zoneout_cell() == 0.6);
    CHECK(s.checkpoint_every() == 7);
}
