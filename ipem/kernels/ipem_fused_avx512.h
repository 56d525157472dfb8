/* ipem_fused_avx512.h -- the fused float32 kernels for AVX-512: they run
 * their own register-tiled matrix products fused with the element-wise work
 * (no BLAS call, no (chunk x K) block leaving the core's L2) on their own
 * worker threads (ipem_parallel.h); work is split in groups of frames whose
 * partial statistics are added in group order, so results never depend on
 * the number of threads.
 *
 * Included once by ipem_kernels.c inside its AVX-512 target region, after the
 * float32 AVX-512 copy of ipem_kernels_impl.h, whose helpers (the *_f32_avx512
 * functions: write_resp, select_desc) they use.  Which kernel runs where is
 * decided by the table in ipem_kernels.c.  One file per kernel:
 */

static IPEM_INLINE __m512 fd_load(const float *p) { return _mm512_loadu_ps(p); }

#include "ipem_fused_diag_avx512.h"     /* diagonal GMM E-step */
#include "ipem_fused_kmeans_avx512.h"   /* k-means step, optionally with bounds */
#include "ipem_fused_kmeanspp_avx512.h" /* k-means++ trials */
