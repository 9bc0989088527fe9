// Links against the installed xgrad::dist: the component's headers and library are exported.
#include <xgrad/dist/dist.hpp>

int main(int argc, char** argv) {
    xgrad::dist::Environment mpi(argc, argv);
    xgrad::dist::ProcessGroup world;
    return world.rank() == 0 ? 0 : 1;
}
