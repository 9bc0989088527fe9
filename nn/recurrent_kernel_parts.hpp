/// @file
/// What the fused kernel's forward (recurrent_forward.cpp) and backward (recurrent_backward.cpp)
/// share, for those two files only: the checks of a raw call, where a (layer, direction) keeps its
/// states, the per-thread scratch of the rows, and the input projection, which is the one place
/// that knows one-hot input (a row gather of W_ih and a scatter-add for its gradient, instead of
/// GEMMs).
#pragma once

#include <algorithm>
#include <exception>
#include <string_view>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "recurrent_kernel.hpp"

namespace xgrad::nn::kernel {

/// Where the kernel's GEMM finds weight_hh and bias_hh among the cell's parameters.
struct RecurrentIndices {
    std::size_t weight = 0;  ///< index of weight_hh among the cell's parameters
    std::size_t bias = 0;    ///< index of bias_hh, when has_bias
    bool has_bias = false;   ///< whether the cell declares a bias_hh
};

/// check_fused_cell's checks, returning where the kernel's GEMM finds W_hh and b_hh (when it runs
/// one). Throws std::invalid_argument naming `who`.
template <class T>
RecurrentIndices checked_cell(std::string_view who, const FusedCell<T>& cell, std::size_t hidden);

/// Checks what sizes the kernel's unchecked reads (spec and cell), overflow included; returns the
/// cell's checked_cell().
template <class T>
RecurrentIndices check_spec(std::string_view who, const FusedCell<T>& cell, const RecurrentSpec& spec);

/// Checks that `w` holds one entry per (layer, direction), with a pointer for each parameter there
/// is and none for the biases without bias.
template <class T>
void check_weights(std::string_view who, const FusedCell<T>& cell, const RecurrentSpec& spec, const RecurrentWeights<T>& w);

/// Resizes `tensor` to `shape` unless it has it already (a reused cache keeps its buffers).
void resize(auto& tensor, const Shape& shape) {
    if (!std::equal(tensor.shape().begin(), tensor.shape().end(), shape.begin(), shape.end())) tensor.resize(shape);
}

/// Where a (layer, direction) keeps its state before and after step t in a (T + 1)-slot buffer.
struct Slots {
    std::size_t steps;  ///< T
    std::size_t row;    ///< values per slot, B * H
    bool forward;       ///< the forward direction (else the reverse)
    /// Offset of the state before step t.
    std::size_t before(std::size_t t) const { return (forward ? t : t + 1) * row; }
    /// Offset of the state after step t.
    std::size_t after(std::size_t t) const { return (forward ? t + 1 : t) * row; }
    /// Offset of the initial state.
    std::size_t initial() const { return (forward ? 0 : steps) * row; }
    /// Offset of the final state.
    std::size_t final() const { return (forward ? steps : 0) * row; }
};

/// What one thread's rows work with: the state pointers a row is handed, the δh it builds and the
/// thread's share of a step's sum, allocated once per kernel call (one per thread), not per step.
template <class T>
struct RowScratch {
    /// Room for `states` states of `hidden` values.
    RowScratch(std::size_t states, std::size_t hidden)
        : previous(states), next(states), next_read(states), d_next(states), d_previous(states), delta_h(hidden) {}
    std::vector<const T*> previous;   ///< the states before the step
    std::vector<T*> next;             ///< forward writes the states after the step
    std::vector<const T*> next_read;  ///< backward reads them
    std::vector<const T*> d_next;     ///< backward: ∂l/∂ each state after the step
    std::vector<T*> d_previous;       ///< backward: ∂l/∂ each state before it
    std::vector<T> delta_h;           ///< backward: ∂l/∂h_t from both paths
    T sum = 0;                        ///< the thread's share of a step's sum
};

/// One scratch per thread over_rows may use.
template <class T>
std::vector<RowScratch<T>> row_scratch(std::size_t states, std::size_t hidden) {
#ifdef _OPENMP
    const std::size_t threads = static_cast<std::size_t>(std::max(1, omp_get_max_threads()));
#else
    const std::size_t threads = 1;
#endif
    return std::vector<RowScratch<T>>(threads, RowScratch<T>(states, hidden));
}

/// Calls rows(first, last, scratch) over the batch rows [0, batch) and returns the sum of what the
/// calls return, added in thread order (the same sum on every run): split across the OpenMP threads
/// (set_blas_threads) when asked and there are several, else one call. Rows are independent within
/// a step, and at 2 threads the activations are otherwise the serial part of a step (BENCHMARKS.md).
/// An exception thrown by a row is rethrown here.
template <class T, class Rows>
T over_rows(std::size_t batch, bool split, std::vector<RowScratch<T>>& scratch, Rows&& rows) {
#ifdef _OPENMP
    if (split && scratch.size() > 1) {
        std::size_t used = 1;
        std::exception_ptr failure;
#pragma omp parallel num_threads(static_cast<int>(scratch.size()))
        {
            const auto threads = static_cast<std::size_t>(omp_get_num_threads()), id = static_cast<std::size_t>(omp_get_thread_num());
            if (id == 0) used = threads;
            try {
                scratch[id].sum = rows(batch * id / threads, batch * (id + 1) / threads, scratch[id]);
            } catch (...) {
#pragma omp critical(xgrad_over_rows)
                failure = std::current_exception();
            }
        }
        if (failure) std::rethrow_exception(failure);
        T total = 0;
        for (std::size_t id = 0; id < used; ++id) total += scratch[id].sum;
        return total;
    }
#else
    (void)split;
#endif
    return rows(std::size_t{0}, batch, scratch[0]);
}

/// Splitting a step's rows pays for the threads' wake-up (a few µs) from about this many values.
inline constexpr std::size_t split_rows_from = 16384;

/// A layer's input projection over all its steps at once, W_ih x_t for every t, as a GEMM, or for
/// one-hot input (`ids`, T x B) as a gather of W_ih's columns; and its gradients.
template <class T>
struct InputProjection {
    const T* weight_ih;   ///< (gates * H, in)
    std::size_t gates_h;  ///< gates * H
    std::size_t in;       ///< the layer's input size
    std::size_t rows;     ///< T * B
    const Indices* ids;   ///< one-hot indices (T, B), or null: the input `x` is dense

    /// a (rows, gates * H) = x W_ihᵀ, or W_ih's columns the ids select.
    void forward(const T* x, T* a) const;
    /// ∂l/∂W_ih (gates * H, in) from δ (rows, gates * H) for one-hot input, a scatter-add of δ's rows
    /// into the columns their ids select. (For dense input the backward joins W_ih's gradient to
    /// W_hh's in one product instead.)
    void one_hot_weight_gradient(const T* delta, T* g) const;
};

}  // namespace xgrad::nn::kernel
