// The same training step in libtorch's C++ API (Debian's libtorch-dev), built only when CMake
// finds it.
#include <torch/torch.h>

#include "steps.hpp"

namespace bench {

namespace {
// libtorch's RNN, LSTM or GRU, as the problem's cell says.
class TorchRecurrent {
  public:
    explicit TorchRecurrent(const Problem& p) : cell_(p.cell) {
        if (p.cell == "lstm") {
            lstm_ = torch::nn::LSTM(torch::nn::LSTMOptions(p.vocab, p.hidden));
        } else if (p.cell == "gru") {
            gru_ = torch::nn::GRU(torch::nn::GRUOptions(p.vocab, p.hidden));
        } else {
            rnn_ = torch::nn::RNN(torch::nn::RNNOptions(p.vocab, p.hidden));
        }
    }
    torch::Tensor forward(const torch::Tensor& x) {
        if (cell_ == "lstm") return std::get<0>(lstm_->forward(x));
        if (cell_ == "gru") return std::get<0>(gru_->forward(x));
        return std::get<0>(rnn_->forward(x));
    }
    std::vector<torch::Tensor> parameters() {
        if (cell_ == "lstm") return lstm_->parameters();
        if (cell_ == "gru") return gru_->parameters();
        return rnn_->parameters();
    }

  private:
    std::string cell_;
    torch::nn::RNN rnn_{nullptr};
    torch::nn::LSTM lstm_{nullptr};
    torch::nn::GRU gru_{nullptr};
};

std::int64_t as_int(std::size_t v) { return static_cast<std::int64_t>(v); }

// Both trainers seed torch's generator before their layer is built (hence `(manual_seed(1), p)` in
// the member initializers): its initial weights come from that generator.

class TorchTrainer : public Trainer {
  public:
    explicit TorchTrainer(const Problem& p) : p_(p), layer_((torch::manual_seed(1), p)), head_(p.hidden, p.vocab) {
        std::vector<torch::Tensor> params = head_->parameters();
        for (auto& t : layer_.parameters()) params.push_back(t);
        optimizer_ = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.01));
        ids_ = torch::randint(as_int(p.vocab), {as_int(p.steps), as_int(p.batch)});
        targets_ = torch::randint(as_int(p.vocab), {as_int(p.steps * p.batch)});
    }

    void step() override {
        auto x = torch::nn::functional::one_hot(ids_, as_int(p_.vocab)).to(torch::kFloat);
        auto logits = head_->forward(layer_.forward(x)).view({-1, as_int(p_.vocab)});
        auto loss = torch::nn::functional::cross_entropy(logits, targets_);
        optimizer_->zero_grad();
        loss.backward();
        optimizer_->step();
    }

  private:
    Problem p_;
    TorchRecurrent layer_;
    torch::nn::Linear head_;
    std::unique_ptr<torch::optim::SGD> optimizer_;
    torch::Tensor ids_, targets_;
};

class TorchLayer : public Trainer {
  public:
    explicit TorchLayer(const Problem& p) : layer_((torch::manual_seed(1), p)) {
        input_ = torch::rand({as_int(p.steps), as_int(p.batch), as_int(p.vocab)}).requires_grad_(true);
    }
    void step() override {
        torch::Tensor out = layer_.forward(input_);
        for (auto& t : layer_.parameters()) t.mutable_grad() = torch::Tensor();
        input_.mutable_grad() = torch::Tensor();
        out.sum().backward();
    }

  private:
    TorchRecurrent layer_;
    torch::Tensor input_;
};
}  // namespace

std::unique_ptr<Trainer> make_torch(const Problem& p) { return std::make_unique<TorchTrainer>(p); }
std::unique_ptr<Trainer> make_torch_layer(const Problem& p) { return std::make_unique<TorchLayer>(p); }
bool have_torch() { return true; }
void set_torch_threads(int threads) { torch::set_num_threads(threads); }
std::string torch_version() { return TORCH_VERSION; }

}  // namespace bench
