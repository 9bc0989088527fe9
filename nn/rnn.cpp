#include "rnn.hpp"

#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "../autograd/ops.hpp"
#include "../tensor/instantiate.hpp"

namespace xgrad::nn {

namespace {
template <class Cell, class T>
std::shared_ptr<const AnyCell<T>> cell_of(Nonlinearity nonlinearity) {
    Cell cell;
    if constexpr (requires { cell.nonlinearity = nonlinearity; }) cell.nonlinearity = nonlinearity;
    return make_any_cell<T>(std::move(cell));
}

template <class Layer, class T>
std::unique_ptr<RecurrentBase<T>> layer_of(const RecurrentOptions& options, Generator& gen) {
    return std::make_unique<Layer>(options, gen);
}

// A built-in cell: its name, its cell and its layer, and whether it takes a nonlinearity (a cell
// with a `nonlinearity` member, the Elman cell's).
struct BuiltInCell {
    std::string_view name;
    bool takes_nonlinearity;
    std::shared_ptr<const AnyCell<float>> (*cell_float)(Nonlinearity);
    std::shared_ptr<const AnyCell<double>> (*cell_double)(Nonlinearity);
    std::unique_ptr<RecurrentBase<float>> (*layer_float)(const RecurrentOptions&, Generator&);
    std::unique_ptr<RecurrentBase<double>> (*layer_double)(const RecurrentOptions&, Generator&);
};

template <class Cell, template <class> class Layer>
constexpr BuiltInCell built_in(std::string_view name) {
    return {name, requires(Cell cell) { cell.nonlinearity; }, &cell_of<Cell, float>, &cell_of<Cell, double>,
            &layer_of<Layer<float>, float>, &layer_of<Layer<double>, double>};
}

// The registry of built-in cells: a new one is a row here (and its files under cells/). The tests,
// xgrad-charlm --cell and verify_gradients --cell take every row.
constexpr BuiltInCell built_in_cells[] = {
    built_in<cells::Elman, RNN>("rnn"),
    built_in<cells::LSTM, LSTM>("lstm"),
    built_in<cells::GRU, GRU>("gru"),
};

const BuiltInCell& built_in_cell(std::string_view name) {
    for (const BuiltInCell& row : built_in_cells) {
        if (row.name == name) return row;
    }
    throw std::invalid_argument(fmt::format("unknown recurrent cell '{}' (known: {})", name, fmt::join(recurrent_cell_names(), ", ")));
}

}  // namespace

std::vector<std::string> recurrent_cell_names() {
    std::vector<std::string> names;
    for (const BuiltInCell& row : built_in_cells) names.emplace_back(row.name);
    return names;
}

template <class T>
std::shared_ptr<const AnyCell<T>> make_cell(std::string_view name, Nonlinearity nonlinearity) {
    const BuiltInCell& row = built_in_cell(name);
    std::shared_ptr<const AnyCell<T>> cell;
    if constexpr (std::is_same_v<T, float>) {
        cell = row.cell_float(nonlinearity);
    } else {
        cell = row.cell_double(nonlinearity);
    }
    // Anywhere else a relu would be silently ignored.
    if (!row.takes_nonlinearity && nonlinearity != Nonlinearity::tanh) {
        throw std::invalid_argument(fmt::format("{}: nonlinearity applies to RNN (Elman) layers only", cell->name()));
    }
    return cell;
}

template <class T>
std::unique_ptr<RecurrentBase<T>> make_recurrent(std::string_view name, const RecurrentOptions& options, Generator& gen) {
    const BuiltInCell& row = built_in_cell(name);
    if constexpr (std::is_same_v<T, float>) {
        return row.layer_float(options, gen);
    } else {
        return row.layer_double(options, gen);
    }
}

// The nonlinearity goes to the Elman cell; the layer itself takes none.
template <class T>
RNN<T>::RNN(const RNNOptions& o, Generator& gen)
    : RecurrentBase<T>(make_cell<T>("rnn", o.nonlinearity()), RNNOptions(o).nonlinearity(Nonlinearity::tanh), gen) {}

template <class T>
RNNOutput<T> RNN<T>::forward(const Var<T>& input, const Var<T>& h0, const std::vector<std::int64_t>& lengths) {
    RecurrentOutput<T> r = this->forward_states(input, {h0}, lengths);
    return {r.output, r.h_n};
}

template <class T>
LSTM<T>::LSTM(const LSTMOptions& o, Generator& gen) : RecurrentBase<T>(make_cell<T>("lstm"), o, gen) {}

template <class T>
LSTMOutput<T> LSTM<T>::forward(const Var<T>& input, const Var<T>& h0, const Var<T>& c0,
                               const std::vector<std::int64_t>& lengths) {
    if (h0.defined() != c0.defined()) {
        throw std::invalid_argument(fmt::format("{}: h0 and c0 go together: give both or neither (got {} only)", this->type_name(),
                                                h0.defined() ? "h0" : "c0"));
    }
    RecurrentOutput<T> r = this->forward_states(input, {h0, c0}, lengths);
    return {r.output, r.h_n, r.states[1]};
}

template <class T>
GRU<T>::GRU(const GRUOptions& o, Generator& gen) : RecurrentBase<T>(make_cell<T>("gru"), o, gen) {}

template <class T>
RNNOutput<T> GRU<T>::forward(const Var<T>& input, const Var<T>& h0, const std::vector<std::int64_t>& lengths) {
    RecurrentOutput<T> r = this->forward_states(input, {h0}, lengths);
    return {r.output, r.h_n};
}

template <class T>
CellBase<T>::CellBase(std::string name, std::shared_ptr<const AnyCell<T>> cell, const RNNCellOptions& options, Generator& gen)
    : Module<T>(std::move(name)), cell_(std::move(cell)), options_(options) {
    if (options.input_size() == 0 || options.hidden_size() == 0) {
        throw std::invalid_argument(fmt::format("{}: input_size ({}) and hidden_size ({}) must be positive", this->type_name(),
                                                options.input_size(), options.hidden_size()));
    }
    RecurrentSpec spec;
    spec.input_size = options.input_size();
    spec.hidden_size = options.hidden_size();
    spec.bias = options.bias();
    const double bound = 1.0 / std::sqrt(static_cast<double>(spec.hidden_size));
    // PyTorch's cells hold weight_hh and bias_hh as their two parameters (recurrent_matrix_parameters).
    DirectionParameters<Parameter<T>> p;
    for_each_registered(p, cell_->parameters(spec.hidden_size), cell_->gates(), spec, 0,
                        [&](const std::string& name, const Shape& shape, Parameter<T>& slot) {
        slot = this->register_parameter(name, uniform<T>(shape, -bound, bound, gen));
    });
    weight_ih = p.weight_ih;
    bias_ih = p.bias_ih;
    weight_hh = p.cell.at(0);
    bias_hh = p.cell.at(1);
}

template <class T>
std::vector<Var<T>> CellBase<T>::step(const Var<T>& input, const std::vector<Var<T>>& states) const {
    const std::string& who = this->type_name();
    const Shape in = input.shape();
    const std::size_t H = options_.hidden_size();
    if (in.size() != 2 || in[1] != options_.input_size()) {
        throw ShapeError(fmt::format("{}: input must be (batch, {}), got {}", who, options_.input_size(), shape_str(in)));
    }
    for (std::size_t i = 0; i < states.size(); ++i) {
        if (states[i].shape() != Shape{in[0], H}) {
            throw ShapeError(fmt::format("{}: {} must be {}, got {}", who, i == 0 ? "hx" : "cx", shape_str({in[0], H}),
                                         shape_str(states[i].shape())));
        }
    }
    Tape<T>& tape = input.tape();
    CellStep<T> step;
    step.hidden = H;
    step.gates = linear(input, tape.parameter(weight_ih), options_.bias() ? tape.parameter(bias_ih) : Var<T>());
    Tensor<T> zeros = Tensor<T>::from_shape({in[0], H});
    zeros.fill(T(0));
    const Var<T> zero = tape.leaf(std::move(zeros), false);
    for (std::size_t i = 0; i < cell_->states(); ++i) step.previous.push_back(i < states.size() ? states[i] : zero);
    step.h_in = step.previous[0];
    step.params = {tape.parameter(weight_hh), options_.bias() ? tape.parameter(bias_hh) : Var<T>()};
    return cell_->step(step);
}

template <class T>
RNNCell<T>::RNNCell(const RNNCellOptions& o, Generator& gen) : CellBase<T>("RNNCell", make_cell<T>("rnn", o.nonlinearity()), o, gen) {}

template <class T>
Var<T> RNNCell<T>::forward(const Var<T>& input, const Var<T>& hx) const {
    return this->step(input, hx.defined() ? std::vector<Var<T>>{hx} : std::vector<Var<T>>{})[0];
}

template <class T>
LSTMCell<T>::LSTMCell(const LSTMCellOptions& o, Generator& gen) : CellBase<T>("LSTMCell", make_cell<T>("lstm", o.nonlinearity()), o, gen) {}

template <class T>
std::pair<Var<T>, Var<T>> LSTMCell<T>::forward(const Var<T>& input, const Var<T>& hx, const Var<T>& cx) const {
    if (hx.defined() != cx.defined()) {
        throw std::invalid_argument(fmt::format("LSTMCell: hx and cx go together: give both or neither (got {} only)",
                                                hx.defined() ? "hx" : "cx"));
    }
    const std::vector<Var<T>> next = this->step(input, hx.defined() ? std::vector<Var<T>>{hx, cx} : std::vector<Var<T>>{});
    return {next[0], next[1]};
}

template <class T>
GRUCell<T>::GRUCell(const GRUCellOptions& o, Generator& gen) : CellBase<T>("GRUCell", make_cell<T>("gru", o.nonlinearity()), o, gen) {}

template <class T>
Var<T> GRUCell<T>::forward(const Var<T>& input, const Var<T>& hx) const {
    return this->step(input, hx.defined() ? std::vector<Var<T>>{hx} : std::vector<Var<T>>{})[0];
}

#define RNN_INSTANCES(T)                                                                                            \
    template std::shared_ptr<const AnyCell<T>> make_cell<T>(std::string_view, Nonlinearity);                            \
    template std::unique_ptr<RecurrentBase<T>> make_recurrent<T>(std::string_view, const RecurrentOptions&, Generator&); \
    template class RNN<T>;                                                                                              \
    template class LSTM<T>;                                                                                             \
    template class GRU<T>;                                                                                              \
    template class CellBase<T>;                                                                                         \
    template class RNNCell<T>;                                                                                          \
    template class LSTMCell<T>;                                                                                         \
    template class GRUCell<T>;
XGRAD_FOR_FLOAT_AND_DOUBLE(RNN_INSTANCES)

}  // namespace xgrad::nn
