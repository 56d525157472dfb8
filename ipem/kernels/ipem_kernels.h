/* ipem_kernels.h -- C API of ipem's compiled E-step kernels.
 *
 * The cffi build script (_build.py) hands everything between the CDEF BEGIN
 * and CDEF END markers to ffibuilder.cdef(), so that part must stay plain C
 * declarations that cffi can parse (no preprocessor lines, no macros).
 *
 * Conventions shared by all kernels (see the ipem_*_impl.h files and the
 * ipem_fused_*_avx512.h files for the algorithms):
 *  - X is n x d, row-major, with a row stride of ldx elements (ldx >= d).
 *  - Every derived parameter array (W, C, U, ...) is prepared by the Python
 *    wrappers (_c_kmeans.py, _c_gmm.py) in the dtype of X; statistics
 *    outputs are float64 and are OVERWRITTEN (not accumulated into).
 *  - chunk is the number of frames processed per block (> 0).
 *  - sample_weight: n float64 frame weights (finite, >= 0; checked by the
 *    wrapper) or NULL for the unweighted kernel (bit-identical to a build
 *    without weights).  Weights scale what each frame adds to the statistics
 *    and to the total loglik/inertia; per-frame outputs (labels, mindist,
 *    logprob_out, resp_out) are never weighted.  A frame of weight 0 adds
 *    exactly nothing, even where its values are not finite.
 *  - Return value: 0 on success, IPEM_ERR_* (< 0) on failure.
 */
#ifndef IPEM_KERNELS_H
#define IPEM_KERNELS_H

#include <stdint.h>

/* CDEF BEGIN */
/* Fortran BLAS ?gemm as exported by scipy.linalg.cython_blas. */
typedef void (*ipem_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                              float *alpha, float *a, int *lda, float *b, int *ldb,
                              float *beta, float *c, int *ldc);
typedef void (*ipem_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                              double *alpha, double *a, int *lda, double *b, int *ldb,
                              double *beta, double *c, int *ldc);

/* Error codes. */
enum { IPEM_OK = 0, IPEM_ERR_NOMEM = -1, IPEM_ERR_NOBLAS = -2, IPEM_ERR_ARGS = -3 };

/* Instruction-set levels of the element-wise code (the BLAS picks its own). */
/* IPEM_ISA_BASE: the compiler's baseline (SSE2 on x86-64); IPEM_ISA_AVX2:
 * AVX2 + FMA; IPEM_ISA_AVX512: AVX-512F + AVX2 + FMA. */
enum { IPEM_ISA_BASE = 0, IPEM_ISA_AVX2 = 1, IPEM_ISA_AVX512 = 2 };

/* Kernels, and the implementations a kernel can have at one level: the
 * code of ipem_kernels_impl.h compiled for that level (matrix products on
 * the BLAS), a fused AVX-512 kernel, or none (the entry point then returns
 * IPEM_ERR_ARGS and the Python wrapper falls back).  Which level has which
 * is one table in ipem_kernels.c; ipem_kernel_impl() reads it. */
enum { IPEM_KERNEL_KMEANS = 0, IPEM_KERNEL_KMEANS_BOUNDED = 1, IPEM_KERNEL_KMEANS_PP = 2,
       IPEM_KERNEL_GMM_DIAG = 3, IPEM_KERNEL_GMM_DIAG_TOPC = 4, IPEM_KERNEL_GMM_FULL = 5,
       IPEM_N_KERNELS = 6 };
enum { IPEM_IMPL_NONE = 0, IPEM_IMPL_BLAS = 1, IPEM_IMPL_FUSED = 2 };

void ipem_set_blas(ipem_sgemm_fn sgemm, ipem_dgemm_fn dgemm);
/* Bit mask of the levels this build and this CPU support (bit i = level i). */
int ipem_isa_available(void);
/* Select a level; returns the level now in use (the best available one not
 * above the requested level). */
int ipem_set_isa(int level);
int ipem_get_isa(void);
/* The implementation (IPEM_IMPL_*) of a kernel (IPEM_KERNEL_*) for float64
 * (f64 != 0) or float32 data at level isa (< 0: the level in use). */
int ipem_kernel_impl(int kernel, int f64, int isa);

/* Vectorised exp over an array (for tests): out[i] = exp(x[i]). */
void ipem_vexp_f32(int64_t n, const float *x, float *out);
void ipem_vexp_f64(int64_t n, const double *x, double *out);

/* k-means (Lloyd) assignment step.
 *   C: k x d centres (shifted coordinates); csq: k squared norms of C;
 *   sample_weight: n frame weights s_n or NULL (all ones);
 *   labels (n, int64), mindist (n, float64) written (unweighted);
 *   counts (k) = sum s_n, sums (k x d) = sum s_n x_n over the frames of each
 *   centre, inertia (1) = sum s_n mindist_n, written. */
int ipem_kmeans_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                    const float *shift, const float *C, const float *csq, int64_t chunk,
                    const double *sample_weight, int64_t *labels, double *mindist,
                    double *counts, double *sums, double *inertia, int n_threads);
int ipem_kmeans_f64(int64_t n, int64_t d, int64_t k, const double *X, int64_t ldx,
                    const double *shift, const double *C, const double *csq, int64_t chunk,
                    const double *sample_weight, int64_t *labels, double *mindist,
                    double *counts, double *sums, double *inertia, int n_threads);

