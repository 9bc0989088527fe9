// Stand-ins when libtorch is not installed: the benchmark then times xgrad alone.
#include "steps.hpp"

namespace bench {
std::unique_ptr<Trainer> make_torch(const Problem&) { return nullptr; }
std::unique_ptr<Trainer> make_torch_layer(const Problem&) { return nullptr; }
bool have_torch() { return false; }
void set_torch_threads(int) {}
std::string torch_version() { return "not installed"; }
}  // namespace bench
