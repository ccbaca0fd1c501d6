// Reading word2vec files (the C tool's text and binary formats, gensim's, fastText's .vec, GloVe's
// header-less text) from a buffer holding the whole file.
//
// Two phases: a scan on one thread finds where each vector's line (text) or key and vector
// (binary) start, stopping after the vectors wanted (memchr runs at memory speed, so this is a
// small part of the cost); then the rows are parsed or copied in parallel, each thread writing
// its own rows. Numbers are parsed with std::from_chars, correctly rounded as strtof/strtod
// round, without their locale dependence. Every problem is a VectorsFileError naming the
// file's line (the header is line 1); with several bad lines the first one is reported,
// whatever the thread count.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/thread_pool.hpp"

namespace fastembed {

// A malformed file: `line` is 1-based, the header being line 1.
struct VectorsFileError : std::runtime_error {
    VectorsFileError(std::size_t line_number, const std::string& what)
        : std::runtime_error("line " + std::to_string(line_number) + ": " + what),
          line(line_number) {}
    std::size_t line;
};

// Bytes [offset, offset + size) of the file.
struct Span {
    std::size_t offset = 0;
    std::size_t size = 0;
};

// Where the vectors of a file are. Vector i is on line first_line + i.
struct VectorsLayout {
    std::size_t dim = 0;
    std::size_t first_line = 1;
    std::vector<Span> rows;  // text: each vector's line; binary: each vector's bytes
    std::vector<Span> keys;  // each vector's key: found by scan_binary, or by parse_text_rows
    // A text file's problem after its rows (too few or too many lines), reported by
    // parse_text_rows unless a row before it is bad too: the first bad line is the one named.
    std::vector<VectorsFileError> pending;
};

inline constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();

// The scans reserve room for the vectors a header announces only as far as the file can hold
// them (a text line has at least 2 * dim bytes, a binary entry dim * 4 + 1) and at most this
// many (more grow as found): a header announcing 10^12 vectors is an error naming the line
// where the file ends, not a failed allocation.
inline constexpr std::size_t kMaxReserved = std::size_t{1} << 20;

namespace parse_detail {

inline bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

inline bool is_separator(char c) { return c == ' ' || c == '\t'; }

// A short printable rendering of bytes for messages: ASCII as is, other bytes as \xNN.
inline std::string quoted(const char* first, const char* last) {
    constexpr std::size_t kMaxShown = 40;
    std::string text = "'";
    const char* const shown_end = first + std::min<std::size_t>(last - first, kMaxShown);
    for (const char* p = first; p < shown_end; ++p) {
        const auto byte = static_cast<unsigned char>(*p);
        if (byte >= 0x20 && byte < 0x7f && byte != '\'') {
            text += *p;
        } else {
            static const char kHex[] = "0123456789abcdef";
            text += "\\x";
            text += kHex[byte >> 4];
            text += kHex[byte & 15];
        }
    }
    if (shown_end != last) text += "...";
    return text + "'";
}

// Length of the longest valid UTF-8 prefix of [s, s + n): the rules of Python's strict decoder
// (no overlong forms, no surrogates, nothing above U+10FFFF).
inline std::size_t valid_utf8_prefix(const unsigned char* s, std::size_t n) {
    std::size_t i = 0;
    while (i < n) {
        const unsigned c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t length = 0;
        unsigned low = 0x80, high = 0xBF;  // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            length = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            length = 3;
            if (c == 0xE0) low = 0xA0;
            if (c == 0xED) high = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            length = 4;
            if (c == 0xF0) low = 0x90;
            if (c == 0xF4) high = 0x8F;
        } else {
            return i;
        }
        if (n - i < length || s[i + 1] < low || s[i + 1] > high) return i;
        for (std::size_t k = 2; k < length; ++k) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
        }
        i += length;
    }
    return n;
}

// Empty if [first, last) is valid UTF-8, else what is wrong with it.
inline std::string utf8_problem(const char* first, const char* last) {
    const auto size = static_cast<std::size_t>(last - first);
    const std::size_t valid =
        valid_utf8_prefix(reinterpret_cast<const unsigned char*>(first), size);
    if (valid == size) return {};
    return "the key " + quoted(first, last) + " is not valid UTF-8 (at byte " +
           std::to_string(valid) + ")";
}

