// Routing of a row-sharded table (kernels/route.hpp): distinct ids to shard buckets, rows back to
// positions; ids renamed to rows of the shards' tables laid end to end.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/register.hpp"
#include "kernels/check_ids.hpp"
#include "kernels/route.hpp"

namespace fastembed::bindings {

namespace {

// Shard numbers are held in 32 bits by the routing pass; far more shards than any cluster has.
constexpr long long kMaxShards = 1 << 20;

// Calls f(placement) with the placement of num_embeddings rows on num_shards shards.
template <class F>
void with_placement(std::uint64_t rows, std::uint64_t shards, bool modulo, F&& f) {
    if (modulo) {
        f(ModuloPlacement{Divisor(shards)});
    } else {
        f(RangePlacement{Divisor(rows == 0 ? 1 : (rows + shards - 1) / shards)});
    }
}

// Where each shard's rows start when the shards' tables are laid end to end (num_shards + 1
// entries, the last one the table's rows).
std::vector<std::uint64_t> first_rows(std::uint64_t rows, std::uint64_t shards, bool modulo) {
    std::vector<std::uint64_t> first(shards + 1, 0);
    for (std::uint64_t s = 0; s < shards; ++s) first[s + 1] = first[s] + rows_of_shard(rows, shards, s, modulo);
    return first;
}

// The sizes of a routing call, after checking ids (int32/int64, C-contiguous), num_embeddings
// (>= 0) and num_shards (1..kMaxShards).
struct RouteSizes {
    std::uint64_t rows;
    std::uint64_t shards;
    std::size_t n;  // ids.size
};

RouteSizes route_sizes(const py::array& ids, long long num_embeddings, long long num_shards) {
    require_ids(ids);
    require_num_embeddings(num_embeddings);
    if (num_shards < 1 || num_shards > kMaxShards) {
        throw py::value_error("num_shards must be in [1, " + std::to_string(kMaxShards) + "], got " +
                              std::to_string(num_shards));
    }
    return {static_cast<std::uint64_t>(num_embeddings), static_cast<std::uint64_t>(num_shards),
            static_cast<std::size_t>(ids.size())};
}

// Calls f(concatenated) with the ConcatenatedRows of the placement (first_row must outlive it).
template <class F>
void with_concatenated_rows(std::uint64_t rows, std::uint64_t shards, bool modulo,
                            const std::vector<std::uint64_t>& first_row, F&& f) {
    with_placement(rows, shards, modulo, [&](const auto& placement) {
        f(ConcatenatedRows<std::decay_t<decltype(placement)>>{placement, first_row.data()});
    });
}

// The ids (any shape) renamed to their rows in the shards' tables laid end to end, as a new
// array of the ids' shape and dtype (kernels/route.hpp: ConcatenatedRows). IndexError first.
py::array concatenated_rows(const py::array& ids, long long num_embeddings, long long num_shards,
                            bool modulo) {
    const RouteSizes sizes = route_sizes(ids, num_embeddings, num_shards);
    const std::uint64_t rows = sizes.rows, shards = sizes.shards;
    const std::size_t n = sizes.n;
    std::vector<py::ssize_t> shape(ids.shape(), ids.shape() + ids.ndim());
    py::array renamed = new_result(ids.dtype(), shape);
    void* renamed_data = renamed.mutable_data();
    const std::vector<std::uint64_t> first_row = first_rows(rows, shards, modulo);
    call_with_ids(ids, static_cast<std::size_t>(rows), [&](const auto* id_data) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(id_data)>>;
        check_ids(id_data, n, static_cast<std::size_t>(rows));
        with_concatenated_rows(rows, shards, modulo, first_row, [&](const auto& concatenated) {
            concatenate_rows(id_data, n, concatenated, static_cast<I*>(renamed_data));
        });
    });
    return renamed;
}

// (local, offsets, inverse): the distinct ids bucketed by shard and each position's slot among
// them, see route_distinct in kernels/route.hpp. local has the ids' dtype; an id out of range
// raises IndexError before anything is computed.
py::tuple route_distinct(const py::array& ids, long long num_embeddings, long long num_shards,
                         bool modulo) {
    const RouteSizes sizes = route_sizes(ids, num_embeddings, num_shards);
    const std::uint64_t rows = sizes.rows, shards = sizes.shards;
    const std::size_t n = sizes.n;
    py::array inverse = new_result(py::dtype::of<std::int64_t>(), {static_cast<py::ssize_t>(n)});
    py::array offsets = new_result(py::dtype::of<std::int64_t>(), {static_cast<py::ssize_t>(num_shards + 1)});
    py::array local;
    auto* inverse_data = static_cast<std::int64_t*>(inverse.mutable_data());
    auto* offset_data = static_cast<std::int64_t*>(offsets.mutable_data());
    const std::vector<std::uint64_t> first_row = first_rows(rows, shards, modulo);
    call_with_ids(ids, static_cast<std::size_t>(rows), [&](const auto* id_data) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(id_data)>>;
        check_ids(id_data, n, static_cast<std::size_t>(rows));
        with_concatenated_rows(rows, shards, modulo, first_row, [&](const auto& concatenated) {
            fastembed::route_distinct(id_data, n, rows, shards, concatenated, !modulo, inverse_data,
                                      offset_data, [&](std::size_t distinct) {
                py::gil_scoped_acquire acquire;  // to make the array
                local = new_result(ids.dtype(), {static_cast<py::ssize_t>(distinct)});
                return static_cast<I*>(local.mutable_data());
            });
        });
    });
    return py::make_tuple(local, offsets, inverse);
}

