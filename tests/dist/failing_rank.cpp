// Ranks that fail while the others wait in a collective; the job must end with the message printed
// once and a non-zero status, never leave rank 0 waiting.
//   failing_rank throw   rank 1 throws: run_or_abort prints its message and aborts every rank
//   failing_rank stall   rank 1 stops answering: rank 0's collective timeout, set after the
//                        DistributedDataParallel copied the group, ends the job from its allreduce
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include <xgrad/dist/dist.hpp>

int main(int argc, char** argv) {
    xgrad::dist::Environment mpi(argc, argv);
    xgrad::dist::ProcessGroup world;
    const std::string mode = argc > 1 ? argv[1] : "throw";
    return world.run_or_abort("failing_rank", [&] {
        if (mode == "stall") {
            xgrad::Parameter<float> w(xgrad::Tensor<float>{1.0f, 2.0f});
            w.grad() = xgrad::Tensor<float>{0.5f, 0.5f};
            xgrad::dist::DistributedDataParallel<float> ddp(world, {{"w", w}});
            world.set_timeout(1, "failing_rank");  // after ddp took its copy of the group
            if (world.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(50));
            ddp.average_gradients();  // rank 0 waits here for a rank that does not come
            return 0;
        }
        if (world.rank() == 1) throw std::runtime_error("a deliberate failure on rank 1");
        world.barrier();  // rank 0 waits here for a rank that will never come
        return 0;
    });
}
