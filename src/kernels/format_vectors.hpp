// Writing the word2vec text format as gensim writes it: "<key> <v1> <v2> ...\n" per vector, each
// number as str() of a NumPy scalar of the table's dtype. That is the shortest decimal that
// reads back to the same value (std::to_chars gives those digits), laid out as NumPy lays it out:
// positional ("0.25", "3.0") for 1e-4 <= |v| < 1e6 (float32) or 1e16 (float64), scientific with
// a two-digit exponent at least ("1e-05", "1.5e+07") outside, "nan", "inf", "-0.0".
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <algorithm>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "kernels/thread_pool.hpp"

namespace fastembed {

// Longest number format_number writes (float64 in scientific notation: sign, 17 digits, point,
// 'e', exponent sign, 3 digits).
inline constexpr std::size_t kMaxNumberChars = 32;

// Writes `value` at `out` as NumPy's str() does; returns the end.
template <class T>
char* format_number(char* out, T value) {
    if (std::isnan(value)) {
        out[0] = 'n', out[1] = 'a', out[2] = 'n';
        return out + 3;
    }
    if (std::signbit(value)) *out++ = '-';
    const T magnitude = std::fabs(value);
    if (std::isinf(magnitude)) {
        out[0] = 'i', out[1] = 'n', out[2] = 'f';
        return out + 3;
    }
    constexpr double kPositionalBelow = std::is_same_v<T, float> ? 1e6 : 1e16;
    const double wide = magnitude;
    if (magnitude != 0 && (wide < 1e-4 || wide >= kPositionalBelow)) {
        return std::to_chars(out, out + kMaxNumberChars, magnitude, std::chars_format::scientific)
            .ptr;
    }
    // Positional: the shortest digits and decimal exponent, from the scientific form
    // "d[.ddd]e[+-]xx", placed around the point.
    char scientific[kMaxNumberChars];
    const char* end =
        std::to_chars(scientific, scientific + kMaxNumberChars, magnitude,
                      std::chars_format::scientific)
            .ptr;
    char digits[kMaxNumberChars];
    std::size_t num_digits = 0;
    const char* p = scientific;
    for (; *p != 'e'; ++p) {
        if (*p != '.') digits[num_digits++] = *p;
    }
    const bool negative_exponent = p[1] == '-';
    int exponent = 0;
    for (p += 2; p < end; ++p) exponent = exponent * 10 + (*p - '0');
    if (negative_exponent) exponent = -exponent;
    if (exponent < 0) {  // 0.000ddd
        *out++ = '0';
        *out++ = '.';
        for (int i = -1; i > exponent; --i) *out++ = '0';
        for (std::size_t i = 0; i < num_digits; ++i) *out++ = digits[i];
        return out;
    }
    const auto integer_digits = static_cast<std::size_t>(exponent) + 1;
    for (std::size_t i = 0; i < integer_digits; ++i) *out++ = i < num_digits ? digits[i] : '0';
    *out++ = '.';
    if (num_digits <= integer_digits) {
        *out++ = '0';
        return out;
    }
    for (std::size_t i = integer_digits; i < num_digits; ++i) *out++ = digits[i];
    return out;
}

// The text-format lines of `count` rows of `dim` values, keys[i] first on line i, formatted on
// all threads.
template <class T>
std::string format_text_rows(const std::vector<std::string_view>& keys, const T* rows,
                             std::size_t dim) {
    const std::size_t count = keys.size();
    const std::size_t threads = threads_for_bytes(count * dim * kMaxNumberChars * 4);
    const std::size_t parts = std::max<std::size_t>(1, parts_for(threads));
    std::vector<std::string> pieces(parts);
    parallel_ranges(count, threads, [&](std::size_t part, std::size_t begin, std::size_t end) {
        std::string& piece = pieces[part];
        std::vector<char> numbers(dim * (kMaxNumberChars + 1) + 1);
        for (std::size_t i = begin; i < end; ++i) {
            char* out = numbers.data();
            const T* row = rows + i * dim;
            for (std::size_t j = 0; j < dim; ++j) {
                *out++ = ' ';
                out = format_number(out, row[j]);
            }
            *out++ = '\n';
            piece += keys[i];
            piece.append(numbers.data(), out);
        }
    });
    std::size_t total = 0;
    for (const auto& piece : pieces) total += piece.size();
    std::string text;
    text.reserve(total);
    for (const auto& piece : pieces) text += piece;
    return text;
}

}  // namespace fastembed
