// The block product of the top-k search, by the OpenBLAS of the scipy-openblas32 wheel (its
// symbols carry a scipy_ prefix, so it never clashes with the BLAS NumPy or SciPy loaded).
//
// OpenBLAS runs single-threaded here: the search calls it from fastembed's own pool, one block
// per task, so its results cannot depend on how many threads OpenBLAS would have used, and the
// two pools do not compete for the cores.
#pragma once

#include <cblas.h>

#include <cstddef>

namespace fastembed {

// c[i * n + j] = dot(a[i, :], b[j, :]) for row-major a (m, dim) and b (n, dim); dim >= 1 and every
// size below 2^31 (the wheel's BLAS takes 32-bit sizes).
struct BlasProduct {
    void operator()(const float* a, std::size_t m, const float* b, std::size_t n, std::size_t dim,
                    float* c) const {
        scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m),
                          static_cast<blasint>(n), static_cast<blasint>(dim), 1.0f, a,
                          static_cast<blasint>(dim), b, static_cast<blasint>(dim), 0.0f, c,
                          static_cast<blasint>(n));
    }
    void operator()(const double* a, std::size_t m, const double* b, std::size_t n,
                    std::size_t dim, double* c) const {
        scipy_cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m),
                          static_cast<blasint>(n), static_cast<blasint>(dim), 1.0, a,
                          static_cast<blasint>(dim), b, static_cast<blasint>(dim), 0.0, c,
                          static_cast<blasint>(n));
    }
};

// OpenBLAS computes each call on the calling thread (a process-wide setting of this library,
// which only fastembed uses).
inline void use_single_threaded_blas() { scipy_openblas_set_num_threads(1); }

}  // namespace fastembed
