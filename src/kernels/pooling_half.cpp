// The pooled loop for float16 and bfloat16 tables (see pooling_instances.hpp).
#include "kernels/pooling_instances.hpp"

namespace fastembed {
FASTEMBED_POOLING_HALF()
}  // namespace fastembed
