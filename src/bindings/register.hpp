// One registration function per concept; module.cpp calls each once.
#pragma once

#include <pybind11/pybind11.h>

namespace fastembed::bindings {

void register_threads(pybind11::module_& m);
void register_host(pybind11::module_& m);
void register_gather(pybind11::module_& m);
void register_scatter(pybind11::module_& m);
void register_sparse(pybind11::module_& m);
void register_memory(pybind11::module_& m);
void register_bag(pybind11::module_& m);
void register_optim(pybind11::module_& m);
void register_word2vec(pybind11::module_& m);
void register_route(pybind11::module_& m);
void register_text(pybind11::module_& m);
void register_topk(pybind11::module_& m);
void register_quantize(pybind11::module_& m);

}  // namespace fastembed::bindings
