/* ipem_vector_impl.h -- vector helpers of the kernels: loads and stores,
 * horizontal sums, a vectorised exp, the BLAS call, the row-wise
 * log-sum-exp, responsibilities output, the selection routine and the
 * pruning of a row of responsibilities (approximate statistics).
 * Part of the per-(instruction set, dtype) body of the kernels: included by
 * ipem_kernels_impl.h, which defines REAL, VEC, VL, FN(...) and the other
 * type macros; no include guard (included once per copy). */

/* ------------------------------------------------------------------ */
/* vector helpers                                                       */
/* ------------------------------------------------------------------ */
static IPEM_INLINE VEC FN(vload)(const REAL *p)
{
    VEC v;
    memcpy(&v, p, sizeof v);
    return v;
}

static IPEM_INLINE void FN(vstore)(REAL *p, VEC v) { memcpy(p, &v, sizeof v); }

static IPEM_INLINE VEC FN(vbcast)(REAL x)
{
    VEC v = {0};
    return v + x;
}

/* m ? a : b, lane-wise, m a comparison result (all ones / all zeros). */
static IPEM_INLINE VEC FN(vsel)(IVEC m, VEC a, VEC b)
{
    return (VEC)(((IVEC)a & m) | ((IVEC)b & ~m));
}

/* Horizontal sum of a vector by halving (a shuffle tree, not a serial chain). */
static IPEM_INLINE REAL FN(hsum)(VEC v)
{
#if IPEM_F64
#if IPEM_VBYTES == 64
    ipem_v4d h4[2];
    memcpy(h4, &v, sizeof v);
    ipem_v4d v4 = h4[0] + h4[1];
#elif IPEM_VBYTES == 32
    ipem_v4d v4 = v;
#endif
#if IPEM_VBYTES >= 32
    ipem_v2d h2[2];
    memcpy(h2, &v4, sizeof v4);
    ipem_v2d v2 = h2[0] + h2[1];
#else
    ipem_v2d v2 = v;
#endif
    return v2[0] + v2[1];
#else
#if IPEM_VBYTES == 64
    ipem_v8f h8[2];
    memcpy(h8, &v, sizeof v);
    ipem_v8f v8 = h8[0] + h8[1];
#elif IPEM_VBYTES == 32
    ipem_v8f v8 = v;
#endif
#if IPEM_VBYTES >= 32
    ipem_v4f h4[2];
    memcpy(h4, &v8, sizeof v8);
    ipem_v4f v4 = h4[0] + h4[1];
#else
    ipem_v4f v4 = v;
#endif
    return (v4[0] + v4[2]) + (v4[1] + v4[3]);
#endif
}

/* exp(x), lane-wise.  Inputs below the smallest normal's logarithm give 0
 * (denormal results are flushed), inputs above ~88 (float) / 709 (double)
 * are clamped; NaN gives NaN.
 * float: Cephes expf (Cody-Waite reduction, degree-5 minimax polynomial),
 *        ~1 ulp (about 1e-7 relative).
 * double: degree-12 Taylor polynomial on |r| <= ln2/2, error ~2e-16
 *        relative before rounding (a few ulp in all). */
static IPEM_INLINE VEC FN(vexp)(VEC x)
{
#if IPEM_F64
    const REAL lo = -708.3964185322641, hi = 709.0;
    const REAL magic = 6755399441055744.0; /* 1.5 * 2^52 */
    const REAL log2e = 1.4426950408889634074;
    const REAL ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    IVEC under = x < lo;
    x = FN(vsel)(x > hi, FN(vbcast)(hi), x);
    x = FN(vsel)(under, FN(vbcast)(lo), x);
    VEC t = x * log2e + magic;
    VEC nf = t - magic;
    VEC r = x - nf * ln2_hi;
    r = r - nf * ln2_lo;
    VEC p = FN(vbcast)(2.08767569878680989792e-09); /* 1/12! */
    p = p * r + 2.50521083854417187751e-08;        /* 1/11! */
    p = p * r + 2.75573192239858906526e-07;        /* 1/10! */
    p = p * r + 2.75573192239858906526e-06;        /* 1/9!  */
    p = p * r + 2.48015873015873015873e-05;        /* 1/8!  */
    p = p * r + 1.98412698412698412698e-04;        /* 1/7!  */
    p = p * r + 1.38888888888888888889e-03;        /* 1/6!  */
    p = p * r + 8.33333333333333333333e-03;        /* 1/5!  */
    p = p * r + 4.16666666666666666667e-02;        /* 1/4!  */
    p = p * r + 1.66666666666666666667e-01;        /* 1/3!  */
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* t's low bits hold n + 0x8000000000000 (the magic's mantissa); the
     * shift by 52 discards everything above the 12 exponent bits. */
    IVEC scale = ((IVEC)t + 1023) << 52;
    VEC y = p * (VEC)scale;
    return (VEC)((IVEC)y & ~under);
