/* ipem_kernels.c -- compiled E-step kernels of ipem (k-means, diagonal and
 * full-covariance GMMs), called from ipem/_kernels/_c.py through cffi.
 *
 * Semantics are those of the NumPy reference (ipem/_kernels/_numpy.py):
 * frames are shifted by `shift` chunk by chunk in the dtype of X, matrix
 * products run in the dtype of X, statistics are accumulated in float64,
 * and memory beyond the data is O(chunk * K).
 *
 * Two implementations
 * -------------------
 * float32 with AVX-512 (ipem_fused_avx512.h): the diag-GMM E-step, the
 *   k-means step (optionally with Hamerly distance bounds) and k-means++
 *   trials run their own register-tiled matrix products fused with the
 *   element-wise work (no BLAS call, no (chunk x K) block leaving the core's
 *   L2), skip exact zeros of the posteriors in the statistics, and run on
 *   their own worker threads (ipem_parallel.h).  Everything else (float64,
 *   the baseline and AVX2 levels, the full-covariance kernel) is the BLAS
 *   code below; the full kernel also runs on the worker threads, each
 *   calling a one-thread BLAS.  Work is split in groups of frames whose
 *   float64 partial statistics are added in group order, so results never
 *   depend on the number of threads.
 *
 * Algorithms (BLAS code)
 * ----------------------
 * diag GMM, per chunk of m frames:
 *   Z = [x^2, x, 1] (m x (2d+1));  L = Z W with W = [-prec/2; mu*prec; c]
 *   (one GEMM gives the log-likelihoods with the constant folded in);
 *   row-wise log-sum-exp with a vectorised exp, E = exp(L - rowmax) in place;
 *   Z rows scaled by w_n = 1 / sum_j E_nj, so one GEMM S = E^T (w Z) gives
 *   [sum r x^2, sum r x, sum r] per component; S is added to float64
 *   accumulators once per chunk.
 * full GMM: Y = [x, 1] [U_j; -mu_j U_j]_j for a block of components in one
 *   GEMM (each component's columns padded to dp, a multiple of 8), the
 *   Mahalanobis terms are row sums of squares of Y; log-sum-exp as above,
 *   then the K responsibilities of each frame are normalised in place;
 *   statistics S = R^T Q with Q = [1, x, upper triangle of x x^T]: one GEMM
 *   with d(d+1)/2 instead of d^2 columns per component.
 * top-C selection (UBM scoring): the diag GEMM, then per frame an insertion
 *   into a sorted list of the C best (almost every value is rejected by one
 *   comparison with the current C-th best), log-sum-exp over the C in float64.
 * k-means: G = -2 C X^T (GEMM, k x chunk), d_jn = |c_j|^2 +
 *   G_jn, argmin over j as a vertical vector min with frames in the lanes
 *   (ties -> lowest index, as np.argmin), scatter-add in float64.
 * Frame weights s_n (sample_weight, optional): NULL runs the unweighted code
 *   unchanged.  Otherwise s_n scales what a frame adds to the statistics:
 *   the diag kernel folds it into the row scale of Z (s_n w_n instead of
 *   w_n), the full kernel multiplies the frame's row of R by it after
 *   resp_out was written, k-means adds s_n, s_n x_n and s_n d_n instead of
 *   1, x_n and d_n; the total log-likelihood is sum_n s_n log p(x_n).
 *   Per-frame outputs (labels, mindist, logprob_out, resp_out) are not
 *   weighted.  A frame with s_n == 0 adds exactly nothing, even where its
 *   per-frame values are not finite (its rows are zeroed, not multiplied).
 *
 * Instruction sets: the element-wise code is written with GCC/clang vector
 * extensions and compiled three times (baseline, AVX2+FMA, AVX-512) through
 * target pragmas; the best level the CPU supports is picked at load time
 * (ipem_set_isa / IPEM_KERNEL_ISA can lower it).  No -march=native: the same
 * binary runs on any x86-64.  BLAS ?gemm comes from scipy (function pointers
 * from scipy.linalg.cython_blas, handed over by _c.py).  No -ffast-math: the
 * reductions are explicit vector code, and inf/NaN handling must stay IEEE.
 *
 * Measurements of the fused float32 AVX-512 kernels (same machine, quiet,
 * 2 threads; scipy's OpenBLAS at ~100 GFLOP/s per core that day):
 * N=200000, D=60, K=256 diag E-step 0.068 s on clustered frames (posteriors
 * with one non-zero entry: the statistics products are skipped; 140% of the
 * 2-thread GEMM roofline), 0.127 s with dense posteriors (~92%); one thread
 * 0.132 s / 0.248 s against 0.311 / 0.322 s for the BLAS code below.
 * Micro-kernels: 12 frames x 32 components x (2d+1) for the
 * log-likelihoods, 11 features x 32 components for the statistics, 32
 * frames x 8 centres for k-means, each at ~105-110% of OpenBLAS's 1-thread
 * square-GEMM rate on these shapes.
 *
 * Older measurements of the BLAS code (2-core AMD EPYC Zen 5 VM shared with
 * other jobs, AVX-512 path; scipy's OpenBLAS (Haswell kernels); N=200000,
 * D=60, K=256 (full:
 * K=32), float32, median of 3, C and NumPy in the same run, "floor" = the
 * matrix-product flops at the GEMM rate measured in that run; command:
 * python benchmarks/kernel_timing.py --sklearn [--blas-threads 1]):
 *                      2 BLAS threads (249 GFLOP/s)    1 thread (124 GFLOP/s)
 *                      C      NumPy   floor             C      NumPy   floor
 *   diag GMM           0.140  0.380   0.099 (71%)       0.235  0.464   0.198 (84%)
 *   full GMM (K=32)    0.419  0.794   0.278 (66%)       0.729  1.141   0.556 (76%)
 *   k-means            0.036  0.137   0.025 (69%)       0.061  0.168   0.049 (81%)
 *   scikit-learn KMeans(lloyd), per iteration: 0.046 (2 threads), 0.089 (1).
 *   float64, 2 threads: diag 0.277 (NumPy 0.542, floor 0.208), full 1.28
 *   (NumPy 2.22), k-means 0.072 (NumPy 0.204).
 *   top-C (C=5) of a K=1024 UBM, N=100000: 0.241 (NumPy 0.690).
 * Where the rest goes: replacing the GEMMs by a no-op leaves 23 ms (diag),
 * 8 ms (k-means), 50 ms (full) of element-wise work on one core; the GEMMs
 * themselves run at ~85% of the square-GEMM rate at these shapes.
 * Chunk size (_c.py: c_chunk_size): time per frame falls until the
 * (chunk x K) float32 block reaches ~2 MB and is flat beyond (N=100000,
 * diag, K=256: 256 rows 75 ms, 512 72, 1024 71, 2048 70, 4096 70; K=1024:
 * 64 rows 305 ms, 256 266, 512 254, 1024 252), so chunks hold ~2 MB
 * (256..8192 rows); the full kernel is best at 1024 rows with the
 * (chunk x kblock*dp) GEMM block at ~1 MB.
 * k-means puts frames along the vector lanes (G = C X^T, argmin as a
 * vertical min over centres): 51 ms -> 36 ms against a frame-per-row argmin
 * with horizontal reductions.
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

/* ---- public entry points: dispatch on the instruction set ---- */
#ifdef IPEM_X86_MULTI
#define IPEM_DISPATCH(name, sfx, args)                                                    \
    switch (ipem_get_isa()) {                                                            \
    case IPEM_ISA_AVX512:                                                                \
        return name##_##sfx##_avx512 args;                                               \
    case IPEM_ISA_AVX2:                                                                  \
        return name##_##sfx##_avx2 args;                                                 \
    default:                                                                             \
        return name##_##sfx##_base args;                                                 \
    }
