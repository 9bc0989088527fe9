// The anchor: oneDNN's own RNN training primitives (vanilla RNN tanh, LSTM, and the
// linear-before-reset GRU, which is PyTorch's), one unidirectional layer, forward_training then
// backward, in the layouts oneDNN chooses for itself (the weights are reordered once, outside the
// timed step). Built only when Debian's libdnnl-dev is found; benchmark-only, like libtorch.
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>

#include "steps.hpp"

namespace bench {

namespace {
using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

memory filled(const memory::desc& md, const dnnl::engine& eng, float value) {
    memory m(md, eng);
    auto* data = static_cast<float*>(m.get_data_handle());
    std::fill_n(data, md.get_size() / sizeof(float), value);
    return m;
}

class OnednnLayer : public Trainer {
  public:
    explicit OnednnLayer(const Problem& p) : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_), cell_(p.cell) {
        const memory::dim T = static_cast<memory::dim>(p.steps), N = static_cast<memory::dim>(p.batch);
        const memory::dim I = static_cast<memory::dim>(p.vocab), H = static_cast<memory::dim>(p.hidden);
        const memory::dim G = p.cell == "lstm" ? 4 : p.cell == "gru" ? 3 : 1, bias_gates = p.cell == "gru" ? 4 : G;
        const memory::desc src({T, N, I}, dt::f32, tag::tnc), dst({T, N, H}, dt::f32, tag::tnc);
        const memory::desc weights_layer({1, 1, I, G, H}, dt::f32, tag::any), weights_iter({1, 1, H, G, H}, dt::f32, tag::any);
        const memory::desc bias({1, 1, bias_gates, H}, dt::f32, tag::ldgo), none;
        const auto forward = dnnl::prop_kind::forward_training, backward = dnnl::prop_kind::backward;
        const auto direction = dnnl::rnn_direction::unidirectional_left2right;
        dnnl::primitive_desc_base forward_pd, backward_pd;
        if (p.cell == "lstm") {
            dnnl::lstm_forward::primitive_desc f({forward, direction, src, none, none, weights_layer, weights_iter, bias, dst, none, none}, engine_);
            dnnl::lstm_backward::primitive_desc b({backward, direction, src, none, none, weights_layer, weights_iter, bias, dst, none, none,
                                                   src, none, none, weights_layer, weights_iter, bias, dst, none, none}, engine_, f);
            forward_ = dnnl::lstm_forward(f);
            backward_ = dnnl::lstm_backward(b);
            forward_pd = f;
            backward_pd = b;
        } else if (p.cell == "gru") {
            dnnl::lbr_gru_forward::primitive_desc f({forward, direction, src, none, weights_layer, weights_iter, bias, dst, none}, engine_);
            dnnl::lbr_gru_backward::primitive_desc b({backward, direction, src, none, weights_layer, weights_iter, bias, dst, none, src, none,
                                                      weights_layer, weights_iter, bias, dst, none}, engine_, f);
            forward_ = dnnl::lbr_gru_forward(f);
            backward_ = dnnl::lbr_gru_backward(b);
            forward_pd = f;
            backward_pd = b;
        } else {
            const auto tanh = dnnl::algorithm::eltwise_tanh;
            dnnl::vanilla_rnn_forward::primitive_desc f({forward, tanh, direction, src, none, weights_layer, weights_iter, bias, dst, none}, engine_);
            dnnl::vanilla_rnn_backward::primitive_desc b({backward, tanh, direction, src, none, weights_layer, weights_iter, bias, dst, none,
                                                          src, none, weights_layer, weights_iter, bias, dst, none}, engine_, f);
            forward_ = dnnl::vanilla_rnn_forward(f);
            backward_ = dnnl::vanilla_rnn_backward(b);
            forward_pd = f;
            backward_pd = b;
        }
        // Constant weights in oneDNN's chosen layouts, reordered once from PyTorch-like ldigo.
        auto weights = [&](const memory::desc& user, const memory::desc& wanted) {
            memory from = filled(user, engine_, 0.05f), to(wanted, engine_);
            dnnl::reorder(from, to).execute(stream_, from, to);
            return to;
        };
        const memory::desc user_layer({1, 1, I, G, H}, dt::f32, tag::ldigo), user_iter({1, 1, H, G, H}, dt::f32, tag::ldigo);
        const auto query = [](const dnnl::primitive_desc_base& pd, int arg) { return pd.query_md(dnnl::query::exec_arg_md, arg); };
        args_forward_ = {{DNNL_ARG_SRC_LAYER, filled(src, engine_, 0.5f)},
                         {DNNL_ARG_WEIGHTS_LAYER, weights(user_layer, query(forward_pd, DNNL_ARG_WEIGHTS_LAYER))},
                         {DNNL_ARG_WEIGHTS_ITER, weights(user_iter, query(forward_pd, DNNL_ARG_WEIGHTS_ITER))},
                         {DNNL_ARG_BIAS, filled(bias, engine_, 0.01f)},
                         {DNNL_ARG_DST_LAYER, memory(dst, engine_)},
                         {DNNL_ARG_WORKSPACE, memory(query(forward_pd, DNNL_ARG_WORKSPACE), engine_)}};
        args_backward_ = args_forward_;
        args_backward_[DNNL_ARG_WEIGHTS_LAYER] = weights(user_layer, query(backward_pd, DNNL_ARG_WEIGHTS_LAYER));
        args_backward_[DNNL_ARG_WEIGHTS_ITER] = weights(user_iter, query(backward_pd, DNNL_ARG_WEIGHTS_ITER));
        args_backward_[DNNL_ARG_DIFF_DST_LAYER] = filled(dst, engine_, 1.0f);  // ∂(Σ output)/∂output
        args_backward_[DNNL_ARG_DIFF_SRC_LAYER] = memory(src, engine_);
        for (int arg : {DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER, DNNL_ARG_DIFF_BIAS}) {
            args_backward_[arg] = memory(query(backward_pd, arg), engine_);
        }
        stream_.wait();
    }

    void step() override {
        forward_.execute(stream_, args_forward_);
        // The weight gradients accumulate, as a graph's do: zeroed each step, as zero_grad does.
        for (int arg : {DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER, DNNL_ARG_DIFF_BIAS}) {
            memory& m = args_backward_.at(arg);
            std::memset(m.get_data_handle(), 0, m.get_desc().get_size());
        }
        backward_.execute(stream_, args_backward_);
        stream_.wait();
    }

  private:
    dnnl::engine engine_;
    dnnl::stream stream_;
    std::string cell_;
    dnnl::primitive forward_, backward_;
    std::unordered_map<int, memory> args_forward_, args_backward_;
};
}  // namespace

std::unique_ptr<Trainer> make_onednn_layer(const Problem& p) { return std::make_unique<OnednnLayer>(p); }

std::string onednn_version() {
    const dnnl_version_t* v = dnnl_version();
    return fmt::format("{}.{}.{}", v->major, v->minor, v->patch);
}

}  // namespace bench