#else
    const REAL lo = -87.33654f, hi = 88.0f;
    const REAL magic = 12582912.0f; /* 1.5 * 2^23 */
    const REAL log2e = 1.44269504088896341f;
    IVEC under = x < lo;
    x = FN(vsel)(x > hi, FN(vbcast)(hi), x);
    x = FN(vsel)(under, FN(vbcast)(lo), x);
    VEC t = x * log2e + magic;
    VEC nf = t - magic;
    VEC r = x - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    VEC p = FN(vbcast)(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    VEC y = p * (r * r) + r + 1.0f;
    IVEC scale = ((IVEC)t + 127) << 23;
    y = y * (VEC)scale;
    return (VEC)((IVEC)y & ~under);
#endif
}

static void FN(vexp_array)(int64_t n, const REAL *x, REAL *out)
{
    int64_t i = 0;
    for (; i + VL <= n; i += VL)
        FN(vstore)(out + i, FN(vexp)(FN(vload)(x + i)));
    if (i < n) {
        REAL buf[VL];
        int64_t r = n - i, j;
        for (j = 0; j < VL; j++)
            buf[j] = j < r ? x[i + j] : 0;
        FN(vstore)(buf, FN(vexp)(FN(vload)(buf)));
        for (j = 0; j < r; j++)
            out[i + j] = buf[j];
    }
}

static IPEM_INLINE void FN(gemm)(char ta, char tb, int64_t M, int64_t N, int64_t K,
                                 REAL alpha, const REAL *A, int64_t lda,
                                 const REAL *B, int64_t ldb, REAL beta,
                                 REAL *C, int64_t ldc)
{
    int m_ = (int)M, n_ = (int)N, k_ = (int)K;
    int lda_ = (int)lda, ldb_ = (int)ldb, ldc_ = (int)ldc;
    GEMM_PTR(&ta, &tb, &m_, &n_, &k_, &alpha, (REAL *)A, &lda_, (REAL *)B, &ldb_,
             &beta, C, &ldc_);
}

/* Log-sum-exp of one row of log-likelihoods l[0:kp] (kp a multiple of VL,
 * padding entries -inf).  When store, l is overwritten with exp(l - max).
 * Returns log sum exp(l) and sets *inv_sum = 1 / sum exp(l - max), so that
 * the responsibilities are l[j] * (*inv_sum).  As in the NumPy reference, a
 * row whose maximum is not finite is normalised with 0 instead. */
