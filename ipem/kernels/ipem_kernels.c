/* ipem_kernels.c -- compiled E-step kernels of ipem (k-means, diagonal and
 * full-covariance GMMs), called through cffi from ipem/kernels/_c.py (its
 * modules _c_kmeans.py and _c_gmm.py).
 *
 * Semantics are those of the NumPy reference (ipem/kernels/_numpy.py):
 * frames are shifted by `shift` chunk by chunk in the dtype of X, matrix
 * products run in the dtype of X, statistics are accumulated in float64,
 * and memory beyond the data is O(chunk * K).  The C API and its
 * conventions are in ipem_kernels.h.
 *
 * This file holds what is not a kernel: vector types, aligned allocation,
 * the copies of the kernels per instruction set, the instruction-set
 * selection, the table of which level has which kernel, and the public
 * entry points (one macro per float32/float64 pair).  The kernels:
 *   ipem_kernels_impl.h  the generic code, compiled once per (instruction
 *                        set, dtype): element-wise work in GCC/clang vector
 *                        extensions, matrix products on scipy's BLAS
 *                        (ipem_vector_impl.h, ipem_kmeans_impl.h,
 *                        ipem_diag_impl.h, ipem_full_impl.h);
 *   ipem_fused_avx512.h  float32 kernels for AVX-512 with their own
 *                        register-tiled products (diag GMM, k-means with
 *                        bounds, k-means++ trials);
 *   ipem_parallel.h      the worker threads.
 * Frame weights s_n (sample_weight, optional): NULL runs the unweighted code
 * unchanged; otherwise s_n scales what a frame adds to the statistics and
 * the total log-likelihood, and a frame with s_n == 0 adds exactly nothing,
 * even where its per-frame values are not finite (its rows are zeroed, not
 * multiplied).  Per-frame outputs are never weighted.
 *
 * Instruction sets: the element-wise code is compiled three times
 * (baseline, AVX2+FMA, AVX-512) through target pragmas; the best level the
 * CPU supports is picked at load time (ipem_set_isa / IPEM_KERNEL_ISA can
 * lower it).  No -march=native: the same binary runs on any x86-64.  BLAS
 * ?gemm comes from scipy (function pointers from scipy.linalg.cython_blas,
 * handed over by _clib.py).  No -ffast-math: the reductions are explicit
 * vector code, and inf/NaN handling must stay IEEE.
 *
 * Measurements (rates against the GEMM roofline, chunk sizes, the fused
 * kernels against the BLAS code): benchmarks/RESULTS.md, and the command
 * `python benchmarks/kernel_timing.py --sklearn`.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ipem_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#if !defined(__GNUC__) && !defined(__clang__)
#error "ipem's kernels need the GCC/clang vector extensions"
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define IPEM_INLINE inline __attribute__((always_inline))
#define IPEM_CAT3_(a, b, c) a##_##b##_##c
#define IPEM_CAT3(a, b, c) IPEM_CAT3_(a, b, c)
#define IPEM_ROUND_UP(x, m) ((((x) + (m)-1) / (m)) * (m))

typedef float ipem_v4f __attribute__((vector_size(16)));
typedef float ipem_v8f __attribute__((vector_size(32)));
typedef float ipem_v16f __attribute__((vector_size(64)));
typedef int32_t ipem_v4i __attribute__((vector_size(16)));
typedef int32_t ipem_v8i __attribute__((vector_size(32)));
typedef int32_t ipem_v16i __attribute__((vector_size(64)));
typedef double ipem_v2d __attribute__((vector_size(16)));
typedef double ipem_v4d __attribute__((vector_size(32)));
typedef double ipem_v8d __attribute__((vector_size(64)));
typedef int64_t ipem_v2l __attribute__((vector_size(16)));
typedef int64_t ipem_v4l __attribute__((vector_size(32)));
typedef int64_t ipem_v8l __attribute__((vector_size(64)));

static ipem_sgemm_fn g_sgemm = NULL;
static ipem_dgemm_fn g_dgemm = NULL;

/* 64-byte aligned allocations (portable: no posix_memalign). */
static void *ipem_malloc(size_t bytes)
{
    char *raw = (char *)malloc(bytes + 64 + sizeof(void *));
    if (!raw)
        return NULL;
    uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = raw;
    return (void *)p;
}

