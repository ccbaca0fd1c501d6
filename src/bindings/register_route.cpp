// Routing of a row-sharded table (kernels/route.hpp): ids to shard buckets, rows back to positions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
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

// (local, positions, offsets): the ids bucketed by shard, see route_ids in kernels/route.hpp.
// local has the ids' dtype; an id out of range raises IndexError before anything is computed.
py::tuple route_ids(const py::array& ids, long long num_embeddings, long long num_shards,
                    bool modulo) {
    require_ids(ids);
    require_num_embeddings(num_embeddings);
    if (num_shards < 1 || num_shards > kMaxShards) {
        throw py::value_error("num_shards must be in [1, " + std::to_string(kMaxShards) + "], got " +
                              std::to_string(num_shards));
    }
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
        if (modulo) {
            fastembed::route_ids(id_data, n, shards, ModuloPlacement{shards}, local_ids, position_data,
                                 offset_data);
        } else {
            const std::uint64_t per_shard = rows == 0 ? 1 : (rows + shards - 1) / shards;
            fastembed::route_ids(id_data, n, shards, RangePlacement{per_shard}, local_ids, position_data,
                                 offset_data);
        }
    });
    return py::make_tuple(local, positions, offsets);
}

// out[positions[j]] = source[rows[j]] (source[j] without rows): rows of a shard put back at the
// caller's positions. out is (N, D) and writeable; positions are int64 in [0, N) and distinct.
void place_rows(const py::array& source, const py::array& positions, const py::array& out,
                const std::optional<py::array>& rows) {
    if (source.ndim() != 2 || out.ndim() != 2 || source.shape(1) != out.shape(1)) {
        throw py::value_error("source and out must be 2-d with the same row length, got shapes " +
                              shape_string(source) + " and " + shape_string(out));
    }
    if (!py::isinstance<py::array_t<std::int64_t>>(positions) || positions.ndim() != 1) {
        throw py::type_error("positions must be a 1-d int64 array, got " + dtype_name(positions) +
                             " of shape " + shape_string(positions));
    }
    require_layout(positions, "positions", false);
    const auto n = static_cast<std::size_t>(positions.shape(0));
    if (rows) {
        require_ids(*rows);
        if (rows->ndim() != 1 || static_cast<std::size_t>(rows->shape(0)) != n) {
            throw py::value_error("rows must have the shape of positions, " + shape_string(positions) +
                                  ", got " + shape_string(*rows));
        }
    } else if (static_cast<std::size_t>(source.shape(0)) != n) {
        throw py::value_error("source must have one row per position, " + std::to_string(n) +
                              ", got shape " + shape_string(source));
    }
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
        if (!rows) {
            py::gil_scoped_release release;
            fastembed::place_rows(source_data, dim, [](std::size_t j) { return j; }, position_data, n,
                                  out_data);
            return;
        }
        call_with_ids(*rows, static_cast<std::size_t>(source.shape(0)), [&](const auto* row_data) {
            check_ids(row_data, n, static_cast<std::size_t>(source.shape(0)));
            fastembed::place_rows(source_data, dim,
                                  [row_data](std::size_t j) { return static_cast<std::size_t>(row_data[j]); },
                                  position_data, n, out_data);
        });
    });
}

}  // namespace

void register_route(py::module_& m) {
    m.def("route_ids", &route_ids, py::arg("ids"), py::arg("num_embeddings"), py::arg("num_shards"),
          py::arg("modulo"));
    m.def("place_rows", &place_rows, py::arg("source"), py::arg("positions"), py::arg("out"),
          py::arg("rows") = py::none());
}

}  // namespace fastembed::bindings
