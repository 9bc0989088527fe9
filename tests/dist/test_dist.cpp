// xgrad::dist on every rank of an mpirun: the process group's collectives, the replicas' identical
// start, gradient averaging over buckets, and a model that differs between ranks refused on all.
#include <cmath>
#include <span>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <xgrad/dist/dist.hpp>
#include <xgrad/xgrad.hpp>

namespace dist = xgrad::dist;
using xgrad::Parameter;
using xgrad::Tensor;

TEST_CASE("process group: rank, size, sums, gathers and the first failure, on every rank") {
    dist::ProcessGroup world;
    REQUIRE(world.size() >= 2);
    const int n = world.size(), r = world.rank();
    CHECK(world.sum(r + 1.0) == n * (n + 1) / 2.0);
    CHECK(world.average(2.0 * r) == doctest::Approx(n - 1.0));
    const auto texts = world.all_gather(std::string(static_cast<std::size_t>(r), 'x'));
    REQUIRE(texts.size() == static_cast<std::size_t>(n));
    for (int k = 0; k < n; ++k) CHECK(texts[static_cast<std::size_t>(k)] == std::string(static_cast<std::size_t>(k), 'x'));
    CHECK(world.first_failure("").first == -1);
    // Ranks 1 and up fail; every rank learns that rank 1 was the first, and its message.
    const auto [rank, message] = world.first_failure(r >= 1 ? fmt::format("rank {} failed", r) : "");
    CHECK(rank == 1);
    CHECK(message == "rank 1 failed");
    world.barrier();
}

TEST_CASE("process group: float sums and broadcasts; a collective timeout that is not reached changes nothing") {
    dist::ProcessGroup world;
    const int r = world.rank();
    CHECK_THROWS_WITH_AS(world.set_timeout(-1, "test"), doctest::Contains("-1 seconds"), std::invalid_argument);
    CHECK_THROWS_AS(world.set_timeout(std::nan(""), "test"), std::invalid_argument);
    CHECK_THROWS_AS(world.set_timeout(1e12, "test"), std::invalid_argument);  // past a steady_clock duration's range
    world.set_timeout(60, "test");
    const dist::ProcessGroup copy = world;  // shares the watch
    std::vector<float> values = {1.0f * static_cast<float>(r), 2.0f};
    copy.sum_in_place(std::span<float>(values));
    CHECK(values[1] == 2.0f * static_cast<float>(world.size()));
    std::vector<double> from_root = {static_cast<double>(r) + 0.5};
    world.broadcast(std::span<double>(from_root));
    CHECK(from_root[0] == 0.5);
    world.set_timeout(0, "test");
    world.barrier();
}

namespace {
// Two parameters whose values and gradients depend on the rank.
std::vector<std::pair<std::string, Parameter<double>>> rank_parameters(int r) {
    Parameter<double> w(Tensor<double>{{1.0 + r, 2.0}, {3.0, 4.0 * r}}), b(Tensor<double>{-1.0 * r, 5.0, 6.0});
    w.grad() = Tensor<double>{{1.0 * r, 2.0}, {0.5, -1.0 * r}};
    b.grad() = Tensor<double>{10.0 * r, 0.0, 1.0};
    return {{"w", w}, {"b", b}};
}
}  // namespace

TEST_CASE("DistributedDataParallel: replicas start from rank 0's values, and gradients become their mean over ranks") {
    dist::ProcessGroup world;
    const int n = world.size();
    for (std::size_t bucket_bytes : {std::size_t{25} << 20, sizeof(double) * 3, std::size_t{1}}) {
        CAPTURE(bucket_bytes);
        auto params = rank_parameters(world.rank());
        dist::DistributedDataParallel<double> ddp(world, params, dist::DistributedOptions().bucket_bytes(bucket_bytes));
        CHECK(ddp.bucket_count() == (bucket_bytes > 100 ? 1u : 2u));  // a parameter larger than a bucket gets its own
        CHECK(params[0].second.value() == Tensor<double>{{1.0, 2.0}, {3.0, 0.0}});
        CHECK(params[1].second.value() == Tensor<double>{0.0, 5.0, 6.0});
        ddp.average_gradients();
        const double mean_r = (n - 1) / 2.0;  // the mean of 0, 1, ..., n - 1
        CHECK(params[0].second.grad() == Tensor<double>{{mean_r, 2.0}, {0.5, -mean_r}});
        CHECK(params[1].second.grad() == Tensor<double>{10.0 * mean_r, 0.0, 1.0});
    }
}

TEST_CASE("DistributedDataParallel: a parameter that differs between ranks is refused on every rank, naming it") {
    dist::ProcessGroup world;
    auto params = rank_parameters(world.rank());
    if (world.rank() == 1) params[1].second = Parameter<double>(Tensor<double>{1.0, 2.0});
    CHECK_THROWS_WITH_AS(dist::DistributedDataParallel<double>(world, params),
                         "DistributedDataParallel: parameter 1 is 'b (2,)' on rank 1 but 'b (3,)' on rank 0: every rank "
                         "must build the same model",
                         std::invalid_argument);
    auto fewer = rank_parameters(world.rank());
    if (world.rank() == 1) fewer.pop_back();
    CHECK_THROWS_WITH_AS(dist::DistributedDataParallel<double>(world, fewer), doctest::Contains("is 'nothing' on rank 1"),
                         std::invalid_argument);
}

TEST_CASE("a communicator of the user's: ranks renumbered by MPI_Comm_split, rank 0 of it is the source") {
    dist::ProcessGroup world;
    MPI_Comm reversed = MPI_COMM_NULL;
    REQUIRE(MPI_Comm_split(MPI_COMM_WORLD, 0, world.size() - 1 - world.rank(), &reversed) == MPI_SUCCESS);
    {
        dist::ProcessGroup group(reversed);
        CHECK(group.rank() == world.size() - 1 - world.rank());
        auto params = rank_parameters(world.rank());
        dist::DistributedDataParallel<double> ddp(group, params);
        const int source = world.size() - 1;  // the world rank that is rank 0 of the reversed group
        CHECK(params[0].second.value() == Tensor<double>{{1.0 + source, 2.0}, {3.0, 4.0 * source}});
    }
    MPI_Comm_free(&reversed);
}
