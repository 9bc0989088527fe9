// Stand-ins when oneDNN is not installed: the layer table then compares xgrad with libtorch alone.
#include "steps.hpp"

namespace bench {
std::unique_ptr<Trainer> make_onednn_layer(const Problem&) { return nullptr; }
std::string onednn_version() { return "not installed"; }
}  // namespace bench
