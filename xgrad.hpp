/// @file
/// The whole public API of xgrad: `#include <xgrad/xgrad.hpp>` and link `xgrad::xgrad`.
///
/// The optional data-parallel component is not included here: `#include <xgrad/dist/dist.hpp>`
/// and link `xgrad::dist` (see xgrad::dist).
#pragma once

#include "tensor/atomic_file.hpp"
#include "tensor/format.hpp"
#include "tensor/isa.hpp"
#include "tensor/linalg.hpp"
#include "tensor/memory.hpp"
#include "tensor/random.hpp"
#include "tensor/safetensors.hpp"
#include "tensor/tensor.hpp"

#include "autograd/checkpoint.hpp"
#include "autograd/gradcheck.hpp"
#include "autograd/graph.hpp"
#include "autograd/ops.hpp"
#include "autograd/parameter.hpp"

#include "nn/attention.hpp"
#include "nn/clip.hpp"
#include "nn/containers.hpp"
#include "nn/layers.hpp"
#include "nn/module.hpp"
#include "nn/cell.hpp"
#include "nn/recurrent.hpp"
#include "nn/rnn.hpp"
#include "nn/recurrent_kernel.hpp"
#include "nn/recurrent_fused.hpp"
#include "nn/sequences.hpp"
#include "nn/verify.hpp"

#include "tensor/options.hpp"
#include "optim/optimizer.hpp"
#include "optim/scheduler.hpp"

/// @namespace xgrad
/// Tensors and their helpers (tensor/), the autograd tape, its handles and the differentiable ops
/// (autograd/). Modules are in xgrad::nn, optimizers and schedules in xgrad::optim.

/// @namespace xgrad::nn
/// Modules with PyTorch's names, shapes and initializations (nn/): Linear, Embedding, Dropout,
/// containers, attention, the recurrent layers over any cell with their fused handwritten-BPTT
/// kernel, sequence padding, gradient clipping and the gradient verifier.

/// @namespace xgrad::nn::cells
/// The built-in recurrent cells (nn/cells/): Elman, LSTM and GRU, each a cell type as nn/cell.hpp
/// describes, which nn::RNN, nn::LSTM and nn::GRU run.

/// @namespace xgrad::optim
/// Optimizers with torch.optim's update rules and defaults, parameter groups, and learning-rate
/// schedules (optim/).
