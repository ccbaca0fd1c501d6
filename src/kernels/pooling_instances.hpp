// The pooled loop (bag.hpp) for every table the extension pools, instantiated once, in files of
// their own (pooling_plain.cpp, pooling_half.cpp, pooling_quantized.cpp), rather than in each
// binding that pools: its copies for three instruction sets times four loop variants times each
// reader made register_bag.cpp most of a build (7 minutes at -O0 with the sanitizers on a 2-core
// host, compiled alone while the other core idled). Apart, they compile side by side. A file
// that includes this header calls these instantiations instead of compiling its own.
#pragma once

#include <cstdint>

#include "kernels/bag.hpp"
#include "kernels/half.hpp"
#include "kernels/quantize.hpp"

// The explicit instantiation of pool_rows_with for one row reader and output type, for both id
// types: a declaration with PREFIX `extern`, the definition with an empty PREFIX.
#define FASTEMBED_POOL_ROWS_WITH(PREFIX, Reader, Out)                                                       \
    PREFIX template bool pool_rows_with<Reader, std::int32_t, Out>(                                         \
        const Reader&, const std::int32_t*, const BagLayout&, BagMode, const Reader::value_type*,           \
        std::int64_t, Out*, std::int64_t*, bool);                                                           \
    PREFIX template bool pool_rows_with<Reader, std::int64_t, Out>(                                         \
        const Reader&, const std::int64_t*, const BagLayout&, BagMode, const Reader::value_type*,           \
        std::int64_t, Out*, std::int64_t*, bool);

// float32 and float64 tables.
#define FASTEMBED_POOLING_PLAIN(PREFIX)                         \
    FASTEMBED_POOL_ROWS_WITH(PREFIX, PlainRows<float>, float)   \
    FASTEMBED_POOL_ROWS_WITH(PREFIX, PlainRows<double>, double)

// float16 and bfloat16 tables, pooled into their own dtype or into float32.
#define FASTEMBED_POOLING_HALF(PREFIX)                              \
    FASTEMBED_POOL_ROWS_WITH(PREFIX, PlainRows<Float16>, Float16)   \
    FASTEMBED_POOL_ROWS_WITH(PREFIX, PlainRows<Float16>, float)     \
    FASTEMBED_POOL_ROWS_WITH(PREFIX, PlainRows<BFloat16>, BFloat16) \
    FASTEMBED_POOL_ROWS_WITH(PREFIX, PlainRows<BFloat16>, float)

// 8-bit and 4-bit row-wise quantized tables.
#define FASTEMBED_POOLING_QUANTIZED(PREFIX)                     \
    FASTEMBED_POOL_ROWS_WITH(PREFIX, QuantizedRows<8>, float)   \
    FASTEMBED_POOL_ROWS_WITH(PREFIX, QuantizedRows<4>, float)

namespace fastembed {
FASTEMBED_POOLING_PLAIN(extern)
FASTEMBED_POOLING_HALF(extern)
FASTEMBED_POOLING_QUANTIZED(extern)
}  // namespace fastembed