static void *ipem_calloc(size_t bytes)
{
    void *p = ipem_malloc(bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static void ipem_free(void *p)
{
    if (p)
        free(((void **)p)[-1]);
}

#include "ipem_parallel.h"

/* ---- one copy of the kernels per instruction set and dtype ---- */
#define IPEM_ISA base
#define IPEM_VBYTES 16
#define IPEM_F64 0
#include "ipem_kernels_impl.h"
#undef IPEM_F64
#define IPEM_F64 1
#include "ipem_kernels_impl.h"
#undef IPEM_F64
#undef IPEM_ISA
#undef IPEM_VBYTES

#if (defined(__x86_64__) || defined(_M_X64)) &&                                     \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8) ||                   \
     (defined(__clang__) && __clang_major__ >= 9))
#define IPEM_X86_MULTI 1

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define IPEM_ISA avx2
#define IPEM_VBYTES 32
#define IPEM_F64 0
#include "ipem_kernels_impl.h"
#undef IPEM_F64
#define IPEM_F64 1
#include "ipem_kernels_impl.h"
#undef IPEM_F64
#undef IPEM_ISA
#undef IPEM_VBYTES
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif
#define IPEM_ISA avx512
#define IPEM_VBYTES 64
#define IPEM_F64 0
#include "ipem_kernels_impl.h"
#include "ipem_fused_avx512.h"
#undef IPEM_F64
#define IPEM_F64 1
#include "ipem_kernels_impl.h"
#undef IPEM_F64
#undef IPEM_ISA
#undef IPEM_VBYTES
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif /* x86 multi-versioning */

/* ---- instruction-set selection ---- */
static int g_isa = -1;

int ipem_isa_available(void)
{
    int mask = 1 << IPEM_ISA_BASE;
#ifdef IPEM_X86_MULTI
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        mask |= 1 << IPEM_ISA_AVX2;
        if (__builtin_cpu_supports("avx512f"))
            mask |= 1 << IPEM_ISA_AVX512;
    }
#endif
    return mask;
}

int ipem_set_isa(int level)
{
    int mask = ipem_isa_available();
    if (level > IPEM_ISA_AVX512)
        level = IPEM_ISA_AVX512;
    while (level > IPEM_ISA_BASE && !(mask & (1 << level)))
        level--;
    if (level < IPEM_ISA_BASE)
        level = IPEM_ISA_BASE;
    g_isa = level;
    return level;
}

int ipem_get_isa(void)
{
    if (g_isa < 0)
        ipem_set_isa(IPEM_ISA_AVX512);
    return g_isa;
}

void ipem_set_blas(ipem_sgemm_fn sgemm, ipem_dgemm_fn dgemm)
{
    g_sgemm = sgemm;
    g_dgemm = dgemm;
}

/* ---- which level has which kernel: the one table ----
 * BLAS: the copy of ipem_kernels_impl.h compiled for that level; FUSED: the
 * float32 AVX-512 kernels of ipem_fused_avx512.h; NONE: no implementation
 * (the entry point returns IPEM_ERR_ARGS; _isa.py asks ipem_kernel_impl first
 * and falls back).  The entry points below dispatch through this table. */