#else
#define IPEM_DISPATCH(name, sfx, args) return name##_##sfx##_base args;
#endif

void ipem_vexp_f32(int64_t n, const float *x, float *out)
{
    switch (ipem_get_isa()) {
#ifdef IPEM_X86_MULTI
    case IPEM_ISA_AVX512:
        vexp_array_f32_avx512(n, x, out);
        break;
    case IPEM_ISA_AVX2:
        vexp_array_f32_avx2(n, x, out);
        break;
#endif
    default:
        vexp_array_f32_base(n, x, out);
    }
}

void ipem_vexp_f64(int64_t n, const double *x, double *out)
{
    switch (ipem_get_isa()) {
#ifdef IPEM_X86_MULTI
    case IPEM_ISA_AVX512:
        vexp_array_f64_avx512(n, x, out);
        break;
    case IPEM_ISA_AVX2:
        vexp_array_f64_avx2(n, x, out);
        break;
#endif
    default:
        vexp_array_f64_base(n, x, out);
    }
}

#define IPEM_CHECK(gemm)                                                                 \
    if (!(gemm))                                                                         \
        return IPEM_ERR_NOBLAS;                                                          \
    if (n < 0 || d < 1 || k < 1 || ldx < d || chunk < 1)                                 \
        return IPEM_ERR_ARGS;

