// Built against an installed xgrad: the umbrella header and the exported target are enough.
#include <cstdio>

#include <xgrad/xgrad.hpp>

int main() {
    xgrad::Graph<double> g;
    auto x = g.variable(xgrad::Tensor<double>{1.0, 2.0, 3.0});
    xgrad::sum(x * x).backward();  // d/dx = 2x
    bool ok = x.grad() == xgrad::Tensor<double>{2.0, 4.0, 6.0};
    // A module and an optimizer, so that every library of the package is linked.
    xgrad::Generator gen(0);
    xgrad::nn::Linear<double> layer(3, 2, true, gen);
    auto y = layer.forward(g.constant(xgrad::Tensor<double>{{1.0, 2.0, 3.0}}));
    xgrad::sum(y).backward();
    xgrad::optim::SGD<double> sgd(layer.parameters(), xgrad::optim::SGDOptions(0.1));
    sgd.step();
    ok = ok && y.shape() == xgrad::Shape{1, 2};
    std::puts(ok ? "consumer: gradient ok" : "consumer: wrong gradient");
    return ok ? 0 : 1;
}
