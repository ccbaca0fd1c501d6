// The pooled loop for 8-bit and 4-bit row-wise quantized tables (see pooling_instances.hpp).
#include "kernels/pooling_instances.hpp"

namespace fastembed {
FASTEMBED_POOLING_QUANTIZED()
}  // namespace fastembed
