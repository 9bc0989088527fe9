// The whole public API of xgrad: #include <xgrad/xgrad.hpp> and link xgrad::xgrad.
#pragma once

#include "tensor/format.hpp"
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
#include "nn/rnn_kernel.hpp"
#include "nn/rnn_fused.hpp"
#include "nn/sequences.hpp"
#include "nn/verify.hpp"

#include "optim/options.hpp"
#include "optim/optimizer.hpp"
#include "optim/scheduler.hpp"
