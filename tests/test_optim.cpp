// optim/: every optimizer against torch.optim 1.13 over three steps (values produced by
// `torch.optim.X(...)` from the same start and gradients, in float64), state that saves and
// resumes exactly, and the learning-rate schedules.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <limits>
#include <numbers>
#include <optional>
#include <random>
#include <string>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <xgrad/xgrad.hpp>

using xgrad::Parameter;
using xgrad::Tensor;
namespace optim = xgrad::optim;

namespace {
using Make = std::function<std::unique_ptr<optim::Optimizer<double>>(std::vector<Parameter<double>>)>;

const std::vector<Tensor<double>> gradients = {{0.5, -1.0}, {-1.0, 0.25}, {0.75, 2.0}};

void expect_trajectory(const Make& make, const std::vector<std::array<double, 2>>& expected) {
    Parameter<double> p(Tensor<double>{1.0, -2.0});
    auto opt = make({p});
    for (std::size_t s = 0; s < gradients.size(); ++s) {
        p.grad() = gradients[s];
        opt->step();
        CAPTURE(s);
        CHECK(p.value()(0) == doctest::Approx(expected[s][0]).epsilon(1e-12));
        CHECK(p.value()(1) == doctest::Approx(expected[s][1]).epsilon(1e-12));
    }
}
}  // namespace

