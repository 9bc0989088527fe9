// Shared by the recurrent-layer tests: a model exported from PyTorch 1.13 to safetensors
// (tests/fixtures, written by make_pytorch_rnn.py) must give PyTorch's outputs, final states and
// gradients in both implementations.
#pragma once

#include <string>

#include <doctest/doctest.h>
#include <xtensor/xmath.hpp>

#include <xgrad/xgrad.hpp>

template <class T>
void check_against_pytorch(xgrad::nn::RecurrentBase<T>& layer, const std::string& name, double tol) {
    using xgrad::Graph;
    using xgrad::Tensor;
    using xgrad::Var;
    using xgrad::nn::RecurrentImplementation;

    CAPTURE(name);
    const auto io = xgrad::load_safetensors<double>(std::string(XGRAD_FIXTURES_DIR) + "/" + name + "_io.safetensors");
    auto get = [&](const std::string& key) { return Tensor<T>(xt::cast<T>(io.tensors.at(key))); };
    const bool lstm = io.tensors.count("c0") > 0;
    layer.load(std::string(XGRAD_FIXTURES_DIR) + "/" + name + ".safetensors");
    for (RecurrentImplementation impl : {RecurrentImplementation::graph, RecurrentImplementation::fused}) {
        layer.settings().implementation(impl);
        layer.zero_grad();
        Graph<T> g;
        auto x = g.variable(get("input")), h0 = g.variable(get("h0"));
        auto c0 = lstm ? g.variable(get("c0")) : Var<T>();
        auto r = layer.forward_states(x, lstm ? std::vector{h0, c0} : std::vector{h0});
        auto close = [tol](const Tensor<T>& a, const Tensor<T>& b) {
            return a.shape() == b.shape() && xt::amax(xt::abs(a - b))() <= tol;
        };
        CHECK(close(r.output.value(), get("output")));
        CHECK(close(r.h_n.value(), get("h_n")));
        auto loss = xgrad::sum(r.output * g.constant(get("w_out"))) + xgrad::sum(r.h_n * g.constant(get("w_state")));
        if (lstm) {
            CHECK(close(r.states[1].value(), get("c_n")));
            loss = loss + xgrad::sum(r.states[1] * g.constant(get("w_cell")));
        }
        loss.backward();
        CHECK(close(x.grad(), get("grad.input")));
        CHECK(close(h0.grad(), get("grad.h0")));
        if (lstm) CHECK(close(c0.grad(), get("grad.c0")));
        for (const auto& [pname, p] : layer.named_parameters()) {
            CAPTURE(pname);
            CHECK(close(p.grad(), get("grad." + pname)));
        }
    }
}