enum { N_ = IPEM_IMPL_NONE, B_ = IPEM_IMPL_BLAS, F_ = IPEM_IMPL_FUSED };
static const signed char g_impl[IPEM_N_KERNELS][2][3] = {
    /*                           float32: base avx2 avx512   float64: base avx2 avx512 */
    [IPEM_KERNEL_KMEANS]         = {{B_, B_, F_}, {B_, B_, B_}},
    [IPEM_KERNEL_KMEANS_BOUNDED] = {{N_, N_, F_}, {N_, N_, N_}},
    [IPEM_KERNEL_KMEANS_PP]      = {{N_, N_, F_}, {N_, N_, N_}},
    [IPEM_KERNEL_GMM_DIAG]       = {{B_, B_, F_}, {B_, B_, B_}},
    [IPEM_KERNEL_GMM_DIAG_TOPC]  = {{B_, B_, B_}, {B_, B_, B_}},
    [IPEM_KERNEL_GMM_FULL]       = {{B_, B_, B_}, {B_, B_, B_}},
};

int ipem_kernel_impl(int kernel, int f64, int isa)
{
    if (kernel < 0 || kernel >= IPEM_N_KERNELS)
        return IPEM_IMPL_NONE;
    if (isa < 0)
        isa = ipem_get_isa();
    if (isa > IPEM_ISA_AVX512)
        return IPEM_IMPL_NONE;
    return g_impl[kernel][f64 != 0][isa];
}

/* ---- public entry points: dispatch through the table ---- */
/* The generic copy `name_sfx_<isa>` of the level in use. */
#ifdef IPEM_X86_MULTI
#define IPEM_GENERIC(name, sfx, args)                                                    \
    switch (ipem_get_isa()) {                                                            \
    case IPEM_ISA_AVX512:                                                                \
        return name##_##sfx##_avx512 args;                                               \
    case IPEM_ISA_AVX2:                                                                  \
        return name##_##sfx##_avx2 args;                                                 \
    default:                                                                             \
        return name##_##sfx##_base args;                                                 \
    }
#define IPEM_FUSED(call) return call;
#else
#define IPEM_GENERIC(name, sfx, args) return name##_##sfx##_base args;
#define IPEM_FUSED(call) return IPEM_ERR_ARGS;
#endif

/* Run `kernel` as the table says: the fused call, the generic copy, or none. */
#define IPEM_RUN(kernel, f64, name, sfx, args, fused_call)                               \
    switch (ipem_kernel_impl(kernel, f64, -1)) {                                         \
    case IPEM_IMPL_FUSED:                                                                \
        IPEM_FUSED(fused_call)                                                           \
    case IPEM_IMPL_BLAS:                                                                 \
        IPEM_GENERIC(name, sfx, args)                                                    \
    default:                                                                             \
        return IPEM_ERR_ARGS;                                                            \
    }

/* Stands for the fused kernel of a dtype that has none (the table never
 * selects it): IPEM_NO_FUSED(args...) is IPEM_ERR_ARGS. */
#define IPEM_NO_FUSED(...) IPEM_ERR_ARGS

#define IPEM_CHECK(gemm)                                                                 \
    if (!(gemm))                                                                         \
        return IPEM_ERR_NOBLAS;                                                          \
    if (n < 0 || d < 1 || k < 1 || ldx < d || chunk < 1)                                 \
        return IPEM_ERR_ARGS;

/* Each macro below defines the float32 (sfx f32, REAL float) or the float64
 * entry point of one kernel; `gemm` is the BLAS it needs, `fused` the fused
 * kernel of that dtype or IPEM_NO_FUSED.  Signatures: ipem_kernels.h. */
#define IPEM_DEFINE_VEXP(sfx, REAL)                                                      \
    void ipem_vexp_##sfx(int64_t n, const REAL *x, REAL *out)                            \
    {                                                                                    \
        IPEM_VEXP_DISPATCH(sfx, (n, x, out))                                             \
    }
#ifdef IPEM_X86_MULTI
#define IPEM_VEXP_DISPATCH(sfx, args)                                                    \
    switch (ipem_get_isa()) {                                                            \
    case IPEM_ISA_AVX512:                                                                \
        vexp_array_##sfx##_avx512 args;                                                  \
        break;                                                                           \
    case IPEM_ISA_AVX2:                                                                  \
        vexp_array_##sfx##_avx2 args;                                                    \
        break;                                                                           \
    default:                                                                             \
        vexp_array_##sfx##_base args;                                                    \
    }
