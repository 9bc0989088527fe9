// The thread governor: which count it runs for the step times it measures, and the process's own
// (govern_threads) over real steps, kept when the count is set or the GEMM provider pinned.
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <xgrad/tensor/linalg.hpp>
#include <xgrad/tensor/threads.hpp>

using xgrad::ThreadGovernor;

namespace {
// Runs `steps` steps whose duration is step_time(threads); returns how many ran at each count.
struct Run {
    int at_one = 0, at_most = 0;
};
Run run(ThreadGovernor& governor, int steps, const std::function<double(int)>& step_time) {
    Run out;
    int threads = governor.threads();
    for (int i = 0; i < steps; ++i) {
        (threads == 1 ? out.at_one : out.at_most) += 1;
        threads = governor.next(step_time(threads));
    }
    return out;
}
}  // namespace

TEST_CASE("ThreadGovernor keeps all threads while they are faster, and tries one thread more and more rarely, for a step when it is far slower") {
    ThreadGovernor governor(4);
    const Run r = run(governor, 4000, [](int threads) { return threads == 1 ? 0.030 : 0.010; });
    CHECK(governor.threads() == 4);
    CHECK(governor.changes() == 0);
    // The holds double from 32 steps to 1024: 8 tries, each ended by its first step (3x slower), and
    // the first step at one thread, which is not measured.
    CHECK(r.at_one > 0);
    CHECK(r.at_one <= 10);
}

TEST_CASE("ThreadGovernor moves to one thread when it is faster (another process on the cores), and back when it no longer is") {
    ThreadGovernor governor(2);
    Run r = run(governor, 200, [](int threads) { return threads == 1 ? 0.010 : 0.100; });  // the busy neighbour
    CHECK(governor.threads() == 1);
    CHECK(governor.changes() == 1);
    CHECK(r.at_most <= ThreadGovernor::settle_steps + ThreadGovernor::measured_steps + 20);  // one try every 32+ steps
    r = run(governor, 300, [](int threads) { return threads == 1 ? 0.010 : 0.006; });  // the neighbour left
    CHECK(governor.threads() == 2);
    CHECK(governor.changes() == 2);
}

TEST_CASE("ThreadGovernor tries the other count at once when the held one slows down by half") {
    ThreadGovernor governor(2);
    run(governor, 40, [](int threads) { return threads == 1 ? 0.030 : 0.010; });
    REQUIRE(governor.threads() == 2);
    // The hold is now 64 steps; the slowdown is seen within a window and the other count tried.
    const Run r = run(governor, 12, [](int threads) { return threads == 1 ? 0.012 : 0.050; });
    CHECK(governor.threads() == 1);
    CHECK(r.at_one > 0);
}

TEST_CASE("ThreadGovernor leaves a timing within 5% where it is, and one thread where one is all there is") {
    ThreadGovernor close(2);
    run(close, 500, [](int threads) { return threads == 1 ? 0.0100 : 0.0102; });
    CHECK(close.threads() == 2);
    CHECK(close.changes() == 0);
    ThreadGovernor single(1);
    CHECK(single.threads() == 1);
    CHECK(run(single, 10, [](int) { return 0.01; }).at_most == 0);
    CHECK(single.next(0.01) == 1);
}

namespace {
// Steps that take 1 ms on one thread and 4 ms on more (the neighbour), timed by govern_threads.
void steps_slower_with_threads(int steps) {
    for (int i = 0; i < steps; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(xgrad::blas_threads() == 1 ? 1 : 4));
        xgrad::govern_threads();
    }
}
}  // namespace

TEST_CASE("govern_threads moves the process to one thread when its steps run faster so") {
    const int most = xgrad::blas_threads();
    if (most == 1) {  // one core: nothing to govern
        CHECK_FALSE(xgrad::threads_governed());
        return;
    }
    CHECK(xgrad::threads_governed());
    steps_slower_with_threads(60);
    CHECK(xgrad::blas_threads() == 1);
    CHECK(xgrad::threads_governed());
    CHECK(xgrad::thread_governor_state() == "governed: 1 of " + std::to_string(most) + " threads (1 change)");
}

TEST_CASE("set_blas_threads keeps its count: the governor stops") {
    const int most = xgrad::blas_threads();
    xgrad::set_blas_threads(most);
    CHECK_FALSE(xgrad::threads_governed());
    steps_slower_with_threads(60);
    CHECK(xgrad::blas_threads() == most);
    CHECK(xgrad::thread_governor_state() == fmt::format("kept at {} threads (set_blas_threads)", most));
    CHECK_THROWS_AS(xgrad::set_blas_threads(0), std::invalid_argument);
}

TEST_CASE("a pinned GEMM provider keeps the start-up count, so that its runs give the same bits, and unpinned the governor resumes") {
    const int most = xgrad::blas_threads();
    xgrad::set_gemm_provider("openblas");
    CHECK_FALSE(xgrad::threads_governed());
    steps_slower_with_threads(60);
    CHECK(xgrad::blas_threads() == most);
    xgrad::set_gemm_provider("auto");
    CHECK(xgrad::threads_governed() == (most > 1));
    steps_slower_with_threads(60);
    CHECK(xgrad::blas_threads() == 1);
}
