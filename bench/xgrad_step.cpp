#include <xgrad/xgrad.hpp>

#include "steps.hpp"

namespace bench {

namespace {
class XgradTrainer : public Trainer {
  public:
    XgradTrainer(const Problem& p, bool fused) : p_(p), gen_(1), head_(p.hidden, p.vocab, true, gen_) {
        namespace nn = xgrad::nn;
        const auto impl = fused ? nn::RecurrentImplementation::fused : nn::RecurrentImplementation::graph;
        layer_ = nn::make_recurrent<float>(p.cell, nn::RecurrentOptions(p.vocab, p.hidden).implementation(impl), gen_);
        params_ = layer_->parameters();
        for (const auto& w : head_.parameters()) params_.push_back(w);
        optimizer_ = std::make_unique<xgrad::optim::SGD<float>>(params_, xgrad::optim::SGDOptions(0.01));
        ids_ = xgrad::Indices::from_shape({p.steps, p.batch});
        targets_ = xgrad::Indices::from_shape({p.steps, p.batch});
        for (auto& v : ids_) v = static_cast<std::int64_t>(gen_.below(p.vocab));
        for (auto& v : targets_) v = static_cast<std::int64_t>(gen_.below(p.vocab));
    }

    // The characters go in as indices: the same model as a one-hot input, without the input GEMM.
    // Checkpointed, the layer, the head and the loss run segment by segment (checkpointed_loss).
    void step() override {
        xgrad::Graph<float> g;
        xgrad::Var<float> loss;
        if (p_.checkpoint_every == 0) {
            loss = xgrad::cross_entropy(head_.forward(layer_->forward_indices(g, ids_).output), targets_);
        } else {
            auto segment_loss = [this](const xgrad::Var<float>& output, std::size_t t0) {
                const std::size_t n = output.shape()[0];
                xgrad::Indices part = xgrad::Indices::from_shape({n, p_.batch});
                std::copy_n(targets_.data() + t0 * p_.batch, n * p_.batch, part.data());
                xgrad::CrossEntropyOptions sum;
                sum.reduction(xgrad::CrossEntropyOptions::Reduction::sum);
                return xgrad::cross_entropy(head_.forward(output), part, sum);
            };
            loss = layer_->checkpointed_loss(g, ids_, {}, p_.checkpoint_every, segment_loss).loss *
                   (1.0f / static_cast<float>(p_.steps * p_.batch));
        }
        optimizer_->zero_grad();
        loss.backward();
        optimizer_->step();
    }

  private:
    Problem p_;
    xgrad::Generator gen_;
    std::unique_ptr<xgrad::nn::RecurrentBase<float>> layer_;
    xgrad::nn::Linear<float> head_;
    std::vector<xgrad::Parameter<float>> params_;
    std::unique_ptr<xgrad::optim::SGD<float>> optimizer_;
    xgrad::Indices ids_, targets_;
};

class XgradLayer : public Trainer {
  public:
    XgradLayer(const Problem& p, bool fused) : gen_(1) {
        namespace nn = xgrad::nn;
        const auto impl = fused ? nn::RecurrentImplementation::fused : nn::RecurrentImplementation::graph;
        layer_ = nn::make_recurrent<float>(p.cell, nn::RecurrentOptions(p.vocab, p.hidden).implementation(impl), gen_);
        input_ = xgrad::uniform<float>({p.steps, p.batch, p.vocab}, -1, 1, gen_);
    }
    void step() override {
        xgrad::Graph<float> g;
        auto loss = xgrad::sum(layer_->forward_states(g.variable(input_)).output);
        layer_->zero_grad();
        loss.backward();
    }

  private:
    xgrad::Generator gen_;
    std::unique_ptr<xgrad::nn::RecurrentBase<float>> layer_;
    xgrad::Tensor<float> input_;
};
}  // namespace

std::unique_ptr<Trainer> make_xgrad(const Problem& p, bool fused) { return std::make_unique<XgradTrainer>(p, fused); }
std::unique_ptr<Trainer> make_xgrad_layer(const Problem& p, bool fused) { return std::make_unique<XgradLayer>(p, fused); }

}  // namespace bench