#else
#define IPEM_VEXP_DISPATCH(sfx, args) vexp_array_##sfx##_base args;
#endif

#define IPEM_DEFINE_KMEANS(sfx, REAL, f64, gemm, fused)                                  \
    int ipem_kmeans_##sfx(int64_t n, int64_t d, int64_t k, const REAL *X, int64_t ldx,   \
                          const REAL *shift, const REAL *C, const REAL *csq,             \
                          int64_t chunk, const double *sample_weight, int64_t *labels,   \
                          double *mindist, double *counts, double *sums,                 \
                          double *inertia, int n_threads)                                \
    {                                                                                    \
        IPEM_CHECK(gemm)                                                                 \
        (void)n_threads;                                                                 \
        IPEM_RUN(IPEM_KERNEL_KMEANS, f64, kmeans, sfx,                                   \
                 (n, d, k, X, ldx, shift, C, csq, chunk, sample_weight, labels, mindist, \
                  counts, sums, inertia),                                                \
                 fused(n, d, k, X, ldx, shift, C, csq, chunk, sample_weight, labels,     \
                       mindist, NULL, NULL, NULL, NULL, 0.0, counts, sums, inertia,      \
                       NULL, NULL, n_threads))                                           \
    }

#define IPEM_DEFINE_GMM_DIAG(sfx, REAL, f64, gemm, fused)                                \
    int ipem_gmm_diag_##sfx(int64_t n, int64_t d, int64_t k, const REAL *X,              \
                            int64_t ldx, const REAL *shift, const REAL *W, int64_t chunk, \
                            const double *sample_weight, double *logprob_out,            \
                            void *resp_out, int resp_f64, int compute_stats,             \
                            double *acc, double *loglik, int64_t top_c, double min_post, \
                            int n_threads)                                               \
    {                                                                                    \
        IPEM_CHECK(gemm)                                                                 \
        (void)n_threads;                                                                 \
        IPEM_RUN(IPEM_KERNEL_GMM_DIAG, f64, gmm_diag, sfx,                               \
                 (n, d, k, X, ldx, shift, W, chunk, sample_weight, logprob_out,          \
                  resp_out, resp_f64, compute_stats, acc, loglik, top_c, min_post),      \
                 fused(n, d, k, X, ldx, shift, W, chunk, sample_weight, logprob_out,     \
                       resp_out, resp_f64, compute_stats, acc, loglik, top_c, min_post,  \
                       n_threads))                                                       \
    }

#define IPEM_DEFINE_GMM_DIAG_TOPC(sfx, REAL, f64, gemm)                                  \
    int ipem_gmm_diag_topc_##sfx(int64_t n, int64_t d, int64_t k, const REAL *X,         \
                                 int64_t ldx, const REAL *shift, const REAL *W,          \
                                 int64_t top_c, int64_t chunk, int64_t *index_out,       \
                                 double *logprob_out)                                    \
    {                                                                                    \
        IPEM_CHECK(gemm)                                                                 \
        if (top_c < 1 || top_c > k)                                                      \
            return IPEM_ERR_ARGS;                                                        \
        IPEM_RUN(IPEM_KERNEL_GMM_DIAG_TOPC, f64, gmm_diag_topc, sfx,                     \
                 (n, d, k, X, ldx, shift, W, top_c, chunk, index_out, logprob_out),      \
                 IPEM_NO_FUSED())                                                        \
    }