int ipem_kmeans_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                    const float *shift, const float *C, const float *csq, int64_t chunk,
                    const double *sample_weight, int64_t *labels, double *mindist,
                    double *counts, double *sums, double *inertia, int n_threads)
{
    IPEM_CHECK(g_sgemm)
#ifdef IPEM_X86_MULTI
    if (ipem_get_isa() == IPEM_ISA_AVX512)
        return kmeans_fused_f32_avx512(n, d, k, X, ldx, shift, C, csq, chunk, sample_weight,
                                       labels, mindist, NULL, NULL, NULL, NULL, 0.0, counts,
                                       sums, inertia, NULL, NULL, n_threads);
#endif
    (void)n_threads;
    IPEM_DISPATCH(kmeans, f32, (n, d, k, X, ldx, shift, C, csq, chunk, sample_weight,
                                labels, mindist, counts, sums, inertia))
}

int ipem_kmeans_f64(int64_t n, int64_t d, int64_t k, const double *X, int64_t ldx,
                    const double *shift, const double *C, const double *csq, int64_t chunk,
                    const double *sample_weight, int64_t *labels, double *mindist,
                    double *counts, double *sums, double *inertia, int n_threads)
{
    (void)n_threads;
    IPEM_CHECK(g_dgemm)
    IPEM_DISPATCH(kmeans, f64, (n, d, k, X, ldx, shift, C, csq, chunk, sample_weight,
                                labels, mindist, counts, sums, inertia))
}

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
#ifdef IPEM_X86_MULTI
    if (ipem_get_isa() == IPEM_ISA_AVX512)
        return kmeans_fused_f32_avx512(n, d, k, X, ldx, shift, C, csq, chunk, sample_weight,
                                       labels, mindist, upper, lower, drift, half_sep, cnorm,
                                       counts, sums, inertia, n_changed, n_full, n_threads);
#endif
    (void)drift, (void)cnorm, (void)n_changed, (void)n_full, (void)n_threads;
    return IPEM_ERR_ARGS; /* no bounded kernel for this instruction set */
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
#ifdef IPEM_X86_MULTI
    if (ipem_get_isa() == IPEM_ISA_AVX512)
        return kmeans_pp_f32_avx512(n, d, k, X, ldx, shift, C, csq, closest, sample_weight,
                                    dist_out, pots, n_threads);
#endif
    (void)closest, (void)dist_out, (void)pots, (void)n_threads;
    return IPEM_ERR_ARGS; /* no compiled version for this instruction set */
}

