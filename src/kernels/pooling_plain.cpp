// The pooled loop for float32 and float64 tables (see pooling_instances.hpp).
#include "kernels/pooling_instances.hpp"

namespace fastembed {
FASTEMBED_POOLING_PLAIN()
}  // namespace fastembed