// out[i] = row inverse[i] - offsets[s] of answers[s], for the s with offsets[s] <= inverse[i] <
// offsets[s + 1]: the shards' answers to route_distinct's buckets put back in the caller's order.
void expand_rows(const std::vector<py::array>& answers, const py::array& offsets,
                 const py::array& inverse, const py::array& out) {
    const std::size_t shards = answers.size();
    if (!py::isinstance<py::array_t<std::int64_t>>(offsets) || offsets.ndim() != 1 ||
        static_cast<std::size_t>(offsets.shape(0)) != shards + 1) {
        throw py::value_error("offsets must be 1-d int64 with len(answers) + 1 entries, got " +
                              dtype_name(offsets) + " of shape " + shape_string(offsets));
    }
    if (!py::isinstance<py::array_t<std::int64_t>>(inverse) || inverse.ndim() != 1) {
        throw py::value_error("inverse must be 1-d int64, got " + dtype_name(inverse) + " of shape " +
                              shape_string(inverse));
    }
    if (out.ndim() != 2 || out.shape(0) != inverse.shape(0)) {
        throw py::value_error("out must have shape (len(inverse), D), got " + shape_string(out));
    }
    require_layout(offsets, "offsets", false);
    require_layout(inverse, "inverse", false);
    const auto* offset_data = static_cast<const std::int64_t*>(offsets.data());
    if (offset_data[0] != 0) throw py::value_error("offsets[0] must be 0");
    dispatch_float(out, "out", [&](auto float_tag) {
        using T = typename decltype(float_tag)::type;
        require_layout(out, "out", true);
        std::vector<const T*> pointers(shards);
        for (std::size_t s = 0; s < shards; ++s) {
            const py::array& answer = answers[s];
            require_dtype<T>(answer, "each answer", "out");
            require_layout(answer, "each answer", false);
            const std::int64_t expected = offset_data[s + 1] - offset_data[s];
            if (expected < 0 || answer.ndim() != 2 || answer.shape(0) != expected ||
                answer.shape(1) != out.shape(1)) {
                throw py::value_error("answer " + std::to_string(s) + " has shape " + shape_string(answer) +
                                      ", expected (" + std::to_string(expected) + ", " +
                                      std::to_string(out.shape(1)) + ")");
            }
            require_disjoint(out, "out", answer, "an answer");
            pointers[s] = static_cast<const T*>(answer.data());
        }
        require_disjoint(out, "out", inverse, "inverse");
        const auto n = static_cast<std::size_t>(inverse.shape(0));
        const auto slots = static_cast<std::size_t>(offset_data[shards]);
        T* out_data = static_cast<T*>(py::array(out).mutable_data());
        call_with_ids(inverse, slots, [&](const auto* inverse_data) {
            check_ids(inverse_data, n, slots);
            fastembed::expand_rows(pointers.data(), offset_data, shards,
                                   static_cast<std::size_t>(out.shape(1)), inverse_data, n, out_data);
        });
    });
}