int ipem_gmm_diag_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                      const float *shift, const float *W, int64_t chunk,
                      const double *sample_weight,
                      double *logprob_out, void *resp_out, int resp_f64,
                      int compute_stats, double *acc, double *loglik, int64_t top_c,
                      double min_post, int n_threads)
{
    IPEM_CHECK(g_sgemm)
#ifdef IPEM_X86_MULTI
    if (ipem_get_isa() == IPEM_ISA_AVX512)
        return gmm_diag_fused_f32_avx512(n, d, k, X, ldx, shift, W, chunk, sample_weight,
                                         logprob_out, resp_out, resp_f64, compute_stats, acc,
                                         loglik, top_c, min_post, n_threads);
#endif
    (void)n_threads;
    IPEM_DISPATCH(gmm_diag, f32, (n, d, k, X, ldx, shift, W, chunk, sample_weight,
                                  logprob_out, resp_out, resp_f64, compute_stats, acc,
                                  loglik, top_c,
                                  min_post))
}

int ipem_gmm_diag_f64(int64_t n, int64_t d, int64_t k, const double *X, int64_t ldx,
                      const double *shift, const double *W, int64_t chunk,
                      const double *sample_weight,
                      double *logprob_out, void *resp_out, int resp_f64,
                      int compute_stats, double *acc, double *loglik, int64_t top_c,
                      double min_post, int n_threads)
{
    IPEM_CHECK(g_dgemm)
    (void)n_threads;
    IPEM_DISPATCH(gmm_diag, f64, (n, d, k, X, ldx, shift, W, chunk, sample_weight,
                                  logprob_out, resp_out, resp_f64, compute_stats, acc,
                                  loglik, top_c,
                                  min_post))
}

int ipem_gmm_diag_topc_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                           const float *shift, const float *W, int64_t top_c, int64_t chunk,
                           int64_t *index_out, double *logprob_out)
{
    IPEM_CHECK(g_sgemm)
    if (top_c < 1 || top_c > k)
        return IPEM_ERR_ARGS;
    IPEM_DISPATCH(gmm_diag_topc, f32, (n, d, k, X, ldx, shift, W, top_c, chunk, index_out,
                                       logprob_out))
}

int ipem_gmm_diag_topc_f64(int64_t n, int64_t d, int64_t k, const double *X, int64_t ldx,
                           const double *shift, const double *W, int64_t top_c, int64_t chunk,
                           int64_t *index_out, double *logprob_out)
{
    IPEM_CHECK(g_dgemm)
    if (top_c < 1 || top_c > k)
        return IPEM_ERR_ARGS;
    IPEM_DISPATCH(gmm_diag_topc, f64, (n, d, k, X, ldx, shift, W, top_c, chunk, index_out,
                                       logprob_out))
}

int ipem_gmm_full_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                      const float *shift, const float *U, int64_t dp, const double *cst,
                      int64_t chunk, int64_t kblock, const double *sample_weight,
                      double *logprob_out, void *resp_out, int resp_f64,
                      int compute_stats, double *acc, double *loglik, int n_threads)
{
    IPEM_CHECK(g_sgemm)
    if (dp < d || dp % 8 || kblock < 1)
        return IPEM_ERR_ARGS;
    IPEM_DISPATCH(gmm_full, f32, (n, d, k, X, ldx, shift, U, dp, cst, chunk, kblock,
                                  sample_weight, logprob_out, resp_out, resp_f64,
                                  compute_stats, acc, loglik, n_threads))
}

int ipem_gmm_full_f64(int64_t n, int64_t d, int64_t k, const double *X, int64_t ldx,
                      const double *shift, const double *U, int64_t dp, const double *cst,
                      int64_t chunk, int64_t kblock, const double *sample_weight,
                      double *logprob_out, void *resp_out, int resp_f64,
                      int compute_stats, double *acc, double *loglik, int n_threads)
{
    IPEM_CHECK(g_dgemm)
    if (dp < d || dp % 8 || kblock < 1)
        return IPEM_ERR_ARGS;
    IPEM_DISPATCH(gmm_full, f64, (n, d, k, X, ldx, shift, U, dp, cst, chunk, kblock,
                                  sample_weight, logprob_out, resp_out, resp_f64,
                                  compute_stats, acc, loglik, n_threads))
}
