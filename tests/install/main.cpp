// Built against an installed xgrad: the umbrella header and the exported target are enough.
#include <cstdio>

#include <xgrad/xgrad.hpp>

int main() {
    xgrad::Graph<double> g;
    auto x = g.variable(xgrad::Tensor<double>{1.0, 2.0, 3.0});
    xgrad::sum(x * x).backward();  // d/dx = 2x
    const bool ok = x.grad() == xgrad::Tensor<double>{2.0, 4.0, 6.0};
    std::puts(ok ? "consumer: gradient ok" : "consumer: wrong gradient");
    return ok ? 0 : 1;
}
