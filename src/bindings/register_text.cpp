#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/register.hpp"
#include "kernels/format_vectors.hpp"
#include "kernels/parse_vectors.hpp"

namespace fastembed::bindings {

namespace {

// The keys as a list of str (already checked to be valid UTF-8).
py::list key_strings(const char* data, const std::vector<Span>& keys) {
    py::list strings(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
        PyObject* key = PyUnicode_DecodeUTF8(data + keys[i].offset,
                                             static_cast<py::ssize_t>(keys[i].size), "strict");
        if (key == nullptr) throw py::error_already_set();
        PyList_SET_ITEM(strings.ptr(), static_cast<py::ssize_t>(i), key);
    }
    return strings;
}

template <class T>
py::tuple read_vectors(const char* data, std::size_t size, bool binary, bool no_header,
                       std::size_t limit) {
    try {
        VectorsLayout layout;
        {
            py::gil_scoped_release release;
            layout = binary ? scan_binary(data, size, limit)
                            : scan_text(data, size, no_header, limit);
        }
        const std::size_t count = layout.rows.size();
        py::array vectors = new_result(
            py::dtype::of<T>(),
            {static_cast<py::ssize_t>(count), static_cast<py::ssize_t>(layout.dim)});
        T* out = static_cast<T*>(vectors.mutable_data());
        if (!binary) layout.keys.resize(count);
        {
            py::gil_scoped_release release;
            if (binary) {
                copy_binary_rows(data, layout, out);
            } else {
                parse_text_rows(data, layout, out, layout.keys.data());
            }
        }
        return py::make_tuple(key_strings(data, layout.keys), vectors);
    } catch (const VectorsFileError& error) {
        throw py::value_error(error.what());
    }
}

py::tuple read_word2vec(const py::buffer& file, bool binary, bool no_header,
                        std::optional<std::size_t> limit, const py::dtype& dtype) {
    const py::buffer_info info = file.request();
    if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1) {
        throw py::value_error("file must be a contiguous buffer of bytes");
    }
    const auto* data = static_cast<const char*>(info.ptr);
    const auto size = static_cast<std::size_t>(info.size);
    const std::size_t wanted = limit.value_or(kNoLimit);
    if (dtype.is(py::dtype::of<float>())) {
        return read_vectors<float>(data, size, binary, no_header, wanted);
    }
    if (dtype.is(py::dtype::of<double>())) {
        return read_vectors<double>(data, size, binary, no_header, wanted);
    }
    throw py::type_error("dtype must be float32 or float64, got " + std::string(py::str(dtype)));
}

py::bytes format_word2vec_text(const std::vector<std::string>& keys, const py::array& vectors) {
    if (vectors.ndim() != 2 || static_cast<std::size_t>(vectors.shape(0)) != keys.size()) {
        throw py::value_error("vectors must have shape (len(keys), dim), got " +
                              shape_string(vectors) + " for " + std::to_string(keys.size()) +
                              " keys");
    }
    return dispatch_float(vectors, "vectors", [&](auto float_tag) {
        using T = typename decltype(float_tag)::type;
        require_layout(vectors, "vectors", false);
        const std::vector<std::string_view> key_views(keys.begin(), keys.end());
        const T* rows = static_cast<const T*>(vectors.data());
        const auto dim = static_cast<std::size_t>(vectors.shape(1));
        std::string text;
        {
            py::gil_scoped_release release;
            text = format_text_rows(key_views, rows, dim);
        }
        return py::bytes(text);
    });
}

}  // namespace

void register_text(py::module_& m) {
    m.def("read_word2vec", &read_word2vec, py::arg("file"), py::arg("binary"),
          py::arg("no_header"), py::arg("limit"), py::arg("dtype"));
    m.def("format_word2vec_text", &format_word2vec_text, py::arg("keys"), py::arg("vectors"));
}

}  // namespace fastembed::bindings
