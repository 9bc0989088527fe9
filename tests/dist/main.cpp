// doctest's main for the tests that run on several ranks: MPI around the whole run, every rank
// running every case, and a non-zero exit when any rank fails (so mpirun reports it).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <xgrad/dist/dist.hpp>

int main(int argc, char** argv) {
    xgrad::dist::Environment mpi(argc, argv);
    doctest::Context context(argc, argv);
    const int failed = context.run() != 0 ? 1 : 0;
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
}