/* k-means step with Hamerly bounds (float32, AVX-512 only: IPEM_ERR_ARGS
 * elsewhere; the caller then runs ipem_kmeans_f32 instead).
 *   labels (n): in/out -- the labels of the previous call (or < 0: unknown).
 *   upper, lower (n): in/out bounds on the distance to the frame's centre and
 *   to every other centre; valid on input only when drift != NULL.
 *   drift (k): distance each centre moved since the previous call, or NULL.
 *   half_sep (k): half the distance of each centre to its nearest other one.
 *   cnorm: the largest |c_j|.  n_changed: labels that changed; n_full:
 *   frames compared with every centre.  Other arguments as ipem_kmeans_f32;
 *   the results are bit-identical to it. */
int ipem_kmeans_bounded_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                            const float *shift, const float *C, const float *csq,
                            int64_t chunk, const double *sample_weight, int64_t *labels,
                            double *mindist, double *upper, double *lower,
                            const double *drift, const double *half_sep, double cnorm,
                            double *counts, double *sums, double *inertia,
                            int64_t *n_changed, int64_t *n_full, int n_threads);

/* k-means++ trials (float32, AVX-512 only: IPEM_ERR_ARGS elsewhere), k <= 16:
 *   dist_out (n x k float64, or NULL): squared distance of every frame to
 *   every candidate, as the mindist of ipem_kmeans_f32 would give it;
 *   pots (k): sum_n s_n min(closest_n, dist_nj) (closest NULL: dist_nj). */
int ipem_kmeans_pp_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                       const float *shift, const float *C, const float *csq,
                       const double *closest, const double *sample_weight, double *dist_out,
                       double *pots, int n_threads);

/* Diagonal-covariance GMM E-step.
 *   W: (2d+1) x k row-major: rows 0..d-1 = -0.5*prec^T, rows d..2d-1 =
 *      (mean*prec)^T, row 2d = the per-component constant.
 *   sample_weight: n frame weights s_n or NULL (all ones).
 *   logprob_out: n float64 or NULL.  resp_out: n x k (float64 when
 *   resp_f64 != 0, else float32) or NULL.  Both unweighted.
 *   acc: k x (2d+1) float64, written when compute_stats != 0:
 *      acc[j, 0:d] = sum_n s_n r_nj x_n^2, acc[j, d:2d] = sum_n s_n r_nj x_n,
 *      acc[j, 2d] = sum_n s_n r_nj.
 *   loglik: 1 float64 = sum_n s_n log p(x_n), always written.
 *   top_c, min_post: approximate statistics (top_c <= 0 and min_post <= 0:
 *   exact): each frame's statistics come from its top_c most responsible
 *   components (ties: lower index), renormalised, then only those with a
 *   responsibility >= min_post among them, renormalised again.  loglik,
 *   logprob_out and resp_out stay exact.
 *   n_threads: worker threads (the result does not depend on it). */
int ipem_gmm_diag_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                      const float *shift, const float *W, int64_t chunk,
                      const double *sample_weight,
                      double *logprob_out, void *resp_out, int resp_f64,
                      int compute_stats, double *acc, double *loglik, int64_t top_c,
                      double min_post, int n_threads);
int ipem_gmm_diag_f64(int64_t n, int64_t d, int64_t k, const double *X, int64_t ldx,
                      const double *shift, const double *W, int64_t chunk,
                      const double *sample_weight,
                      double *logprob_out, void *resp_out, int resp_f64,
                      int compute_stats, double *acc, double *loglik, int64_t top_c,
                      double min_post, int n_threads);

/* Top-C Gaussian selection for a diagonal GMM (UBM scoring).
 *   W as for ipem_gmm_diag_*; 1 <= top_c <= k.
 *   index_out: n x top_c int64, the components of each frame by descending
 *   weighted log-likelihood (ties: lower index first);
 *   logprob_out: n float64, log-sum-exp over those components. */
int ipem_gmm_diag_topc_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                           const float *shift, const float *W, int64_t top_c, int64_t chunk,
                           int64_t *index_out, double *logprob_out);
int ipem_gmm_diag_topc_f64(int64_t n, int64_t d, int64_t k, const double *X, int64_t ldx,
                           const double *shift, const double *W, int64_t top_c, int64_t chunk,
                           int64_t *index_out, double *logprob_out);

/* Full-covariance GMM E-step.
 *   U: (d+1) x (k*dp) row-major; columns j*dp .. j*dp+d-1 of rows 0..d-1
 *      hold the Cholesky factor of the precision of component j, row d
 *      holds -(mean_j @ U_j); padding columns are zero.  dp >= d.
 *   cst: k float64 constants (-0.5 d log 2pi + log det U_j + log w_j).
 *   kblock: components per log-likelihood GEMM (> 0).
 *   sample_weight, logprob_out, resp_out, loglik: as for ipem_gmm_diag_*.
 *   acc: k x (1 + d + d(d+1)/2) float64, written when compute_stats != 0:
 *      [sum s r, sum s r x, sum s r x_i x_j for i <= j (row-major upper
 *      triangle)]. */
int ipem_gmm_full_f32(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                      const float *shift, const float *U, int64_t dp, const double *cst,
                      int64_t chunk, int64_t kblock, const double *sample_weight,
                      double *logprob_out, void *resp_out, int resp_f64,
                      int compute_stats, double *acc, double *loglik, int n_threads);
int ipem_gmm_full_f64(int64_t n, int64_t d, int64_t k, const double *X, int64_t ldx,
                      const double *shift, const double *U, int64_t dp, const double *cst,
                      int64_t chunk, int64_t kblock, const double *sample_weight,
                      double *logprob_out, void *resp_out, int resp_f64,
                      int compute_stats, double *acc, double *loglik, int n_threads);
/* CDEF END */

#endif /* IPEM_KERNELS_H */