// Roughly log10 of the decimal number [first, last) (its syntax already accepted): enough to
// tell a value too large for T from one too small, which are thousands of times apart.
inline long long decimal_magnitude(const char* first, const char* last) {
    const char* p = first;
    if (p < last && (*p == '-' || *p == '+')) ++p;
    long long integer_digits = 0, leading_fraction_zeros = 0;
    bool nonzero_seen = false;
    for (; p < last && *p >= '0' && *p <= '9'; ++p) {
        nonzero_seen = nonzero_seen || *p != '0';
        if (nonzero_seen) ++integer_digits;
    }
    if (p < last && *p == '.') {
        for (++p; p < last && *p >= '0' && *p <= '9'; ++p) {
            if (!nonzero_seen && *p == '0') ++leading_fraction_zeros;
            nonzero_seen = nonzero_seen || *p != '0';
        }
    }
    long long exponent = 0;
    if (p < last && (*p == 'e' || *p == 'E')) {
        ++p;
        const bool negative = p < last && *p == '-';
        if (p < last && (*p == '-' || *p == '+')) ++p;
        for (; p < last && *p >= '0' && *p <= '9'; ++p) {
            exponent = std::min<long long>(exponent * 10 + (*p - '0'), 1'000'000'000);
        }
        if (negative) exponent = -exponent;
    }
    return (integer_digits > 0 ? integer_digits - 1 : -leading_fraction_zeros - 1) + exponent;
}

// Parses all of [first, last) as a T, rounded as strtof / strtod would: a leading '+', "inf",
// "infinity" and "nan" are accepted (as Python's float() accepts them), values beyond T's range
// become +-infinity or +-0. False if it is not a number.
template <class T>
bool parse_number(const char* first, const char* last, T& value) {
    if (last - first > 1 && *first == '+' && first[1] != '-' && first[1] != '+') ++first;
    const auto [end, error] = std::from_chars(first, last, value);
    if (end != last) return false;
    if (error == std::errc()) return true;
    if (error != std::errc::result_out_of_range) return false;
    const T magnitude = decimal_magnitude(first, last) >= 0 ? std::numeric_limits<T>::infinity()
                                                            : T(0);
    value = *first == '-' ? -magnitude : magnitude;
    return true;
}

// A non-negative decimal integer that fits in size_t, all of [first, last).
inline bool parse_count(const char* first, const char* last, std::size_t& value) {
    if (first < last && *first == '+') ++first;
    const auto [end, error] = std::from_chars(first, last, value);
    return error == std::errc() && end == last;
}

// The header line "<count> <dim>": two integers separated by whitespace.
inline std::pair<std::size_t, std::size_t> parse_header(const char* first, const char* last) {
    std::size_t numbers[2] = {0, 0};
    int found = 0;
    const char* p = first;
    while (true) {
        while (p < last && is_space(*p)) ++p;
        if (p == last) break;
        const char* token_end = p;
        while (token_end < last && !is_space(*token_end)) ++token_end;
        if (found == 2 || !parse_count(p, token_end, numbers[found])) {
            found = -1;
            break;
        }
        ++found;
        p = token_end;
    }
    if (found != 2) {
        throw VectorsFileError(1, "the header must be '<number of vectors> <dimension>', got " +
                                      quoted(first, last) +
                                      " (a file without a header needs no_header=True)");
    }
    return {numbers[0], numbers[1]};
}

// Offset just past the first line starting at `offset` (past its '\n', or the end).
inline std::size_t next_line(const char* data, std::size_t size, std::size_t offset) {
    const void* newline = std::memchr(data + offset, '\n', size - offset);
    return newline ? static_cast<std::size_t>(static_cast<const char*>(newline) - data) + 1 : size;
}

inline bool all_space(const char* first, const char* last) {
    return std::all_of(first, last, is_space);
}

// [first, last) without trailing whitespace (gensim strips each line).
inline const char* trimmed_end(const char* first, const char* last) {
    while (last > first && is_space(last[-1])) --last;
    return last;
}

// Numbers on a text line after its key.
inline std::size_t count_fields(const char* first, const char* last) {
    std::size_t fields = 0;
    const char* p = first;
    while (true) {
        while (p < last && is_separator(*p)) ++p;
        if (p == last) return fields;
        ++fields;
        while (p < last && !is_separator(*p)) ++p;
    }
}

// The key of a text line: everything before its first space.
inline const char* key_end(const char* first, const char* last) {
    const void* space = std::memchr(first, ' ', static_cast<std::size_t>(last - first));
    return space ? static_cast<const char*>(space) : last;
}

// The first error of any part: the one on the smallest line.
inline void throw_first(std::vector<VectorsFileError>& errors) {
    if (errors.empty()) return;
    throw *std::min_element(errors.begin(), errors.end(),
                            [](const auto& a, const auto& b) { return a.line < b.line; });
}

}  // namespace parse_detail