TEST_CASE("SGD, with momentum, dampening, weight decay and nesterov, matches torch.optim.SGD") {
    expect_trajectory([](auto ps) { return std::make_unique<optim::SGD<double>>(ps, optim::SGDOptions(0.1)); },
                      {{{0.95, -1.9}, {1.05, -1.925}, {0.975, -2.125}}});
    expect_trajectory([](auto ps) {
        return std::make_unique<optim::SGD<double>>(ps, optim::SGDOptions(0.1).momentum(0.9).dampening(0.1).weight_decay(0.01));
    }, {{{0.949, -1.898}, {0.9922458999999999, -1.8269917999999998}, {0.9627741886899999, -1.94144012738}}});
    expect_trajectory([](auto ps) {
        return std::make_unique<optim::SGD<double>>(ps, optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
    }, {{{0.905, -1.81}, {1.0545, -1.7765}, {0.95655, -2.10385}}});
}

TEST_CASE("Adam (plain, and with weight decay and amsgrad) and AdamW match torch.optim") {
    expect_trajectory([](auto ps) { return std::make_unique<optim::Adam<double>>(ps, optim::AdamOptions(0.1)); },
                      {{{0.900000002, -1.900000001}, {0.9366103542405654, -1.8530531845234584},
                        {0.9245056251892441, -1.893235643867778}}});
    expect_trajectory([](auto ps) {
        return std::make_unique<optim::Adam<double>>(ps, optim::AdamOptions(0.1).weight_decay(0.1).amsgrad(true));
    }, {{{0.9000000016666666, -1.9000000008333333}, {0.9252635194456061, -1.8367957569894449},
         {0.901627437293819, -1.8631547168238813}}});
    expect_trajectory([](auto ps) { return std::make_unique<optim::AdamW<double>>(ps, optim::AdamOptions(0.1).weight_decay(0.01)); },
                      {{{0.899000002, -1.898000001}, {0.9347113542385653, -1.8491551845224583},
                        {0.9216719138330054, -1.8874884886822554}}});
    Parameter<double> p(Tensor<double>{1.0});
    CHECK(optim::AdamW<double>({p}).options().weight_decay() == 1e-2);  // torch's AdamW default
}

TEST_CASE("Adagrad and RMSprop match torch.optim") {
    expect_trajectory([](auto ps) {
        return std::make_unique<optim::Adagrad<double>>(
            ps, optim::AdagradOptions(0.1).lr_decay(0.01).weight_decay(0.1).initial_accumulator_value(0.2));
    }, {{{0.9198216274369869, -1.9062957428741534}, {0.9962275619430074, -1.9108809678785086},
         {0.9388343992580436, -1.9908690213875513}}});
    expect_trajectory([](auto ps) { return std::make_unique<optim::RMSprop<double>>(ps, optim::RMSpropOptions(0.01)); },
                      {{{0.900000019999996, -1.900000009999999}, {0.9895323081911337, -1.9243685165661313},
                        {0.9335921408287796, -2.0134381433072908}}});
    expect_trajectory([](auto ps) {
        return std::make_unique<optim::RMSprop<double>>(
            ps, optim::RMSpropOptions(0.01).alpha(0.9).momentum(0.5).centered(true).weight_decay(0.1));
    }, {{{0.9666666685185185, -1.9666666675925926}, {0.9769105591555269, -1.9515438276341102},
         {0.9615778582396083, -1.971351059033952}}});
}

TEST_CASE("optimizer state saves and resumes exactly: N + N steps equal 2N steps, bit for bit") {
    auto gradient = [](int step) { return Tensor<float>{std::sin(step * 1.0f), std::cos(step * 0.7f), 0.1f * step}; };
    auto run = [&](auto make, int first, int second, bool through_file) {
        Parameter<float> p(Tensor<float>{0.5f, -0.25f, 1.0f});
        auto opt = make(std::vector<Parameter<float>>{p});
        for (int s = 0; s < first; ++s) {
            p.grad() = gradient(s);
            opt->step();
        }
        if (through_file) {
            auto bytes = xgrad::serialize_safetensors(opt->state_dict());
            auto fresh = make(std::vector<Parameter<float>>{p});
            fresh->load_state_dict(xgrad::parse_safetensors<float>(bytes.data(), bytes.size(), "state"));
            opt = std::move(fresh);
        }
        for (int s = first; s < first + second; ++s) {
            p.grad() = gradient(s);
            opt->step();
        }
        return Tensor<float>(p.value());
    };
    using MakeF = std::function<std::unique_ptr<optim::Optimizer<float>>(std::vector<Parameter<float>>)>;
    const std::vector<MakeF> float_makers = {
        [](auto ps) { return std::make_unique<optim::SGD<float>>(ps, optim::SGDOptions(0.1).momentum(0.9)); },
        [](auto ps) { return std::make_unique<optim::Adam<float>>(ps, optim::AdamOptions(0.01).amsgrad(true)); },
        [](auto ps) { return std::make_unique<optim::AdamW<float>>(ps); },
        [](auto ps) { return std::make_unique<optim::Adagrad<float>>(ps); },
        [](auto ps) { return std::make_unique<optim::RMSprop<float>>(ps, optim::RMSpropOptions().centered(true).momentum(0.3)); },
    };
    for (const auto& make : float_makers) {
        const Tensor<float> straight = run(make, 10, 10, false);
        const Tensor<float> resumed = run(make, 10, 10, true);
        CHECK(straight == resumed);
        CHECK(run(make, 10, 0, false) != straight);  // the second half did move the parameters
    }
}

TEST_CASE("optimizer state loading refuses what does not fit") {
    Parameter<float> p(Tensor<float>{1.0f, 2.0f});
    optim::Adam<float> adam({p});
    optim::SGD<float> sgd({p}, optim::SGDOptions(0.1));
    CHECK_THROWS_WITH_AS(adam.load_state_dict(sgd.state_dict()), "Adam.load_state_dict: the state belongs to optimizer SGD",
                         std::invalid_argument);
    p.grad() = Tensor<float>{0.25f, 0.5f};
    adam.step();  // the buffers exist from the first step
    auto state = adam.state_dict();
    state.tensors["exp_avg.0"] = Tensor<float>{1.0f};
    CHECK_THROWS_WITH_AS(adam.load_state_dict(state), "Adam.load_state_dict: 'exp_avg.0' has shape (1,), parameter 0 has shape (2,)",
                         xgrad::ShapeError);
    state = adam.state_dict();
    state.tensors.erase("exp_avg_sq.0");
    CHECK_THROWS_AS(adam.load_state_dict(state), std::invalid_argument);
    state = adam.state_dict();
    state.metadata["step"] = "seven";
    CHECK_THROWS_WITH_AS(adam.load_state_dict(state), "Adam.load_state_dict: 'step' = 'seven' is malformed or outside [0, 9007199254740992]",
                         std::invalid_argument);
    // Nothing is loaded unless all of it fits: a bad lr or a non-finite buffer leaves the state as it was.
    p.grad() = Tensor<float>{0.5f, -0.5f};
    adam.step();
    const auto before = adam.state_dict();
    for (const char* lr : {"nan", "-1", "inf"}) {
        state = before;
        state.tensors["exp_avg.0"] = Tensor<float>{9.0f, 9.0f};
        state.metadata["lr.0"] = lr;
        CHECK_THROWS_AS(adam.load_state_dict(state), std::invalid_argument);
        CHECK(adam.state_dict().tensors == before.tensors);
    }
    state = before;
    state.tensors["exp_avg_sq.0"] = Tensor<float>{1.0f, std::nanf("")};
    CHECK_THROWS_WITH_AS(adam.load_state_dict(state), "Adam.load_state_dict: 'exp_avg_sq.0' holds nan at flat index 1",
                         std::invalid_argument);
    CHECK(adam.steps_taken() == 2);
    CHECK_THROWS_AS(optim::Adam<float>({p}, optim::AdamOptions(0.1).beta1(1.0)), std::invalid_argument);
    CHECK_THROWS_AS(optim::SGD<float>({p}, optim::SGDOptions(-1.0)), std::invalid_argument);
    CHECK_THROWS_AS(optim::SGD<float>({p}, optim::SGDOptions(0.1).nesterov(true)), std::invalid_argument);
}

namespace {
// Every optimizer kind, over float parameters.
using MakeFloat = std::function<std::unique_ptr<optim::Optimizer<float>>(std::vector<Parameter<float>>)>;
const std::vector<std::pair<std::string, MakeFloat>> every_optimizer = {
    {"SGD", [](auto ps) { return std::make_unique<optim::SGD<float>>(ps, optim::SGDOptions(0.1)); }},
    {"SGD+momentum", [](auto ps) { return std::make_unique<optim::SGD<float>>(ps, optim::SGDOptions(0.1).momentum(0.9)); }},
    {"Adam", [](auto ps) { return std::make_unique<optim::Adam<float>>(ps); }},
    {"AdamW", [](auto ps) { return std::make_unique<optim::AdamW<float>>(ps); }},
    {"Adagrad", [](auto ps) { return std::make_unique<optim::Adagrad<float>>(ps); }},
    {"RMSprop", [](auto ps) { return std::make_unique<optim::RMSprop<float>>(ps); }},
};

// Same shape and values; by raw data, since xtensor 0.24's iterators do arithmetic on null for empty arrays.
bool same(const Tensor<float>& a, const Tensor<float>& b) {
    return xgrad::shape_of(a) == xgrad::shape_of(b) && (a.size() == 0 || std::equal(a.data(), a.data() + a.size(), b.data()));
}

Tensor<float> filled(const xgrad::Shape& shape, float value) {
    Tensor<float> t = Tensor<float>::from_shape(shape);
    t.fill(value);
    return t;
}
}  // namespace

TEST_CASE("a step refuses a gradient or value whose shape changed, naming the parameter, and changes nothing") {
    for (const auto& [kind, make] : every_optimizer) {
        CAPTURE(kind);
        Parameter<float> a(filled({3}, 1.0f)), b(filled({4, 4}, 2.0f));
        auto opt = make({a, b});
        b.grad() = filled({2}, 1.0f);  // smaller gradient: the update would read past its end
        CHECK_THROWS_WITH_AS(opt->step(), doctest::Contains("parameter 1 has value (4, 4), gradient (2,)"), xgrad::ShapeError);
        b.grad() = filled({5, 5}, 1.0f);  // larger: used to be read silently
        CHECK_THROWS_WITH_AS(opt->step(), doctest::Contains("parameter 1 has value (4, 4), gradient (5, 5)"), xgrad::ShapeError);
        b.value() = filled({8, 8}, 2.0f);  // grown after the optimizer was built: its state is (4, 4)
        b.zero_grad();
        CHECK_THROWS_WITH_AS(opt->step(), doctest::Contains("optimizer state (4, 4)"), xgrad::ShapeError);
        CHECK(xt::all(xt::equal(a.value(), 1.0f)));  // a refused step leaves every parameter as it was
        CHECK(opt->steps_taken() == 0);
    }
}

TEST_CASE("property: random shapes and random shape changes between steps always give a ShapeError naming the parameter") {
    std::mt19937 rng(7);
    auto random_shape = [&] {
        xgrad::Shape shape(rng() % 4);
        for (auto& d : shape) d = rng() % 4;  // zeros included
        return shape;
    };
    int refused = 0, stepped = 0;
    for (int trial = 0; trial < 300; ++trial) {
        const auto& [kind, make] = every_optimizer[rng() % every_optimizer.size()];
        CAPTURE(kind);
        std::vector<Parameter<float>> params;
        for (std::size_t i = 0, n = 1 + rng() % 4; i < n; ++i) params.emplace_back(filled(random_shape(), 0.5f));
        auto opt = make(params);
        std::vector<xgrad::Shape> built;  // the optimizer's state keeps these shapes
        for (const auto& p : params) built.push_back(p.shape());
        for (int step = 0; step < 4; ++step) {
            // Maybe change one parameter's value or gradient to another random shape.
            const std::size_t victim = rng() % params.size();
            if (rng() % 3 == 0) params[victim].value() = filled(random_shape(), 0.5f);
            if (rng() % 3 == 0) params[victim].grad() = filled(random_shape(), 1.0f);
            std::optional<std::size_t> first_broken;
            std::vector<Tensor<float>> before;
            for (std::size_t i = 0; i < params.size(); ++i) {
                const bool fits = params[i].shape() == built[i] && xgrad::shape_of(params[i].grad()) == built[i];
                if (!fits && !first_broken) first_broken = i;
                before.push_back(params[i].value());
            }
            const bool consistent = !first_broken;
            try {
                opt->step();
                ++stepped;
                CHECK(consistent);
            } catch (const xgrad::ShapeError& e) {
                ++refused;
                CHECK(!consistent);
                CHECK(std::string(e.what()).find(fmt::format("parameter {} has", first_broken.value_or(99))) != std::string::npos);
                for (std::size_t i = 0; i < params.size(); ++i) CHECK(same(params[i].value(), before[i]));
            }
            if (rng() % 2 == 0) {  // put the parameter back in order, or leave it broken for the next step
                params[victim].value() = filled(built[victim], 0.5f);
                params[victim].zero_grad();
            }
        }
    }
    MESSAGE(fmt::format("300 optimizers, 1200 steps: {} refused, {} taken", refused, stepped));
    CHECK(refused > 100);  // both outcomes happened often: the property was exercised
    CHECK(stepped > 100);
}

TEST_CASE("optimizer options: NaN, infinite and out-of-range values, and a parameter given twice, are refused") {
    Parameter<float> p(Tensor<float>{1.0f, 2.0f});
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    for (double bad : {nan, -1.0}) {
        CAPTURE(bad);
        CHECK_THROWS_WITH_AS(optim::SGD<float>({p}, optim::SGDOptions(0.1).momentum(0.9).dampening(bad)),
                             doctest::Contains("dampening"), std::invalid_argument);
        CHECK_THROWS_WITH_AS(optim::SGD<float>({p}, optim::SGDOptions(0.1).momentum(bad)), doctest::Contains("momentum"),
                             std::invalid_argument);
        CHECK_THROWS_WITH_AS(optim::Adam<float>({p}, optim::AdamOptions().eps(bad)), doctest::Contains("eps"), std::invalid_argument);
        CHECK_THROWS_WITH_AS(optim::RMSprop<float>({p}, optim::RMSpropOptions().alpha(bad)), doctest::Contains("alpha"),
                             std::invalid_argument);
        CHECK_THROWS_WITH_AS(optim::Adagrad<float>({p}, optim::AdagradOptions().lr_decay(bad)), doctest::Contains("lr_decay"),
                             std::invalid_argument);
    }
    CHECK_THROWS_AS(optim::SGD<float>({p}, optim::SGDOptions(0.1).momentum(inf)), std::invalid_argument);
    CHECK_THROWS_AS(optim::Adam<float>({p}, optim::AdamOptions().weight_decay(inf)), std::invalid_argument);
    for (double beta : {nan, -0.1, 1.0, 1.5}) {
        CAPTURE(beta);
        CHECK_THROWS_AS(optim::Adam<float>({p}, optim::AdamOptions().beta1(beta)), std::invalid_argument);
        CHECK_THROWS_AS(optim::AdamW<float>({p}, optim::AdamOptions().beta2(beta)), std::invalid_argument);
    }
    Parameter<float> alias = p;  // another handle to the same storage
    CHECK_THROWS_WITH_AS(optim::Adam<float>({p, Parameter<float>(Tensor<float>{0.0f}), alias}),
                         "Adam: parameters 0 and 2 are the same parameter", std::invalid_argument);
}

TEST_CASE("the step count is bounded: a crafted state at the limit is refused, and stepping past it throws") {
    Parameter<float> p(Tensor<float>{1.0f, 2.0f});
    optim::Adam<float> adam({p});
    p.grad() = Tensor<float>{0.5f, 0.5f};
    adam.step();  // the buffers exist from the first step
    auto state = adam.state_dict();
    const Tensor<float> value = p.value();
    state.metadata["step"] = std::to_string(std::numeric_limits<std::int64_t>::max());
    CHECK_THROWS_WITH_AS(adam.load_state_dict(state), doctest::Contains("is malformed or outside [0, 9007199254740992]"),
                         std::invalid_argument);
    state.metadata["step"] = std::to_string(optim::Optimizer<float>::max_steps);
    adam.load_state_dict(state);  // the largest count accepted
    CHECK_THROWS_AS(adam.step(), std::overflow_error);
    CHECK(p.value() == value);
}

TEST_CASE("learning-rate schedules") {
    Parameter<double> p(Tensor<double>{1.0});
    optim::SGD<double> opt({p}, optim::SGDOptions(1.0));
    optim::StepLR<double> step(opt, 3, 0.5);
    std::vector<double> seen;
    for (int i = 0; i < 7; ++i) {
        seen.push_back(opt.lr());
        step.step();
    }
    CHECK(seen == std::vector<double>{1, 1, 1, 0.5, 0.5, 0.5, 0.25});

    optim::SGD<double> opt2({p}, optim::SGDOptions(2.0));
    optim::ExponentialLR<double> expo(opt2, 0.9);
    expo.step();
    expo.step();
    CHECK(opt2.lr() == doctest::Approx(2.0 * 0.81));

    optim::SGD<double> opt3({p}, optim::SGDOptions(1.0));
    optim::CosineWarmupLR<double> cosine(opt3, 4, 14, 0.1);
    CHECK(opt3.lr() == doctest::Approx(0.25));  // warmup: (0 + 1) / 4
    cosine.set_last_epoch(3);
    CHECK(opt3.lr() == doctest::Approx(1.0));
    cosine.set_last_epoch(4);
    CHECK(opt3.lr() == doctest::Approx(1.0));  // cosine starts at the base
    cosine.set_last_epoch(9);
    CHECK(opt3.lr() == doctest::Approx(0.1 + 0.9 * 0.5));  // half way
    cosine.set_last_epoch(14);
    CHECK(opt3.lr() == doctest::Approx(0.1));
    cosine.set_last_epoch(100);
    CHECK(opt3.lr() == doctest::Approx(0.1));
    CHECK_THROWS_AS(optim::CosineWarmupLR<double>(opt3, 5, 5), std::invalid_argument);
    CHECK_THROWS_AS(optim::StepLR<double>(opt3, 0), std::invalid_argument);
}

TEST_CASE("a schedule's step count is bounded as the optimizer's: set_last_epoch and step refuse to go past it") {
    Parameter<double> p(Tensor<double>{1.0});
    optim::SGD<double> opt({p}, optim::SGDOptions(1.0));
    optim::StepLR<double> schedule(opt, 1);
    const std::int64_t limit = optim::Optimizer<double>::max_steps;
    CHECK_THROWS_WITH_AS(schedule.set_last_epoch(std::numeric_limits<std::int64_t>::max()),
                         fmt::format("LRScheduler: epoch {} is above the limit of {} steps", std::numeric_limits<std::int64_t>::max(), limit).c_str(),
                         std::invalid_argument);
    CHECK(schedule.last_epoch() == 0);  // unchanged
    schedule.set_last_epoch(limit);     // the largest count accepted
    CHECK(schedule.last_epoch() == limit);
    CHECK_THROWS_WITH_AS(schedule.step(), fmt::format("LRScheduler.step: step count {} is at its limit", limit).c_str(),
                         std::overflow_error);
    CHECK(schedule.last_epoch() == limit);
}

TEST_CASE("an optimizer refuses an empty parameter list, as torch does, and takes an empty group beside others") {
    CHECK_THROWS_WITH_AS(optim::Adam<double>(std::vector<Parameter<double>>{}),
                         "Adam: no parameters in any of its 1 group (torch: optimizer got an empty parameter list)", std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::SGD<double>({optim::ParamGroup<double>({}), optim::ParamGroup<double>({})}, optim::SGDOptions(0.1)),
                         "SGD: no parameters in any of its 2 groups (torch: optimizer got an empty parameter list)", std::invalid_argument);
    // A model without biases, split into weights and biases: the empty group is kept and updates nothing.
    Parameter<double> p(Tensor<double>{1.0});
    p.grad() = Tensor<double>{2.0};
    optim::SGD<double> sgd({optim::ParamGroup<double>({p}), optim::ParamGroup<double>({}).lr(0.5)}, optim::SGDOptions(0.1));
    sgd.step();
    CHECK(p.value()(0) == doctest::Approx(0.8));
    CHECK(sgd.lr(1) == 0.5);
}

namespace {
// Each kind of optimizer built from parameter groups, or from one list with given rates.
struct GroupedMaker {
    std::string name;
    std::function<std::unique_ptr<optim::Optimizer<double>>(std::vector<optim::ParamGroup<double>>)> grouped;
    std::function<std::unique_ptr<optim::Optimizer<double>>(std::vector<Parameter<double>>, double lr, double wd)> plain;
};
const std::vector<GroupedMaker> grouped_makers = {
    {"SGD", [](auto gs) { return std::make_unique<optim::SGD<double>>(gs, optim::SGDOptions(0.1).momentum(0.9)); },
     [](auto ps, double lr, double wd) {
         return std::make_unique<optim::SGD<double>>(ps, optim::SGDOptions(lr).momentum(0.9).weight_decay(wd));
     }},
    {"Adam", [](auto gs) { return std::make_unique<optim::Adam<double>>(gs, optim::AdamOptions(0.1)); },
     [](auto ps, double lr, double wd) { return std::make_unique<optim::Adam<double>>(ps, optim::AdamOptions(lr).weight_decay(wd)); }},
    {"AdamW", [](auto gs) { return std::make_unique<optim::AdamW<double>>(gs, optim::AdamOptions(0.1).weight_decay(0.01)); },
     [](auto ps, double lr, double wd) { return std::make_unique<optim::AdamW<double>>(ps, optim::AdamOptions(lr).weight_decay(wd)); }},
    {"Adagrad", [](auto gs) { return std::make_unique<optim::Adagrad<double>>(gs, optim::AdagradOptions(0.1).lr_decay(0.01)); },
     [](auto ps, double lr, double wd) {
         return std::make_unique<optim::Adagrad<double>>(ps, optim::AdagradOptions(lr).lr_decay(0.01).weight_decay(wd));
     }},
    {"RMSprop", [](auto gs) { return std::make_unique<optim::RMSprop<double>>(gs, optim::RMSpropOptions(0.1).momentum(0.5)); },
     [](auto ps, double lr, double wd) {
         return std::make_unique<optim::RMSprop<double>>(ps, optim::RMSpropOptions(lr).momentum(0.5).weight_decay(wd));
     }},
};

// Three parameters: a and b in the first group (lr 0.03, weight decay 0.2), c in the second (the options' rates).
struct ThreeParameters {
    Parameter<double> a{Tensor<double>{1.0, -2.0}}, b{Tensor<double>{0.5}}, c{Tensor<double>{-1.5, 3.0}};
    std::vector<optim::ParamGroup<double>> groups() const {
        return {optim::ParamGroup<double>({a, b}).lr(0.03).weight_decay(0.2), std::vector<Parameter<double>>{c}};
    }
    void set_gradients(int s) {
        a.grad() = Tensor<double>{0.5 + s, -1.0};
        b.grad() = Tensor<double>{0.25 * s - 1.0};
        c.grad() = Tensor<double>{2.0 - s, 0.75};
    }
};
}  // namespace

TEST_CASE("parameter groups: each group updates exactly as an optimizer of its own with the group's lr and weight decay") {
    for (const auto& maker : grouped_makers) {
        CAPTURE(maker.name);
        ThreeParameters together, apart;
        auto grouped = maker.grouped(together.groups());
        REQUIRE(grouped->num_param_groups() == 2);
        // The second group sets nothing: the options' rates (lr 0.1; weight decay 0, AdamW's 0.01).
        const double default_wd = maker.name == "AdamW" ? 0.01 : 0.0;
        CHECK(grouped->lr(1) == 0.1);
        CHECK(grouped->weight_decay(1) == default_wd);
        auto first = maker.plain({apart.a, apart.b}, 0.03, 0.2);
        auto second = maker.plain({apart.c}, 0.1, default_wd);
        for (int s = 0; s < 4; ++s) {
            together.set_gradients(s);
            apart.set_gradients(s);
            grouped->step();
            first->step();
            second->step();
        }
        CHECK(together.a.value() == apart.a.value());
        CHECK(together.b.value() == apart.b.value());
        CHECK(together.c.value() == apart.c.value());
        CHECK(together.a.value() != Tensor<double>{1.0, -2.0});
    }
}

TEST_CASE("parameter groups: lr and weight decay per group are read, set, saved and restored with the optimizer state") {
    for (const auto& maker : grouped_makers) {
        CAPTURE(maker.name);
        ThreeParameters straight, resumed;
        auto opt = maker.grouped(straight.groups());
        CHECK(opt->lr(0) == 0.03);
        CHECK(opt->weight_decay(0) == 0.2);
        CHECK(opt->group_parameters(0).size() == 2);
        CHECK(opt->group_parameters(1)[0].id() == straight.c.id());
        auto first_half = maker.grouped(resumed.groups());
        for (int s = 0; s < 6; ++s) {
            if (s == 2) {  // a change of rates mid-run, which the state must carry
                opt->set_lr(1, 0.0123);
                opt->set_weight_decay(1, 0.05);
                first_half->set_lr(1, 0.0123);
                first_half->set_weight_decay(1, 0.05);
            }
            straight.set_gradients(s);
            opt->step();
            if (s < 3) {
                resumed.set_gradients(s);
                first_half->step();
            }
        }
        const auto state = first_half->state_dict();
        CHECK(state.metadata.at("param_groups") == "2");
        CHECK(state.metadata.at("params.0") == "2");
        auto second_half = maker.grouped(resumed.groups());  // built with the original rates
        second_half->load_state_dict(state);
        CHECK(second_half->lr(1) == 0.0123);
        CHECK(second_half->weight_decay(1) == 0.05);
        for (int s = 3; s < 6; ++s) {
            resumed.set_gradients(s);
            second_half->step();
        }
        CHECK(straight.a.value() == resumed.a.value());
        CHECK(straight.c.value() == resumed.c.value());
    }
}

TEST_CASE("parameter groups: a different grouping, a shared parameter, bad rates and an unnamed group are refused") {
    ThreeParameters ps;
    optim::Adam<double> grouped(ps.groups());
    optim::Adam<double> flat({ps.a, ps.b, ps.c});
    CHECK_THROWS_WITH_AS(flat.load_state_dict(grouped.state_dict()),
                         "Adam.load_state_dict: the state has 2 parameter groups, the optimizer 1", std::invalid_argument);
    optim::Adam<double> regrouped({std::vector<Parameter<double>>{ps.a}, std::vector<Parameter<double>>{ps.b, ps.c}});
    CHECK_THROWS_WITH_AS(regrouped.load_state_dict(grouped.state_dict()),
                         "Adam.load_state_dict: group 0 has 2 parameters in the state, 1 here", std::invalid_argument);
    auto state = grouped.state_dict();
    state.metadata["lr.0"] = "0x1p-1";  // valid, and different: it must not be loaded either
    state.metadata["weight_decay.1"] = "-0x1p+0";
    CHECK_THROWS_WITH_AS(grouped.load_state_dict(state),
                         "Adam.load_state_dict: 'weight_decay.1' = '-0x1p+0' of group 1 is malformed, negative or not finite",
                         std::invalid_argument);
    CHECK(grouped.lr(0) == 0.03);  // nothing loaded
    CHECK(grouped.weight_decay(1) == 0.0);
    state = grouped.state_dict();
    state.metadata["lr.1"] = "0x1p-1";
    state.tensors["exp_avg.2"] = Tensor<double>{1.0, std::nan("")};
    CHECK_THROWS_AS(grouped.load_state_dict(state), std::invalid_argument);
    CHECK(grouped.lr(1) == 1e-3);
    CHECK_THROWS_WITH_AS(optim::Adam<double>(std::vector<optim::ParamGroup<double>>{}), "Adam: no parameter groups (torch: an empty parameter list)",
                         std::invalid_argument);

    // A file written before parameter groups: one group, its lr in "lr"; weight decay stays as configured.
    auto legacy = flat.state_dict();
    for (const char* key : {"param_groups", "params.0", "lr.0", "weight_decay.0"}) legacy.metadata.erase(key);
    legacy.metadata["lr"] = "0x1p-4";
    flat.load_state_dict(legacy);
    CHECK(flat.lr() == 0.0625);
    CHECK_THROWS_WITH_AS(grouped.load_state_dict(legacy), "Adam.load_state_dict: the state has one parameter group, the optimizer 2",
                         std::invalid_argument);

    CHECK_THROWS_WITH_AS(optim::SGD<double>({std::vector<Parameter<double>>{ps.a, ps.b}, std::vector<Parameter<double>>{ps.c, ps.a}},
                                            optim::SGDOptions(0.1)),
                         "SGD: parameters 0 and 3 are the same parameter (in groups 0 and 1)", std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::SGD<double>({optim::ParamGroup<double>({ps.a}).lr(-1.0)}, optim::SGDOptions(0.1)),
                         "SGD: learning rate -1 of group 0 is invalid", std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::Adam<double>({std::vector<Parameter<double>>{ps.a},
                                              optim::ParamGroup<double>({ps.b}).weight_decay(std::nan(""))}),
                         "Adam: weight_decay nan of group 1 is invalid", std::invalid_argument);
    CHECK_THROWS_WITH_AS(grouped.lr(), "Adam.lr: the optimizer has 2 parameter groups; name one (lr(group, ...))", std::logic_error);
    CHECK_THROWS_AS(grouped.set_lr(0.1), std::logic_error);
    CHECK_THROWS_WITH_AS(grouped.set_lr(2, 0.1), "Adam.set_lr: group 2 of 2", std::out_of_range);
    CHECK_THROWS_AS(grouped.set_weight_decay(0, std::numeric_limits<double>::infinity()), std::invalid_argument);
}

TEST_CASE("schedules scale each parameter group from its own base lr") {
    ThreeParameters ps;
    optim::SGD<double> opt(ps.groups(), optim::SGDOptions(1.0));
    optim::StepLR<double> step(opt, 2, 0.5);
    CHECK(step.base_lrs() == std::vector<double>{0.03, 1.0});
    for (int i = 0; i < 4; ++i) step.step();
    CHECK(opt.lr(0) == doctest::Approx(0.03 * 0.25));
    CHECK(opt.lr(1) == doctest::Approx(0.25));
    optim::SGD<double> cosine_opt(ps.groups(), optim::SGDOptions(1.0));
    optim::CosineWarmupLR<double> cosine(cosine_opt, 0, 10, 0.01);
    cosine.set_last_epoch(5);
    CHECK(cosine_opt.lr(0) == doctest::Approx(0.01 + 0.02 * 0.5));
    CHECK(cosine_opt.lr(1) == doctest::Approx(0.01 + 0.99 * 0.5));
    optim::SGD<double> fresh(ps.groups(), optim::SGDOptions(1.0));
    CHECK_THROWS_WITH_AS(optim::CosineWarmupLR<double>(fresh, 0, 10, 0.5),
                         doctest::Contains("must be in [0, base lr 0.03] (group 0)"), std::invalid_argument);
}

TEST_CASE("a parameter group takes from the options exactly the rates it leaves unset") {
    ThreeParameters ps;
    optim::SGD<double> opt({optim::ParamGroup<double>({ps.a}).lr(0.5), optim::ParamGroup<double>({ps.b}).weight_decay(0.7),
                            std::vector<Parameter<double>>{ps.c}},
                           optim::SGDOptions(0.1).weight_decay(0.3));
    CHECK(opt.lr(0) == 0.5);
    CHECK(opt.weight_decay(0) == 0.3);
    CHECK(opt.lr(1) == 0.1);
    CHECK(opt.weight_decay(1) == 0.7);
    CHECK(opt.lr(2) == 0.1);
    CHECK(opt.weight_decay(2) == 0.3);
}

namespace {
// tests/fixtures/pytorch_schedules.safetensors (make_pytorch_schedules.py): torch.optim 1.13's numbers.
const xgrad::TensorFile<double>& schedules() {
    static const auto file = xgrad::load_safetensors<double>(std::string(XGRAD_FIXTURES_DIR) + "/pytorch_schedules.safetensors");
    return file;
}
const Tensor<double>& expected(const std::string& key) { return schedules().tensors.at(key); }

// The parameters the fixtures' OneCycleLR cases update: [0.5, -0.25, 1] each, gradient sin(1 + step + element + group).
std::vector<Parameter<double>> fixture_parameters(std::size_t groups) {
    std::vector<Parameter<double>> ps;
    for (std::size_t g = 0; g < groups; ++g) ps.emplace_back(Tensor<double>{0.5, -0.25, 1.0});
    return ps;
}
void fixture_gradients(std::vector<Parameter<double>>& ps, int step) {
    for (std::size_t g = 0; g < ps.size(); ++g)
        for (std::size_t e = 0; e < 3; ++e) ps[g].grad()(e) = std::sin(1.0 + step + static_cast<double>(e + g));
}

// Steps the optimizer and OneCycleLR `steps` times, checking every group's lr, the momentum and the
// parameters against torch's after construction and after each step.
// At step `steps` (total_steps) the cycle is at its end, where torch extrapolates past it: there the
// lrs are `last_lrs` and the momentum `last_momentum`.
void expect_one_cycle(const std::string& name, optim::Optimizer<double>& opt, optim::OneCycleLR<double>& schedule,
                      std::vector<Parameter<double>>& ps, int steps, const std::vector<double>& last_lrs, double last_momentum) {
    for (int s = 0; s <= steps; ++s) {
        CAPTURE(s);
        if (s > 0) {
            fixture_gradients(ps, s - 1);
            opt.step();
            schedule.step();
        }
        const bool end = s == steps;
        for (std::size_t g = 0; g < ps.size(); ++g) {
            CAPTURE(g);
            CHECK(opt.lr(g) == doctest::Approx(end ? last_lrs[g] : expected(fmt::format("{}.lr.{}", name, g))(s)).epsilon(1e-13));
            for (std::size_t e = 0; e < 3; ++e)
                CHECK(ps[g].value()(e) == doctest::Approx(expected(fmt::format("{}.param.{}", name, g))(s, e)).epsilon(1e-12));
        }
        CHECK(opt.momentum(0) == doctest::Approx(end ? last_momentum : expected(name + ".momentum")(s)).epsilon(1e-13));
    }
}
}  // namespace

TEST_CASE("LambdaLR and OneCycleLR follow torch.optim's numbers step by step, momentum and parameters too") {
    Parameter<double> p(Tensor<double>{1.0});
    optim::SGD<double> sgd({p}, optim::SGDOptions(0.1));
    optim::LambdaLR<double> lambda(sgd, [](std::int64_t e) { return std::pow(0.95, static_cast<double>(e)) * static_cast<double>(1 + e % 3); });
    for (int s = 0; s <= 20; ++s) {
        CAPTURE(s);
        if (s > 0) lambda.step();
        CHECK(sgd.lr() == doctest::Approx(expected("lambda.lr.0")(s)).epsilon(1e-13));
    }

    auto one = fixture_parameters(1);
    optim::SGD<double> with_momentum(one, optim::SGDOptions(0.1).momentum(0.9));
    optim::OneCycleLR<double> cycle(with_momentum, optim::OneCycleLROptions(0.1, 25));
    expect_one_cycle("onecycle_sgd", with_momentum, cycle, one, 25, {0.1 / 25 / 1e4}, 0.95);
    // torch allows a step at total_steps and refuses the one after.
    CHECK_THROWS_WITH_AS(cycle.step(), "OneCycleLR: step 26 is past total_steps = 25", std::invalid_argument);
    CHECK(cycle.last_epoch() == 25);

    auto two = fixture_parameters(2);
    optim::Adam<double> adam({optim::ParamGroup<double>({two[0]}), optim::ParamGroup<double>({two[1]})}, optim::AdamOptions(1e-3));
    optim::OneCycleLR<double> three(adam, optim::OneCycleLROptions(0, 30)
                                              .max_lrs({0.01, 0.003})
                                              .pct_start(0.25)
                                              .anneal_strategy(optim::OneCycleLROptions::Anneal::linear)
                                              .three_phase(true)
                                              .div_factor(10)
                                              .final_div_factor(100)
                                              .base_momentum(0.8)
                                              .max_momentum(0.9));
    expect_one_cycle("onecycle_adam", adam, three, two, 30, {0.01 / 10 / 100, 0.003 / 10 / 100}, 0.9);
}

TEST_CASE("OneCycleLR refuses what it cannot follow, naming it") {
    Parameter<double> p(Tensor<double>{1.0});
    optim::Adagrad<double> adagrad({p});
    CHECK_THROWS_WITH_AS(optim::OneCycleLR<double>(adagrad, optim::OneCycleLROptions(0.1, 10)),
                         "OneCycleLR: cycle_momentum needs an optimizer with momentum, and Adagrad has none", std::invalid_argument);
    optim::OneCycleLR<double> without(adagrad, optim::OneCycleLROptions(0.1, 10).cycle_momentum(false));
    CHECK(adagrad.lr() == doctest::Approx(0.1 / 25));
    optim::Adam<double> adam({p});
    CHECK_THROWS_WITH_AS(optim::OneCycleLR<double>(adam, optim::OneCycleLROptions(0.1, 10).max_momentum(1.0)),
                         "OneCycleLR: max_momentum = 1 is not a momentum Adam takes", std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::OneCycleLR<double>(adam, optim::OneCycleLROptions(0.1, 0)), "OneCycleLR: total_steps = 0 must be positive",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::OneCycleLR<double>(adam, optim::OneCycleLROptions(0.1, 10).pct_start(1.5)),
                         "OneCycleLR: pct_start = 1.5 must be in [0, 1]", std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::OneCycleLR<double>(adam, optim::OneCycleLROptions(0.1, 10).max_lrs({0.1, 0.2})),
                         "OneCycleLR: 2 max_lrs for 1 parameter groups", std::invalid_argument);
    CHECK_THROWS_WITH_AS(adam.set_momentum(0, 1.5), "Adam: beta1 1.5 of group 0 is invalid (need 0 <= beta1 < 1)", std::invalid_argument);
    CHECK_THROWS_WITH_AS(adagrad.momentum(0), "Adagrad: has no momentum", std::logic_error);
    // A λ that gives a negative lr throws at the step that meets it and changes nothing.
    optim::SGD<double> sgd({p}, optim::SGDOptions(1.0));
    optim::LambdaLR<double> down(sgd, [](std::int64_t e) { return 1.0 - static_cast<double>(e); });
    down.step();
    CHECK_THROWS_WITH_AS(down.step(), "LRScheduler: the lr at step 2 of group 0 is -1", std::invalid_argument);
    CHECK(down.last_epoch() == 1);
    CHECK(sgd.lr() == 0.0);
}

TEST_CASE("ReduceLROnPlateau follows torch's counters and rates, and saves and resumes them exactly") {
    const auto run = [](const std::string& name, optim::SGD<double>& opt, optim::ReduceLROnPlateauOptions options) {
        const Tensor<double>& metrics = expected(name + ".metric");
        optim::ReduceLROnPlateau<double> plateau(opt, options);
        for (std::size_t s = 0; s < metrics.size(); ++s) {
            CAPTURE(s);
            plateau.step(metrics(s));
            for (std::size_t g = 0; g < opt.num_param_groups(); ++g)
                CHECK(opt.lr(g) == doctest::Approx(expected(fmt::format("{}.lr.{}", name, g))(s)).epsilon(1e-15));
            CHECK(plateau.best() == expected(name + ".best")(s));
            CHECK(static_cast<double>(plateau.num_bad_epochs()) == expected(name + ".num_bad_epochs")(s));
            CHECK(static_cast<double>(plateau.cooldown_counter()) == expected(name + ".cooldown_counter")(s));
            CHECK(plateau.last_epoch() == static_cast<std::int64_t>(s + 1));
        }
    };
    Parameter<double> a(Tensor<double>{1.0}), b(Tensor<double>{2.0});
    optim::SGD<double> two_groups({optim::ParamGroup<double>({a}), optim::ParamGroup<double>({b}).lr(0.05)}, optim::SGDOptions(0.1));
    run("plateau_min", two_groups,
        optim::ReduceLROnPlateauOptions().factor(0.5).patience(2).threshold(0.01).cooldown(1).min_lrs({0.01, 0.02}));
    optim::SGD<double> one_group({a}, optim::SGDOptions(0.2));
    using Options = optim::ReduceLROnPlateauOptions;
    run("plateau_max", one_group,
        Options().mode(Options::Mode::max).factor(0.3).patience(1).threshold(0.1).threshold_mode(Options::ThresholdMode::abs));

    // Saved halfway with the optimizer, resumed into new ones, it goes on as the uninterrupted run does.
    const Tensor<double>& metrics = expected("plateau_min.metric");
    const auto options = Options().factor(0.5).patience(2).threshold(0.01).cooldown(1).min_lrs({0.01, 0.02});
    optim::SGD<double> first({optim::ParamGroup<double>({a}), optim::ParamGroup<double>({b}).lr(0.05)}, optim::SGDOptions(0.1));
    optim::ReduceLROnPlateau<double> before(first, options);
    for (std::size_t s = 0; s < 12; ++s) before.step(metrics(s));
    xgrad::TensorFile<double> saved = first.state_dict();
    saved.metadata.merge(before.state_dict());
    optim::SGD<double> second({optim::ParamGroup<double>({a}), optim::ParamGroup<double>({b}).lr(0.05)}, optim::SGDOptions(0.1));
    second.load_state_dict(saved);
    optim::ReduceLROnPlateau<double> after(second, options);
    after.load_state_dict(saved.metadata);
    for (std::size_t s = 12; s < metrics.size(); ++s) {
        CAPTURE(s);
        after.step(metrics(s));
        CHECK(second.lr(0) == expected("plateau_min.lr.0")(s));
        CHECK(second.lr(1) == expected("plateau_min.lr.1")(s));
        CHECK(after.best() == expected("plateau_min.best")(s));
    }

    // Bad options and bad saved state are named; a failed load changes nothing.
    CHECK_THROWS_WITH_AS(optim::ReduceLROnPlateau<double>(first, Options().factor(1.0)), "ReduceLROnPlateau: factor = 1 must be in (0, 1)",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::ReduceLROnPlateau<double>(first, Options().min_lrs({0.1, -1.0})),
                         "ReduceLROnPlateau: min_lr -1 of group 1 must be finite and >= 0", std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::ReduceLROnPlateau<double>(first, Options().min_lrs({0.1})),
                         "ReduceLROnPlateau: 1 min_lrs for 2 parameter groups", std::invalid_argument);
    auto broken = saved.metadata;
    broken["plateau.num_bad_epochs"] = "2x";
    CHECK_THROWS_WITH_AS(after.load_state_dict(broken), "ReduceLROnPlateau.load_state_dict: 'plateau.num_bad_epochs' = '2x' is malformed",
                         std::invalid_argument);
    broken = saved.metadata;
    broken["plateau.mode"] = "max";
    CHECK_THROWS_WITH_AS(after.load_state_dict(broken), "ReduceLROnPlateau.load_state_dict: the state is of mode 'max'", std::invalid_argument);
    CHECK(after.best() == expected("plateau_min.best")(metrics.size() - 1));
}

TEST_CASE("a group's momentum is saved with the optimizer and drives the update") {
    Parameter<double> p(Tensor<double>{1.0, -2.0});
    optim::Adam<double> adam({p}, optim::AdamOptions(0.1));
    CHECK(adam.momentum(0) == 0.9);
    adam.set_momentum(0, 0.5);
    const auto state = adam.state_dict();
    CHECK(state.metadata.at("momentum.0") == fmt::format("{:a}", 0.5));
    optim::Adam<double> again({p}, optim::AdamOptions(0.1));
    again.load_state_dict(state);
    CHECK(again.momentum(0) == 0.5);
    // Files written before momentum was a group's setting keep the optimizer's own.
    auto older = state;
    older.metadata.erase("momentum.0");
    optim::Adam<double> old({p}, optim::AdamOptions(0.1));
    old.load_state_dict(older);
    CHECK(old.momentum(0) == 0.9);
    // A saved β1 Adam cannot take is refused, and nothing changes.
    auto wrong = state;
    wrong.metadata["momentum.0"] = fmt::format("{:a}", 1.0);
    CHECK_THROWS_WITH_AS(old.load_state_dict(wrong), "Adam: beta1 1 of group 0 is invalid (need 0 <= beta1 < 1)", std::invalid_argument);
    CHECK(old.momentum(0) == 0.9);
    // SGD with μ = 0.5 set at run time moves as SGD built with it.
    Parameter<double> x(Tensor<double>{1.0}), y(Tensor<double>{1.0});
    optim::SGD<double> built({x}, optim::SGDOptions(0.1).momentum(0.5));
    optim::SGD<double> set({y}, optim::SGDOptions(0.1).momentum(0.9));
    set.set_momentum(0, 0.5);
    for (double g : {1.0, -0.5, 2.0}) {
        x.grad() = Tensor<double>{g};
        y.grad() = Tensor<double>{g};
        built.step();
        set.step();
    }
    CHECK(x.value()(0) == y.value()(0));
}

TEST_CASE("optimizers allocate only the buffers their options use, save those, and resume exactly") {
    auto keys = [](const auto& optimizer) {
        std::vector<std::string> out;
        for (const auto& [key, tensor] : optimizer.state_dict().tensors) out.push_back(key);
        std::sort(out.begin(), out.end());
        return out;
    };
    using Keys = std::vector<std::string>;
    Parameter<double> p(Tensor<double>{1.0, -2.0});
    p.grad() = Tensor<double>{0.5, -1.0};
    optim::Adam<double> adam({p}, optim::AdamOptions(0.1));
    CHECK(keys(adam).empty());  // nothing before the first step
    adam.step();
    CHECK(keys(adam) == Keys{"exp_avg.0", "exp_avg_sq.0"});  // no max_exp_avg_sq without amsgrad
    optim::Adam<double> amsgrad({p}, optim::AdamOptions(0.1).amsgrad(true));
    amsgrad.step();
    CHECK(keys(amsgrad) == Keys{"exp_avg.0", "exp_avg_sq.0", "max_exp_avg_sq.0"});
    // A state without it cannot continue an amsgrad run: refused, naming it, with nothing changed.
    const auto before = amsgrad.state_dict();
    CHECK_THROWS_WITH_AS(amsgrad.load_state_dict(adam.state_dict()),
                         "Adam.load_state_dict: the state has no 'max_exp_avg_sq', which this optimizer's options use (saved with other options?)",
                         std::invalid_argument);
    CHECK(amsgrad.state_dict().tensors == before.tensors);
    // A buffer for some parameters only is refused.
    Parameter<double> q(Tensor<double>{3.0});
    q.grad() = Tensor<double>{1.0};
    optim::Adam<double> two({p, q}, optim::AdamOptions(0.1));
    two.step();
    auto partial = two.state_dict();
    partial.tensors.erase("exp_avg.1");
    CHECK_THROWS_WITH_AS(two.load_state_dict(partial), "Adam.load_state_dict: missing 'exp_avg.1'", std::invalid_argument);

    optim::RMSprop<double> rmsprop({p}, optim::RMSpropOptions(0.01));
    rmsprop.step();
    CHECK(keys(rmsprop) == Keys{"square_avg.0"});
    optim::RMSprop<double> centered({p}, optim::RMSpropOptions(0.01).centered(true).momentum(0.9));
    centered.step();
    CHECK(keys(centered) == Keys{"grad_avg.0", "momentum_buffer.0", "square_avg.0"});

    // SGD keeps no momentum buffer until a momentum is set; then it starts from the gradient, as
    // torch.optim.SGD's does (buf = g, not (1 - dampening) g).
    Parameter<double> x(Tensor<double>{1.0});
    optim::SGD<double> sgd({x}, optim::SGDOptions(0.1).dampening(0.5));
    x.grad() = Tensor<double>{1.0};
    sgd.step();
    CHECK(keys(sgd).empty());
    CHECK(x.value()(0) == doctest::Approx(0.9).epsilon(1e-15));
    sgd.set_momentum(0, 0.9);
    x.grad() = Tensor<double>{2.0};
    sgd.step();  // buf = 2, x = 0.9 - 0.1 * 2
    CHECK(keys(sgd) == Keys{"momentum_buffer.0"});
    CHECK(x.value()(0) == doctest::Approx(0.7).epsilon(1e-15));
    x.grad() = Tensor<double>{1.0};
    sgd.step();  // buf = 0.9 * 2 + 0.5 * 1 = 2.3, x = 0.7 - 0.23
    CHECK(x.value()(0) == doctest::Approx(0.47).epsilon(1e-15));

    // A momentum set after the last step is saved before its buffer exists: the state loads, and
    // the buffer starts from the gradient at the next step, as in the optimizer it came from.
    Parameter<double> y(Tensor<double>{1.0}), z(Tensor<double>{1.0});
    optim::SGD<double> original({y}, optim::SGDOptions(0.1).dampening(0.5));
    y.grad() = Tensor<double>{1.0};
    original.step();
    original.set_momentum(0, 0.9);
    optim::SGD<double> copy({z}, optim::SGDOptions(0.1).dampening(0.5));
    z.value() = y.value();
    copy.load_state_dict(original.state_dict());
    for (double g : {2.0, 1.0}) {
        y.grad() = Tensor<double>{g};
        z.grad() = Tensor<double>{g};
        original.step();
        copy.step();
    }
    CHECK(y.value() == z.value());
    CHECK(keys(copy) == Keys{"momentum_buffer.0"});
    // Adagrad's accumulator starts from initial_accumulator_value, also after a state saved at step 0 is loaded.
    Parameter<double> u(Tensor<double>{1.0}), w(Tensor<double>{1.0});
    optim::Adagrad<double> adagrad({u}, optim::AdagradOptions(0.1).initial_accumulator_value(0.5));
    optim::Adagrad<double> loaded({w}, optim::AdagradOptions(0.1).initial_accumulator_value(0.5));
    loaded.load_state_dict(adagrad.state_dict());
    u.grad() = Tensor<double>{1.0};
    w.grad() = Tensor<double>{1.0};
    adagrad.step();
    loaded.step();
    CHECK(u.value()(0) == doctest::Approx(1.0 - 0.1 / (std::sqrt(1.5) + 1e-10)).epsilon(1e-14));  // sum = 0.5 + g²
    CHECK(w.value() == u.value());

    // Saved and loaded, each continues exactly as the optimizer it came from.
    for (bool with_amsgrad : {false, true}) {
        Parameter<double> a(Tensor<double>{1.0, -2.0}), b(Tensor<double>{1.0, -2.0});
        optim::Adam<double> straight({a}, optim::AdamOptions(0.1).amsgrad(with_amsgrad));
        optim::Adam<double> first({b}, optim::AdamOptions(0.1).amsgrad(with_amsgrad));
        for (const Tensor<double>& g : gradients) {
            a.grad() = g;
            straight.step();
        }
        b.grad() = gradients[0];
        first.step();
        optim::Adam<double> resumed({b}, optim::AdamOptions(0.1).amsgrad(with_amsgrad));
        resumed.load_state_dict(first.state_dict());
        for (std::size_t s = 1; s < gradients.size(); ++s) {
            b.grad() = gradients[s];
            resumed.step();
        }
        CHECK(a.value() == b.value());
    }
}
