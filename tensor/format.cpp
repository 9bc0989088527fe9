#include "format.hpp"

#include <fmt/format.h>

namespace xgrad {

namespace {
template <class T>
void format_block(std::string& out, const Tensor<T>& t, std::size_t dim, std::size_t offset, int precision,
                  std::size_t edge, std::size_t indent) {
    const std::size_t n = t.shape(dim);
    const std::size_t stride = t.strides()[dim];
    const bool elide = edge > 0 && n > 2 * edge;  // 0 edge items: never elide
    out += '[';
    for (std::size_t i = 0; i < n; ++i) {
        if (elide && i == edge) {
            out += dim + 1 == t.dimension() ? "..., " : fmt::format("...,\n{:{}}", "", indent + 1);
            i = n - edge;
        }
        if (dim + 1 == t.dimension()) {
            out += fmt::format("{:.{}f}", t.data()[offset + i * stride], precision);
        } else {
            format_block(out, t, dim + 1, offset + i * stride, precision, edge, indent + 1);
        }
        if (i + 1 < n) out += dim + 1 == t.dimension() ? ", " : fmt::format(",\n{:{}}", "", indent + 1);
    }
    out += ']';
}
}  // namespace

template <class T>
std::string format_tensor(const Tensor<T>& t, int precision, std::size_t edge_items) {
    std::string out = "tensor(";
    if (t.dimension() == 0) {
        out += fmt::format("{:.{}f}", t.data()[0], precision);
    } else if (t.size() == 0) {
        out += "[]";
    } else {
        format_block(out, t, 0, 0, precision, edge_items, 7);
    }
    out += fmt::format(", shape={})", shape_str(shape_of(t)));
    return out;
}

template std::string format_tensor(const Tensor<float>&, int, std::size_t);
template std::string format_tensor(const Tensor<double>&, int, std::size_t);

}  // namespace xgrad