#define IPEM_DEFINE_GMM_FULL(sfx, REAL, f64, gemm)                                       \
    int ipem_gmm_full_##sfx(int64_t n, int64_t d, int64_t k, const REAL *X, int64_t ldx, \
                            const REAL *shift, const REAL *U, int64_t dp,                \
                            const double *cst, int64_t chunk, int64_t kblock,            \
                            const double *sample_weight, double *logprob_out,            \
                            void *resp_out, int resp_f64, int compute_stats,             \
                            double *acc, double *loglik, int n_threads)                  \
    {                                                                                    \
        IPEM_CHECK(gemm)                                                                 \
        if (dp < d || dp % 8 || kblock < 1)                                              \
            return IPEM_ERR_ARGS;                                                        \
        IPEM_RUN(IPEM_KERNEL_GMM_FULL, f64, gmm_full, sfx,                               \
                 (n, d, k, X, ldx, shift, U, dp, cst, chunk, kblock, sample_weight,      \
                  logprob_out, resp_out, resp_f64, compute_stats, acc, loglik,           \
                  n_threads),                                                            \
                 IPEM_NO_FUSED())                                                        \
    }

IPEM_DEFINE_VEXP(f32, float)
IPEM_DEFINE_VEXP(f64, double)
/* (without IPEM_X86_MULTI, IPEM_FUSED drops the fused call unexpanded) */
IPEM_DEFINE_KMEANS(f32, float, 0, g_sgemm, kmeans_fused_f32_avx512)
IPEM_DEFINE_KMEANS(f64, double, 1, g_dgemm, IPEM_NO_FUSED)
IPEM_DEFINE_GMM_DIAG(f32, float, 0, g_sgemm, gmm_diag_fused_f32_avx512)
IPEM_DEFINE_GMM_DIAG(f64, double, 1, g_dgemm, IPEM_NO_FUSED)
IPEM_DEFINE_GMM_DIAG_TOPC(f32, float, 0, g_sgemm)
IPEM_DEFINE_GMM_DIAG_TOPC(f64, double, 1, g_dgemm)
IPEM_DEFINE_GMM_FULL(f32, float, 0, g_sgemm)
IPEM_DEFINE_GMM_FULL(f64, double, 1, g_dgemm)

/* The float32-only kernels (fused AVX-512; no generic copy). */
int ipem_kmeans_bounded_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                            const float *shift, const float *C, const float *csq,
                            int64_t chunk, const double *sample_weight, int64_t *labels,
                            double *mindist, double *upper, double *lower,
                            const double *drift, const double *half_sep, double cnorm,
                            double *counts, double *sums, double *inertia,
                            int64_t *n_changed, int64_t *n_full, int n_threads)
{
    IPEM_CHECK(g_sgemm)
    if (!upper || !lower || !half_sep)
        return IPEM_ERR_ARGS;
    if (ipem_kernel_impl(IPEM_KERNEL_KMEANS_BOUNDED, 0, -1) != IPEM_IMPL_FUSED)
        return IPEM_ERR_ARGS; /* no bounded kernel at this level */
    (void)drift, (void)cnorm, (void)n_changed, (void)n_full, (void)n_threads;
    IPEM_FUSED(kmeans_fused_f32_avx512(n, d, k, X, ldx, shift, C, csq, chunk, sample_weight,
                                       labels, mindist, upper, lower, drift, half_sep, cnorm,
                                       counts, sums, inertia, n_changed, n_full, n_threads))
}

int ipem_kmeans_pp_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                       const float *shift, const float *C, const float *csq,
                       const double *closest, const double *sample_weight, double *dist_out,
                       double *pots, int n_threads)
{
    const int64_t chunk = 1;
    IPEM_CHECK(g_sgemm)
    if (k > 16)
        return IPEM_ERR_ARGS;
    if (ipem_kernel_impl(IPEM_KERNEL_KMEANS_PP, 0, -1) != IPEM_IMPL_FUSED)
        return IPEM_ERR_ARGS; /* no compiled version at this level */
    (void)closest, (void)dist_out, (void)pots, (void)n_threads;
    IPEM_FUSED(kmeans_pp_f32_avx512(n, d, k, X, ldx, shift, C, csq, closest, sample_weight,
                                    dist_out, pots, n_threads))
}
