#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/register.hpp"
#include "kernels/gather.hpp"

namespace fastembed::bindings {

namespace {

py::array gather(const py::array& weight, const py::array& ids, const std::optional<py::array>& out) {
    if (weight.ndim() != 2) {
        throw py::value_error("weight must be 2-d (num_embeddings, embedding_dim), got shape " +
                              shape_string(weight));
    }
    require_ids(ids);
    return dispatch_float(weight, "weight", [&](auto float_tag) {
        using T = typename decltype(float_tag)::type;
        require_layout(weight, "weight", false);
        std::vector<py::ssize_t> shape(ids.shape(), ids.shape() + ids.ndim());
        shape.push_back(weight.shape(1));
        py::array result = output_array<T>(out, shape, {{&weight, "weight"}, {&ids, "ids"}});
        const auto num_embeddings = static_cast<std::size_t>(weight.shape(0));
        const auto dim = static_cast<std::size_t>(weight.shape(1));
        const auto n = static_cast<std::size_t>(ids.size());
        const T* table = static_cast<const T*>(weight.data());
        T* destination = static_cast<T*>(result.mutable_data());
        dispatch_ids(ids, [&](auto id_tag) {
            using I = typename decltype(id_tag)::type;
            const I* id_data = static_cast<const I*>(ids.data());
            try {
                py::gil_scoped_release release;
                gather_rows(table, num_embeddings, dim, id_data, n, destination);
            } catch (const IdOutOfRange& e) {
                throw py::index_error(id_error_message(ids, e.position, e.id, num_embeddings));
            }
        });
        return result;
    });
}

}  // namespace

void register_gather(py::module_& m) {
    m.def("gather", &gather, py::arg("weight"), py::arg("ids"), py::arg("out") = py::none());
}

}  // namespace fastembed::bindings
