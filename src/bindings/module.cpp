#include <pybind11/pybind11.h>

#include "bindings/register.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "fastembed's compiled kernels; use the functions re-exported by the fastembed package.";
    fastembed::bindings::register_threads(m);
    fastembed::bindings::register_host(m);
    fastembed::bindings::register_gather(m);
    fastembed::bindings::register_scatter(m);
    fastembed::bindings::register_sparse(m);
    fastembed::bindings::register_memory(m);
    fastembed::bindings::register_bag(m);
    fastembed::bindings::register_optim(m);
    fastembed::bindings::register_word2vec(m);
    fastembed::bindings::register_route(m);
    fastembed::bindings::register_text(m);
    fastembed::bindings::register_topk(m);
    fastembed::bindings::register_quantize(m);
}
