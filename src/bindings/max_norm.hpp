// PyTorch's max_norm for the bindings that look rows up (gather, embedding_bag): the argument
// checks and the error for a read-only table whose looked-up rows would have to change.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "kernels/renorm.hpp"

namespace fastembed::bindings {

namespace py = pybind11;

// max_norm > 0 (infinity allowed: nothing is ever renormalised); norm_type > 0 or infinity.
inline void require_norm_options(double max_norm, double norm_type) {
    if (!(max_norm > 0.0)) {
        throw py::value_error("max_norm must be > 0, got " + std::string(py::str(py::float_(max_norm))));
    }
    if (!(norm_type > 0.0)) {
        throw py::value_error("norm_type must be > 0 (or inf), got " +
                              std::string(py::str(py::float_(norm_type))));
    }
}

// Runs `lookup()` (which may call renorm_rows, with the GIL released inside it); a read-only
// table that renorm_rows refused becomes a ValueError naming the row. Call it holding the GIL:
// the message is built from Python floats.
template <class Lookup>
decltype(auto) refusing_renorm_of_read_only(double max_norm, Lookup&& lookup) {
    try {
        return lookup();
    } catch (const RenormOfReadOnlyTable& e) {
        throw py::value_error("weight is read-only, but row " + std::to_string(e.id) + " has norm " +
                              std::string(py::str(py::float_(e.norm))) + " > max_norm=" +
                              std::string(py::str(py::float_(max_norm))) +
                              " and would be renormalised in place; nothing was written");
    }
}

}  // namespace fastembed::bindings
