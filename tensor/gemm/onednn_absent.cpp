// Built instead of onednn_sgemm.cpp and onednn_blocked.cpp when oneDNN is not there (CMake
// XGRAD_GEMM=openblas, or Debian's libdnnl-dev not installed): no such providers.
#include "provider.hpp"

namespace xgrad::blas {

const Provider<float>* onednn_sgemm() { return nullptr; }
const Provider<float>* onednn_blocked() { return nullptr; }

}  // namespace xgrad::blas