// out (N, D) = the rows of ids (any shape, N = ids.size) read from the shards' tables, which
// hold the rows of a (num_embeddings, D) table placed on len(tables) shards. Every id is checked
// (IndexError) and every table's shape (ValueError: the rows its placement gives it) first.
void gather_sharded(const std::vector<py::array>& tables, const py::array& ids, const py::array& out,
                    long long num_embeddings, bool modulo) {
    const RouteSizes sizes = route_sizes(ids, num_embeddings, static_cast<long long>(tables.size()));
    const std::uint64_t rows = sizes.rows, shards = sizes.shards;
    const std::size_t n = sizes.n;
    if (out.ndim() != 2 || static_cast<std::size_t>(out.shape(0)) != n) {
        throw py::value_error("out must have shape (ids.size, D), got " + shape_string(out));
    }
    dispatch_float(out, "out", [&](auto float_tag) {
        using T = typename decltype(float_tag)::type;
        require_layout(out, "out", true);
        std::vector<const T*> pointers(tables.size());
        for (std::size_t s = 0; s < tables.size(); ++s) {
            const py::array& table = tables[s];
            require_dtype<T>(table, "each shard's table", "out");
            require_layout(table, "each shard's table", false);
            const std::uint64_t held = rows_of_shard(rows, shards, s, modulo);
            if (table.ndim() != 2 || static_cast<std::uint64_t>(table.shape(0)) != held ||
                table.shape(1) != out.shape(1)) {
                throw py::value_error("shard " + std::to_string(s) + "'s table has shape " +
                                      shape_string(table) + ", expected (" + std::to_string(held) +
                                      ", " + std::to_string(out.shape(1)) + ")");
            }
            require_disjoint(out, "out", table, "a shard's table");
            pointers[s] = static_cast<const T*>(table.data());
        }
        T* out_data = static_cast<T*>(py::array(out).mutable_data());
        const auto dim = static_cast<std::size_t>(out.shape(1));
        call_with_ids(ids, static_cast<std::size_t>(rows), [&](const auto* id_data) {
            check_ids(id_data, n, static_cast<std::size_t>(rows));
            with_placement(rows, shards, modulo, [&](const auto& placement) {
                using Rows = ShardedRows<T, std::decay_t<decltype(placement)>>;
                copy_rows_at(Rows{pointers.data(), placement, dim}, rows, dim, id_data, n, out_data);
            });
        });
    });
}

// IndexError for the first id outside [0, num_embeddings), naming it and its position.
void check_ids_in_range(const py::array& ids, long long num_embeddings) {
    require_ids(ids);
    require_num_embeddings(num_embeddings);
    const auto rows = static_cast<std::size_t>(num_embeddings);
    call_with_ids(ids, rows, [&](const auto* id_data) {
        check_ids(id_data, static_cast<std::size_t>(ids.size()), rows);
    });
}

}  // namespace

void register_route(py::module_& m) {
    m.def("concatenated_rows", &concatenated_rows, py::arg("ids"), py::arg("num_embeddings"),
          py::arg("num_shards"), py::arg("modulo"));
    m.def("route_distinct", &route_distinct, py::arg("ids"), py::arg("num_embeddings"),
          py::arg("num_shards"), py::arg("modulo"));
    m.def("expand_rows", &expand_rows, py::arg("answers"), py::arg("offsets"), py::arg("inverse"),
          py::arg("out"));
    m.def("gather_sharded", &gather_sharded, py::arg("tables"), py::arg("ids"), py::arg("out"),
          py::arg("num_embeddings"), py::arg("modulo"));
    m.def("check_ids", &check_ids_in_range, py::arg("ids"), py::arg("num_embeddings"));
}

}  // namespace fastembed::bindings
