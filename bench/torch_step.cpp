// The same training step in libtorch's C++ API (Debian's libtorch-dev), built only when CMake
// finds it.
#include <torch/torch.h>

#include "steps.hpp"

namespace bench {

namespace {
class TorchTrainer : public Trainer {
  public:
    explicit TorchTrainer(const Problem& p) : p_(p), head_(p.hidden, p.vocab) {
        torch::manual_seed(1);
        if (p.cell == "lstm") {
            lstm_ = torch::nn::LSTM(torch::nn::LSTMOptions(p.vocab, p.hidden));
        } else if (p.cell == "gru") {
            gru_ = torch::nn::GRU(torch::nn::GRUOptions(p.vocab, p.hidden));
        } else {
            rnn_ = torch::nn::RNN(torch::nn::RNNOptions(p.vocab, p.hidden));
        }
        std::vector<torch::Tensor> params = head_->parameters();
        for (auto& t : layer_parameters()) params.push_back(t);
        optimizer_ = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.01));
        ids_ = torch::randint(static_cast<std::int64_t>(p.vocab), {static_cast<std::int64_t>(p.steps), static_cast<std::int64_t>(p.batch)});
        targets_ = torch::randint(static_cast<std::int64_t>(p.vocab), {static_cast<std::int64_t>(p.steps * p.batch)});
    }

    void step() override {
        auto x = torch::nn::functional::one_hot(ids_, static_cast<std::int64_t>(p_.vocab)).to(torch::kFloat);
        torch::Tensor out;
        if (p_.cell == "lstm") {
            out = std::get<0>(lstm_->forward(x));
        } else if (p_.cell == "gru") {
            out = std::get<0>(gru_->forward(x));
        } else {
            out = std::get<0>(rnn_->forward(x));
        }
        auto logits = head_->forward(out).view({-1, static_cast<std::int64_t>(p_.vocab)});
        auto loss = torch::nn::functional::cross_entropy(logits, targets_);
        optimizer_->zero_grad();
        loss.backward();
        optimizer_->step();
    }

  private:
    std::vector<torch::Tensor> layer_parameters() {
        if (p_.cell == "lstm") return lstm_->parameters();
        if (p_.cell == "gru") return gru_->parameters();
        return rnn_->parameters();
    }
    Problem p_;
    torch::nn::RNN rnn_{nullptr};
    torch::nn::LSTM lstm_{nullptr};
    torch::nn::GRU gru_{nullptr};
    torch::nn::Linear head_;
    std::unique_ptr<torch::optim::SGD> optimizer_;
    torch::Tensor ids_, targets_;
};
}  // namespace

std::unique_ptr<Trainer> make_torch(const Problem& p) { return std::make_unique<TorchTrainer>(p); }
bool have_torch() { return true; }
void set_torch_threads(int threads) { torch::set_num_threads(threads); }
std::string torch_version() { return TORCH_VERSION; }

}  // namespace bench
