// Routing of a row-sharded table (kernels/route.hpp): ids to shard buckets, rows back to positions.
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

// Rows that shard s holds (python/fastembed/distributed/layout.py says the same).
std::uint64_t rows_of_shard(std::uint64_t rows, std::uint64_t shards, std::uint64_t s, bool modulo) {
    if (modulo) return rows > s ? (rows - 1 - s) / shards + 1 : 0;
    const std::uint64_t per_shard = rows == 0 ? 1 : (rows + shards - 1) / shards;
    const std::uint64_t begin = std::min(rows, s * per_shard);
    return std::min(rows, begin + per_shard) - begin;
}

void require_num_shards(long long num_shards) {
    if (num_shards < 1 || num_shards > kMaxShards) {
        throw py::value_error("num_shards must be in [1, " + std::to_string(kMaxShards) + "], got " +
                              std::to_string(num_shards));
    }
}

// (local, positions, offsets): the ids bucketed by shard, see route_ids in kernels/route.hpp.
// local has the ids' dtype; an id out of range raises IndexError before anything is computed.
py::tuple route_ids(const py::array& ids, long long num_embeddings, long long num_shards,
                    bool modulo) {
    require_ids(ids);
    require_num_embeddings(num_embeddings);
    require_num_shards(num_shards);
    const auto rows = static_cast<std::uint64_t>(num_embeddings);
    const auto shards = static_cast<std::uint64_t>(num_shards);
    const auto n = static_cast<std::size_t>(ids.size());
    py::array positions = new_result(py::dtype::of<std::int64_t>(), {static_cast<py::ssize_t>(n)});
    py::array offsets = new_result(py::dtype::of<std::int64_t>(), {static_cast<py::ssize_t>(num_shards + 1)});
    py::array local = new_result(ids.dtype(), {static_cast<py::ssize_t>(n)});
    auto* position_data = static_cast<std::int64_t*>(positions.mutable_data());
    auto* offset_data = static_cast<std::int64_t*>(offsets.mutable_data());
    void* local_data = local.mutable_data();
    call_with_ids(ids, static_cast<std::size_t>(rows), [&](const auto* id_data) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(id_data)>>;
        check_ids(id_data, n, static_cast<std::size_t>(rows));
        I* local_ids = static_cast<I*>(local_data);
        with_placement(rows, shards, modulo, [&](const auto& placement) {
            fastembed::route_ids(id_data, n, shards, placement, local_ids, position_data, offset_data);
        });
    });
    return py::make_tuple(local, positions, offsets);
}

// out[positions[j]] = source[j]: the rows a shard looked up put back at the caller's positions.
// out is (N, D) and writeable; positions are int64 in [0, N) and distinct.
void place_rows(const py::array& source, const py::array& positions, const py::array& out) {
    if (source.ndim() != 2 || out.ndim() != 2 || source.shape(1) != out.shape(1)) {
        throw py::value_error("source and out must be 2-d with the same row length, got shapes " +
                              shape_string(source) + " and " + shape_string(out));
    }
    if (!py::isinstance<py::array_t<std::int64_t>>(positions) || positions.ndim() != 1 ||
        positions.shape(0) != source.shape(0)) {
        throw py::value_error("positions must be 1-d int64 with one entry per row of source, got " +
                              dtype_name(positions) + " of shape " + shape_string(positions));
    }
    require_layout(positions, "positions", false);
    const auto n = static_cast<std::size_t>(positions.shape(0));
    dispatch_float(source, "source", [&](auto float_tag) {
        using T = typename decltype(float_tag)::type;
        require_dtype<T>(out, "out", "source");
        require_layout(source, "source", false);
        require_layout(out, "out", true);
        require_disjoint(out, "out", source, "source");
        require_disjoint(out, "out", positions, "positions");
        const T* source_data = static_cast<const T*>(source.data());
        T* out_data = static_cast<T*>(py::array(out).mutable_data());
        const auto dim = static_cast<std::size_t>(source.shape(1));
        const auto* position_data = static_cast<const std::int64_t*>(positions.data());
        call_with_ids(positions, static_cast<std::size_t>(out.shape(0)), [&](const auto* checked) {
            check_ids(checked, n, static_cast<std::size_t>(out.shape(0)));
        });
        py::gil_scoped_release release;
        fastembed::place_rows(source_data, dim, [](std::size_t j) { return j; }, position_data, n, out_data);
    });
}

// out (N, D) = the rows of ids (any shape, N = ids.size) read from the shards' tables, which
// hold the rows of a (num_embeddings, D) table placed on len(tables) shards. Every id is checked
// (IndexError) and every table's shape (ValueError: the rows its placement gives it) first.
void gather_sharded(const std::vector<py::array>& tables, const py::array& ids, const py::array& out,
                    long long num_embeddings, bool modulo) {
    require_ids(ids);
    require_num_embeddings(num_embeddings);
    require_num_shards(static_cast<long long>(tables.size()));
    const auto rows = static_cast<std::uint64_t>(num_embeddings);
    const auto shards = static_cast<std::uint64_t>(tables.size());
    const auto n = static_cast<std::size_t>(ids.size());
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
    m.def("route_ids", &route_ids, py::arg("ids"), py::arg("num_embeddings"), py::arg("num_shards"),
          py::arg("modulo"));
    m.def("place_rows", &place_rows, py::arg("source"), py::arg("positions"), py::arg("out"));
    m.def("gather_sharded", &gather_sharded, py::arg("tables"), py::arg("ids"), py::arg("out"),
          py::arg("num_embeddings"), py::arg("modulo"));
    m.def("check_ids", &check_ids_in_range, py::arg("ids"), py::arg("num_embeddings"));
}

}  // namespace fastembed::bindings