// Finds the vector lines of a text file: after the header "<count> <dim>" (unless no_header,
// when every line is a vector and dim is the number of fields after the first line's key), at
// most `limit` of them. The header's count must match the lines that follow (trailing blank
// lines aside), unless `limit` stops earlier.
inline VectorsLayout scan_text(const char* data, std::size_t size, bool no_header,
                               std::size_t limit) {
    using namespace parse_detail;
    VectorsLayout layout;
    std::size_t offset = 0;
    std::size_t wanted = limit;
    std::size_t declared = 0;
    if (!no_header) {
        offset = next_line(data, size, 0);
        const auto [count, dim] = parse_header(data, data + offset);
        declared = count;
        layout.dim = dim;
        layout.first_line = 2;
        wanted = std::min(count, limit);
        const std::size_t fitting = size / (2 * std::min(dim, size) + 2) + 1;
        layout.rows.reserve(std::min({wanted, fitting, kMaxReserved}));
    }
    while (layout.rows.size() < wanted && offset < size) {
        const std::size_t end = next_line(data, size, offset);
        layout.rows.push_back({offset, end - offset});
        offset = end;
    }
    if (no_header) {
        while (offset == size && !layout.rows.empty() &&
               all_space(data + layout.rows.back().offset,
                         data + layout.rows.back().offset + layout.rows.back().size)) {
            layout.rows.pop_back();  // blank lines at the end of the file
        }
        if (layout.rows.empty() && wanted > 0) {
            throw VectorsFileError(1, "the file holds no vectors");
        }
        if (!layout.rows.empty()) {
            const char* line = data + layout.rows[0].offset;
            const char* line_end = trimmed_end(line, line + layout.rows[0].size);
            layout.dim = count_fields(key_end(line, line_end), line_end);
        }
    } else if (layout.rows.size() < wanted) {
        layout.pending.emplace_back(
            layout.first_line + layout.rows.size(),
            "the file ends after " + std::to_string(layout.rows.size()) +
                " vectors, but its header announces " + std::to_string(declared));
    } else if (limit >= declared && !all_space(data + offset, data + size)) {
        layout.pending.emplace_back(layout.first_line + declared,
                                    "more lines than the " + std::to_string(declared) +
                                        " vectors the header announces");
    }
    // A line of dim numbers has at least 2 * dim bytes, so a valid file has at least 2 bytes
    // per value. A file with fewer (a header's huge dimension) is refused here, at its first
    // line too short, before the caller allocates count x dim values.
    std::size_t row_bytes = 0;
    for (const Span& row : layout.rows) row_bytes += row.size;
    if (layout.dim == 0 || row_bytes / 2 / layout.dim >= layout.rows.size()) return layout;
    for (std::size_t i = 0; i < layout.rows.size(); ++i) {
        if (layout.rows[i].size / 2 < layout.dim) {
            const char* line = data + layout.rows[i].offset;
            const char* line_end = trimmed_end(line, line + layout.rows[i].size);
            const char* key_last = key_end(line, line_end);
            const std::size_t found = count_fields(key_last, line_end);
            throw VectorsFileError(layout.first_line + i,
                                   "expected " + std::to_string(layout.dim) +
                                       " numbers after the key " + quoted(line, key_last) +
                                       ", found " + std::to_string(found));
        }
    }
    return layout;
}

// Parses each line of `layout` into its row of `out` (count x dim, row-major) and its key's
// span, on all threads.
template <class T>
void parse_text_rows(const char* data, const VectorsLayout& layout, T* out, Span* keys) {
    using namespace parse_detail;
    const std::size_t count = layout.rows.size();
    const std::size_t dim = layout.dim;
    const std::size_t bytes = count ? layout.rows.back().offset + layout.rows.back().size -
                                          layout.rows.front().offset
                                    : 0;
    // Parsing costs ~50x a copy of the same bytes: a thread per 128 KiB / 50 of text.
    const std::size_t threads = threads_for_bytes(bytes * 50);
    const std::size_t parts = std::max<std::size_t>(1, parts_for(threads));
    std::vector<std::vector<VectorsFileError>> errors(parts);
    parallel_ranges(count, threads, [&](std::size_t part, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            const std::size_t line_number = layout.first_line + i;
            const char* line = data + layout.rows[i].offset;
            const char* line_end = trimmed_end(line, line + layout.rows[i].size);
            const char* key_last = key_end(line, line_end);
            keys[i] = {layout.rows[i].offset, static_cast<std::size_t>(key_last - line)};
            std::string problem = utf8_problem(line, key_last);
            T* row = out + i * dim;
            const char* p = key_last;
            for (std::size_t j = 0; j < dim && problem.empty(); ++j) {
                while (p < line_end && is_separator(*p)) ++p;
                const char* token_end = p;
                while (token_end < line_end && !is_separator(*token_end)) ++token_end;
                if (p == line_end) {
                    problem = "expected " + std::to_string(dim) + " numbers after the key " +
                              quoted(line, key_last) + ", found " + std::to_string(j);
                } else if (!parse_number(p, token_end, row[j])) {
                    problem = quoted(p, token_end) + " (number " + std::to_string(j + 1) +
                              " of the key " + quoted(line, key_last) + ") is not a number";
                }
                p = token_end;
            }
            if (problem.empty() && count_fields(p, line_end) != 0) {
                problem = "expected " + std::to_string(dim) + " numbers after the key " +
                          quoted(line, key_last) + ", found " +
                          std::to_string(dim + count_fields(p, line_end));
            }
            if (!problem.empty()) {
                errors[part].emplace_back(line_number, problem);
                return;
            }
        }
    });
    std::vector<VectorsFileError> first_errors = layout.pending;
    for (auto& part_errors : errors) {
        first_errors.insert(first_errors.end(), part_errors.begin(), part_errors.end());
    }
    throw_first(first_errors);
}