static IPEM_INLINE double FN(lse_row)(REAL *restrict l, int64_t kp, int store,
                                      double *inv_sum)
{
    VEC vm0 = FN(vbcast)(-INFINITY), vm1 = vm0;
    int64_t j = 0;
    for (; j + 2 * VL <= kp; j += 2 * VL) {
        VEC v0 = FN(vload)(l + j), v1 = FN(vload)(l + j + VL);
        vm0 = FN(vsel)(v0 > vm0, v0, vm0);
        vm1 = FN(vsel)(v1 > vm1, v1, vm1);
    }
    if (j < kp) {
        VEC v0 = FN(vload)(l + j);
        vm0 = FN(vsel)(v0 > vm0, v0, vm0);
    }
    vm0 = FN(vsel)(vm1 > vm0, vm1, vm0);
    REAL mx = vm0[0];
    for (int i = 1; i < VL; i++)
        if (vm0[i] > mx)
            mx = vm0[i];
    if (!(mx > -INFINITY && mx < INFINITY))
        mx = 0;
    VEC vmx = FN(vbcast)(mx);
    VEC s0 = FN(vbcast)(0), s1 = s0;
    j = 0;
    if (store) {
        for (; j + 2 * VL <= kp; j += 2 * VL) {
            VEC e0 = FN(vexp)(FN(vload)(l + j) - vmx);
            VEC e1 = FN(vexp)(FN(vload)(l + j + VL) - vmx);
            FN(vstore)(l + j, e0);
            FN(vstore)(l + j + VL, e1);
            s0 += e0;
            s1 += e1;
        }
        if (j < kp) {
            VEC e0 = FN(vexp)(FN(vload)(l + j) - vmx);
            FN(vstore)(l + j, e0);
            s0 += e0;
        }
    } else {
        for (; j + 2 * VL <= kp; j += 2 * VL) {
            s0 += FN(vexp)(FN(vload)(l + j) - vmx);
            s1 += FN(vexp)(FN(vload)(l + j + VL) - vmx);
        }
        if (j < kp)
            s0 += FN(vexp)(FN(vload)(l + j) - vmx);
    }
    const double s = (double)FN(hsum)(s0 + s1);
    *inv_sum = 1.0 / s;
    return (double)mx + log(s);
}

/* Write one row of responsibilities e[0:k] * w to resp_out row `row`. */
static IPEM_INLINE void FN(write_resp)(void *resp_out, int resp_f64, int64_t row, int64_t k,
                                       const REAL *restrict e, double w)
{
    if (resp_f64) {
        double *restrict r = (double *)resp_out + row * k;
        for (int64_t j = 0; j < k; j++)
            r[j] = (double)e[j] * w;
    } else {
        float *restrict r = (float *)resp_out + row * k;
        const REAL wr = (REAL)w;
        for (int64_t j = 0; j < k; j++)
            r[j] = (float)(e[j] * wr);
    }
}

/* The want-th largest (0-based) of v[0:n], by quickselect; reorders v.  The
 * one selection routine of the kernels (the fused AVX-512 code calls the
 * float32 AVX-512 copy, select_desc_f32_avx512). */
static REAL FN(select_desc)(REAL *restrict v, int64_t n, int64_t want)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const REAL pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot)
                i++;
            while (v[j] < pivot)
                j--;
            if (i <= j) {
                const REAL t = v[i];
                v[i] = v[j], v[j] = t;
                i++, j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
    return v[want];
}

/* Approximate statistics: keep the top_c largest entries of e[0:k] (top_c
 * <= 0 or >= k: all; ties at the threshold keep the lower indices), then
 * those at least min_post times the sum of the kept ones; set the others to
 * 0.  e >= 0 with its maximum 1 (a log-sum-exp row), so the maximum is always
 * kept.  Returns the sum of the kept entries.  tmp: k REALs of scratch. */
static double FN(prune_row)(REAL *restrict e, int64_t k, int64_t top_c, double min_post,
                            REAL *restrict tmp)
{
    if (top_c > 0 && top_c < k) {
        int64_t nz = 0;
        for (int64_t j = 0; j < k; j++)
            if (e[j] != 0)
                tmp[nz++] = e[j];
        if (nz > top_c) {
            const REAL thr = FN(select_desc)(tmp, nz, top_c - 1);
            int64_t above = 0;
            for (int64_t j = 0; j < k; j++)
                above += e[j] > thr;
            int64_t ties = top_c - above;
            for (int64_t j = 0; j < k; j++) {
                if (e[j] > thr)
                    continue;
                if (e[j] == thr && ties > 0)
                    ties--;
                else
                    e[j] = 0;
            }
        }
    }
    double s = 0.0;
    for (int64_t j = 0; j < k; j++)
        s += (double)e[j];
    if (min_post > 0) {
        const double thr = min_post * s;
        double kept = 0.0;
        for (int64_t j = 0; j < k; j++) {
            if ((double)e[j] < thr)
                e[j] = 0;
            else
                kept += (double)e[j];
        }
        s = kept;
    }
    return s;
}
