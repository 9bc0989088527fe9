#include "mpi_ranks.hpp"

#include <stdexcept>

namespace charlm {

std::vector<float> MpiRanks::all_gather(std::span<const float> mine) const {
    std::vector<float> all(mine.size() * static_cast<std::size_t>(group_.size()));
    if (MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_FLOAT, all.data(), static_cast<int>(mine.size()), MPI_FLOAT,
                      group_.comm()) != MPI_SUCCESS) {
        throw std::runtime_error("MPI_Allgather of the carried state failed");
    }
    return all;
}

}  // namespace charlm