// Finds the keys and vectors of a binary file: the header line "<count> <dim>", then per vector
// its key (UTF-8, up to a space; newlines before it, which the C tool writes after each
// vector, are skipped) and dim float32s; at most `limit` of them.
inline VectorsLayout scan_binary(const char* data, std::size_t size, std::size_t limit) {
    using namespace parse_detail;
    VectorsLayout layout;
    std::size_t offset = next_line(data, size, 0);
    const auto [declared, dim] = parse_header(data, data + offset);
    layout.dim = dim;
    layout.first_line = 2;
    if (dim > std::numeric_limits<std::size_t>::max() / sizeof(float)) {
        throw VectorsFileError(1, "the header's dimension " + std::to_string(dim) +
                                      " is too large");
    }
    const std::size_t vector_bytes = dim * sizeof(float);
    const std::size_t wanted = std::min(declared, limit);
    layout.rows.reserve(std::min({wanted, size / (vector_bytes + 2) + 1, kMaxReserved}));
    layout.keys.reserve(layout.rows.capacity());
    for (std::size_t i = 0; i < wanted; ++i) {
        const std::size_t line_number = layout.first_line + i;
        while (offset < size && data[offset] == '\n') ++offset;
        const void* space = std::memchr(data + offset, ' ', size - offset);
        if (space == nullptr) {
            throw VectorsFileError(line_number,
                                   "the file ends before vector " + std::to_string(i + 1) +
                                       " of the " + std::to_string(declared) +
                                       " its header announces (truncated?)");
        }
        const auto key_last = static_cast<const char*>(space);
        const std::string problem = utf8_problem(data + offset, key_last);
        if (!problem.empty()) throw VectorsFileError(line_number, problem);
        const std::size_t vector_offset = static_cast<std::size_t>(key_last - data) + 1;
        if (size - vector_offset < vector_bytes) {
            throw VectorsFileError(
                line_number, "the file ends inside the vector of the key " +
                                 quoted(data + offset, key_last) + ": it needs " +
                                 std::to_string(vector_bytes) + " bytes, " +
                                 std::to_string(size - vector_offset) + " remain (truncated?)");
        }
        layout.keys.push_back({offset, static_cast<std::size_t>(key_last - data) - offset});
        layout.rows.push_back({vector_offset, vector_bytes});
        offset = vector_offset + vector_bytes;
    }
    if (limit >= declared && !all_space(data + offset, data + size)) {
        throw VectorsFileError(layout.first_line + declared,
                               "more data after the " + std::to_string(declared) +
                                   " vectors the header announces");
    }
    return layout;
}

// Copies each binary vector of `layout` (float32 in the machine's byte order, as gensim reads
// them: little-endian on every platform it runs on; unaligned) into its row of `out`,
// converted to T, on all threads.
template <class T>
void copy_binary_rows(const char* data, const VectorsLayout& layout, T* out) {
    static_assert(std::numeric_limits<float>::is_iec559, "binary word2vec files hold IEEE floats");
    const std::size_t count = layout.rows.size();
    const std::size_t dim = layout.dim;
    const std::size_t threads = threads_for_bytes(count * dim * (sizeof(float) + sizeof(T)));
    parallel_ranges(count, threads, [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            const char* source = data + layout.rows[i].offset;
            T* row = out + i * dim;
            if constexpr (std::is_same_v<T, float>) {
                std::memcpy(row, source, dim * sizeof(float));
            } else {
                for (std::size_t j = 0; j < dim; ++j) {
                    float value;
                    std::memcpy(&value, source + j * sizeof(float), sizeof(float));
                    row[j] = static_cast<T>(value);
                }
            }
        }
    });
}

}  // namespace fastembed
