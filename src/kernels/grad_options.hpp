// What a backward row sink does with one id's run sum beyond storing it: the gradient options of
// PyTorch's embedding (padding_idx, scale_grad_by_freq) and framework-style accumulation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastembed {

struct GradOptions {
    // This id's gradient is always zero (PyTorch's padding_idx); kNoPadding disables it.
    static constexpr std::uint64_t kNoPadding = ~std::uint64_t{0};
    std::uint64_t padding_idx = kNoPadding;
    // Divide each id's sum by the number of its occurrences in the batch.
    bool scale_grad_by_freq = false;
    // Add into the existing gradient instead of overwriting it (rows of absent ids untouched).
    bool accumulate = false;

    bool is_padding(std::uint64_t id) const { return id == padding_idx; }
};

// Writes `dim` values of sum / count (or sum when not scaling) through `emit(offset, values, n)`
// in chunks small enough for the stack, so a scaled row can still be streamed.
template <class T, class Emit>
void emit_scaled_row(const T* sum, std::size_t count, std::size_t dim, bool scale, Emit&& emit) {
    if (!scale || count == 1) {
        emit(std::size_t{0}, sum, dim);
        return;
    }
    constexpr std::size_t kChunk = 64;
    alignas(64) T chunk[kChunk];
    const T divisor = static_cast<T>(count);
    for (std::size_t begin = 0; begin < dim; begin += kChunk) {
        const std::size_t n = dim - begin < kChunk ? dim - begin : kChunk;
        for (std::size_t d = 0; d < n; ++d) chunk[d] = sum[begin + d] / divisor;
        emit(begin, static_cast<const T*>(chunk), n);
    }
}

}  // namespace fastembed
