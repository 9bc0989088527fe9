// xgrad-charlm train under mpirun: the Ranks of training.hpp over an xgrad::dist process group,
// with DistributedDataParallel averaging the gradients.
#pragma once

#include <memory>

#include <xgrad/dist/dist.hpp>

#include "training.hpp"

namespace charlm {

class MpiRanks final : public Ranks {
  public:
    explicit MpiRanks(xgrad::dist::ProcessGroup group) : group_(group) {}
    bool distributed() const override { return true; }
    int rank() const override { return group_.rank(); }
    int size() const override { return group_.size(); }
    double sum(double value) const override { return group_.sum(value); }
    void sum_in_place(std::span<double> values) const override { group_.sum_in_place(values); }
    std::pair<int, std::string> first_failure(const std::string& error) const override { return group_.first_failure(error); }
    std::vector<float> all_gather(std::span<const float> mine) const override { return group_.all_gather(mine); }
    std::vector<std::string> all_gather_text(const std::string& mine) const override { return group_.all_gather(mine); }
    void start(CharLM& model) override {
        ddp_ = std::make_unique<xgrad::dist::DistributedDataParallel<float>>(group_, model.named_parameters());
    }
    void average_gradients() override { ddp_->average_gradients(); }
    double last_allreduce_seconds() const override { return ddp_ ? ddp_->last_allreduce_seconds() : 0; }

  private:
    xgrad::dist::ProcessGroup group_;
    std::unique_ptr<xgrad::dist::DistributedDataParallel<float>> ddp_;
};

}  // namespace charlm
