/* ipem_kernels_impl.h -- the body of the E-step kernels, included by
 * ipem_kernels.c once per (instruction set, dtype) pair.
 *
 * Parameters (macros defined by the includer):
 *   IPEM_ISA   suffix naming the instruction set (base, avx2, avx512)
 *   IPEM_F64   1 for double, 0 for float
 *   IPEM_VBYTES bytes per vector (16, 32 or 64: the native width of the ISA)
 * This file defines the type macros (REAL, VEC, VL, FN, ...) of one copy and
 * includes one file per kernel, which use them.  Every function there is
 * static and its name carries both suffixes, so each inclusion is a
 * self-contained copy compiled for its own target.  Nothing here may be a
 * preprocessor guard: the files are meant to be included 6 times.
 */

#if IPEM_F64
#define REAL double
#define IPEM_LANE_INT int64_t
#define SFX f64
#define GEMM_PTR g_dgemm
#if IPEM_VBYTES == 64
#define VEC ipem_v8d
#define IVEC ipem_v8l
#elif IPEM_VBYTES == 32
#define VEC ipem_v4d
#define IVEC ipem_v4l
#else
#define VEC ipem_v2d
#define IVEC ipem_v2l
#endif
#else /* float */
#define REAL float
#define IPEM_LANE_INT int32_t
#define SFX f32
#define GEMM_PTR g_sgemm
#if IPEM_VBYTES == 64
#define VEC ipem_v16f
#define IVEC ipem_v16i
#elif IPEM_VBYTES == 32
#define VEC ipem_v8f
#define IVEC ipem_v8i
#else
#define VEC ipem_v4f
#define IVEC ipem_v4i
#endif
#endif
/* lanes per vector */
#define VL ((int64_t)(IPEM_VBYTES / sizeof(REAL)))
/* vector for sums of squares over feature blocks padded to multiples of 8:
 * at most 8 lanes */
#if IPEM_VBYTES == 64 && !IPEM_F64
#define SSVEC ipem_v8f
#define SSL 8
#else
#define SSVEC VEC
#define SSL VL
#endif

#define FN(name) IPEM_CAT3(name, SFX, IPEM_ISA)

#include "ipem_vector_impl.h"  /* helpers: vexp, log-sum-exp, selection, ... */
#include "ipem_kmeans_impl.h"  /* k-means step */
#include "ipem_diag_impl.h"    /* diagonal GMM E-step, top-C selection */
#include "ipem_full_impl.h"    /* full-covariance GMM E-step */

#undef REAL
#undef IPEM_LANE_INT
#undef SFX
#undef VEC
#undef IVEC
#undef SSVEC
#undef SSL
#undef VL
#undef GEMM_PTR
#undef FN
