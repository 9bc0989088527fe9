// A rank that throws while the others wait in a collective: run_or_abort must print its message
// once and end the whole job with a non-zero status, never leave rank 0 waiting.
#include <stdexcept>

#include <xgrad/dist/dist.hpp>

int main(int argc, char** argv) {
    xgrad::dist::Environment mpi(argc, argv);
    xgrad::dist::ProcessGroup world;
    return world.run_or_abort("failing_rank", [&] {
        if (world.rank() == 1) throw std::runtime_error("a deliberate failure on rank 1");
        world.barrier();  // rank 0 waits here for a rank that will never come
        return 0;
    });
}
