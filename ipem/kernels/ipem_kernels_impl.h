/* ipem_kernels_impl.h -- body of the E-step kernels, included by
 * ipem_kernels.c once per (instruction set, dtype) pair.
 *
 * Parameters (macros defined by the includer):
 *   IPEM_ISA   suffix naming the instruction set (base, avx2, avx512)
 *   IPEM_F64   1 for double, 0 for float
 *   IPEM_VBYTES bytes per vector (16, 32 or 64: the native width of the ISA)
 * Every function here is static and its name carries both suffixes, so each
 * inclusion is a self-contained copy compiled for its own target.  Nothing
 * here may be a preprocessor guard: the file is meant to be included 6 times.
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
            /* quickselect: tmp[top_c - 1] becomes the top_c-th largest */
            int64_t lo = 0, hi = nz - 1;
            const int64_t want = top_c - 1;
            while (lo < hi) {
                const REAL pivot = tmp[lo + (hi - lo) / 2];
                int64_t i = lo, j = hi;
                while (i <= j) {
                    while (tmp[i] > pivot)
                        i++;
                    while (tmp[j] < pivot)
                        j--;
                    if (i <= j) {
                        const REAL t = tmp[i];
                        tmp[i] = tmp[j], tmp[j] = t;
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
            const REAL thr = tmp[want];
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

/* ------------------------------------------------------------------ */
/* k-means                                                              */
/* ------------------------------------------------------------------ */
static int FN(kmeans)(int64_t n, int64_t d, int64_t k, const REAL *X, int64_t ldx,
                      const REAL *shift, const REAL *C, const REAL *csq, int64_t chunk,
                      const double *sw, int64_t *labels, double *mindist,
                      double *counts, double *sums, double *inertia)
{
    /* Frames run along the vector lanes: G is k x ldg, row j = the distances
     * of centre j to the chunk's frames, so the argmin over centres is a
     * vertical min over rows (no horizontal reduction per frame). */
    enum { NB = 4 }; /* vectors of frames per block */
    const int64_t dq = IPEM_ROUND_UP(d, VL); /* row stride of XC; the padding stays 0 */
    const int64_t m = n < chunk ? (n > 0 ? n : 1) : chunk;
    int64_t ldg = IPEM_ROUND_UP(m, NB * VL);
    if ((ldg * (int64_t)sizeof(REAL)) % 4096 == 0)
        ldg += NB * VL; /* avoid 4K aliasing between the rows of G */
    REAL *XC = (REAL *)ipem_calloc(sizeof(REAL) * (size_t)(m * dq));
    REAL *G = (REAL *)ipem_calloc(sizeof(REAL) * (size_t)(k * ldg));
    REAL *xsq = (REAL *)ipem_malloc(sizeof(REAL) * (size_t)m);
    if (!XC || !G || !xsq) {
        ipem_free(XC), ipem_free(G), ipem_free(xsq);
        return IPEM_ERR_NOMEM;
    }
    memset(counts, 0, sizeof(double) * (size_t)k);
    memset(sums, 0, sizeof(double) * (size_t)(k * d));
    double inert = 0.0;
    const IVEC izero = {0};

    for (int64_t a = 0; a < n; a += m) {
        const int64_t mm = a + m <= n ? m : n - a;
        for (int64_t i = 0; i < mm; i++) {
            const REAL *restrict x = X + (a + i) * ldx;
            REAL *restrict xc = XC + i * dq;
            for (int64_t t = 0; t < d; t++)
                xc[t] = x[t] - shift[t];
            VEC s = FN(vbcast)(0);
            for (int64_t t = 0; t < dq; t += VL) {
                VEC v = FN(vload)(xc + t);
                s += v * v;
            }
            xsq[i] = FN(hsum)(s);
        }
        /* G (row-major k x ldg) = -2 C XC^T */
        FN(gemm)('T', 'N', mm, k, d, (REAL)-2.0, XC, dq, C, d, (REAL)0.0, G, ldg);
        for (int64_t i0 = 0; i0 < mm; i0 += NB * VL) {
            VEC vb[NB];
            IVEC vi[NB];
            for (int u = 0; u < NB; u++) {
                vb[u] = FN(vbcast)((REAL)INFINITY);
                vi[u] = izero;
            }
            for (int64_t j = 0; j < k; j++) {
                const VEC cj = FN(vbcast)(csq[j]);
                const IVEC jv = izero + (IPEM_LANE_INT)j;
                const REAL *restrict g = G + j * ldg + i0;
                for (int u = 0; u < NB; u++) {
                    /* same rounding as NumPy: fl(|c|^2 + fl(-2 x.c)) */
                    const VEC v = cj + FN(vload)(g + u * VL);
                    const IVEC lt = v < vb[u]; /* strict: ties keep the lowest j */
                    vb[u] = FN(vsel)(lt, v, vb[u]);
                    vi[u] = (vi[u] & ~lt) | (jv & lt);
                }
            }
            REAL best[NB * VL];
            IPEM_LANE_INT idx[NB * VL];
            memcpy(best, vb, sizeof vb);
            memcpy(idx, vi, sizeof vi);
            const int64_t nb = mm - i0 < NB * VL ? mm - i0 : NB * VL;
            for (int64_t u = 0; u < nb; u++) {
                const int64_t i = i0 + u, j = idx[u];
                const REAL dist = best[u] + xsq[i];
                const double md = dist < 0 ? 0.0 : (double)dist;
                labels[a + i] = j;
                mindist[a + i] = md;
                double *restrict srow = sums + j * d;
                const REAL *restrict xc = XC + i * dq;
                if (sw) {
                    /* weighted; a frame of weight 0 adds nothing (not even 0 * inf) */
                    const double wn = sw[a + i];
                    if (wn == 0.0)
                        continue;
                    inert += wn * md;
                    counts[j] += wn;
                    for (int64_t t = 0; t < d; t++)
                        srow[t] += wn * (double)xc[t];
                } else {
                    inert += md;
                    counts[j] += 1.0;
                    for (int64_t t = 0; t < d; t++)
                        srow[t] += (double)xc[t];
                }
            }
        }
    }
    *inertia = inert;
    ipem_free(XC), ipem_free(G), ipem_free(xsq);
    return IPEM_OK;
}

/* ------------------------------------------------------------------ */
/* diagonal GMM                                                         */
/* ------------------------------------------------------------------ */
static int FN(gmm_diag)(int64_t n, int64_t d, int64_t k, const REAL *X, int64_t ldx,
                        const REAL *shift, const REAL *W, int64_t chunk, const double *sw,
                        double *logprob_out, void *resp_out, int resp_f64,
                        int compute_stats, double *acc, double *loglik, int64_t top_c,
                        double min_post)
{
    const int64_t q = 2 * d + 1;
    const int64_t kp = IPEM_ROUND_UP(k, VL);
    const int64_t m = n < chunk ? (n > 0 ? n : 1) : chunk;
    const int need_e = compute_stats || resp_out != NULL;
    const int prune = compute_stats && ((top_c > 0 && top_c < k) || min_post > 0);
    REAL *Z = (REAL *)ipem_malloc(sizeof(REAL) * (size_t)(m * q));
    REAL *L = (REAL *)ipem_calloc(sizeof(REAL) * (size_t)(m * kp));
    REAL *S = compute_stats ? (REAL *)ipem_malloc(sizeof(REAL) * (size_t)(k * q)) : NULL;
    REAL *tmp = prune ? (REAL *)ipem_malloc(sizeof(REAL) * (size_t)k) : NULL;
    if (!Z || !L || (compute_stats && !S) || (prune && !tmp)) {
        ipem_free(Z), ipem_free(L), ipem_free(S), ipem_free(tmp);
        return IPEM_ERR_NOMEM;
    }
    if (compute_stats)
        memset(acc, 0, sizeof(double) * (size_t)(k * q));
    double ll = 0.0;

    for (int64_t a = 0; a < n; a += m) {
        const int64_t mm = a + m <= n ? m : n - a;
        /* Z = [x^2, x, 1] of the shifted frames */
        for (int64_t i = 0; i < mm; i++) {
            const REAL *restrict x = X + (a + i) * ldx;
            REAL *restrict z = Z + i * q;
            for (int64_t t = 0; t < d; t++) {
                const REAL v = x[t] - shift[t];
                z[t] = v * v;
                z[d + t] = v;
            }
            z[2 * d] = 1;
        }
        /* L (row-major mm x kp) = Z W: the log-likelihoods, constant included */
        FN(gemm)('N', 'N', k, mm, q, (REAL)1.0, W, k, Z, q, (REAL)0.0, L, kp);
        for (int64_t i = 0; i < mm; i++) {
            REAL *restrict l = L + i * kp;
            for (int64_t j = k; j < kp; j++)
                l[j] = (REAL)-INFINITY;
            double w;
            const double lp = FN(lse_row)(l, kp, need_e, &w);
            if (!sw)
                ll += lp;
            else if (sw[a + i] != 0.0)
                ll += sw[a + i] * lp;
            if (logprob_out)
                logprob_out[a + i] = lp;
            if (resp_out)
                FN(write_resp)(resp_out, resp_f64, a + i, k, l, w);
            if (compute_stats) {
                /* fold the normalisation (and the frame weight s_n) into the
                 * frame: s_n r_nj z_n = e_nj (s_n w_n z_n) */
                REAL *restrict z = Z + i * q;
                if (sw && sw[a + i] == 0.0) {
                    /* dropped frame: zero both factors (e_nj may be NaN) */
                    memset(z, 0, sizeof(REAL) * (size_t)q);
                    memset(l, 0, sizeof(REAL) * (size_t)kp);
                } else {
                    if (prune) /* approximate statistics: renormalised over the kept */
                        w = 1.0 / FN(prune_row)(l, k, top_c, min_post, tmp);
                    const REAL wr = (REAL)(sw ? w * sw[a + i] : w);
                    for (int64_t t = 0; t < q; t++)
                        z[t] *= wr;
                }
            }
        }
        if (compute_stats) {
            /* S (row-major k x q) = E^T (w Z) */
            FN(gemm)('N', 'T', q, k, mm, (REAL)1.0, Z, q, L, kp, (REAL)0.0, S, q);
            for (int64_t j = 0; j < k * q; j++)
                acc[j] += (double)S[j];
        }
    }
    *loglik = ll;
    ipem_free(Z), ipem_free(L), ipem_free(S), ipem_free(tmp);
    return IPEM_OK;
}

/* ------------------------------------------------------------------ */
/* top-C selection for a diagonal GMM (UBM scoring)                     */
/* ------------------------------------------------------------------ */
static int FN(gmm_diag_topc)(int64_t n, int64_t d, int64_t k, const REAL *X, int64_t ldx,
                             const REAL *shift, const REAL *W, int64_t top_c, int64_t chunk,
                             int64_t *index_out, double *logprob_out)
{
    const int64_t q = 2 * d + 1;
    const int64_t m = n < chunk ? (n > 0 ? n : 1) : chunk;
    const int64_t c = top_c;
    REAL *Z = (REAL *)ipem_malloc(sizeof(REAL) * (size_t)(m * q));
    REAL *L = (REAL *)ipem_malloc(sizeof(REAL) * (size_t)(m * k));
    REAL *val = (REAL *)ipem_malloc(sizeof(REAL) * (size_t)c);
    if (!Z || !L || !val) {
        ipem_free(Z), ipem_free(L), ipem_free(val);
        return IPEM_ERR_NOMEM;
    }
    for (int64_t a = 0; a < n; a += m) {
        const int64_t mm = a + m <= n ? m : n - a;
        for (int64_t i = 0; i < mm; i++) {
            const REAL *restrict x = X + (a + i) * ldx;
            REAL *restrict z = Z + i * q;
            for (int64_t t = 0; t < d; t++) {
                const REAL v = x[t] - shift[t];
                z[t] = v * v;
                z[d + t] = v;
            }
            z[2 * d] = 1;
        }
        FN(gemm)('N', 'N', k, mm, q, (REAL)1.0, W, k, Z, q, (REAL)0.0, L, k);
        for (int64_t i = 0; i < mm; i++) {
            const REAL *restrict l = L + i * k;
            int64_t *restrict idx = index_out + (a + i) * c;
            /* val/idx: the best so far, by descending value, ties by index */
            int64_t filled = 0, j = 0;
#define IPEM_TOPC_INSERT(jj)                                                            \
    do {                                                                                 \
        const REAL v = l[jj];                                                            \
        if (filled == c && !(v > val[c - 1]))                                            \
            break; /* the common case: not among the best */                            \
        int64_t p = filled < c ? filled : c - 1;                                         \
        while (p > 0 && v > val[p - 1]) { /* after every kept value >= v */              \
            val[p] = val[p - 1];                                                         \
            idx[p] = idx[p - 1];                                                         \
            p--;                                                                         \
        }                                                                                \
        val[p] = v;                                                                      \
        idx[p] = (jj);                                                                   \
        if (filled < c)                                                                  \
            filled++;                                                                    \
    } while (0)
            for (; j < k && filled < c; j++)
                IPEM_TOPC_INSERT(j);
            /* one vector at a time: skip it unless a value beats the C-th best */
            for (; j + VL <= k; j += VL) {
                const IVEC gt = FN(vload)(l + j) > FN(vbcast)(val[c - 1]);
                uint64_t words[IPEM_VBYTES / 8], any = 0;
                memcpy(words, &gt, sizeof gt);
                for (int w = 0; w < IPEM_VBYTES / 8; w++)
                    any |= words[w];
                if (!any)
                    continue;
                for (int64_t jj = j; jj < j + VL; jj++)
                    IPEM_TOPC_INSERT(jj);
            }
            for (; j < k; j++)
                IPEM_TOPC_INSERT(j);
#undef IPEM_TOPC_INSERT
            double mx = (double)val[0];
            for (int64_t u = 1; u < c; u++)
                if ((double)val[u] > mx)
                    mx = (double)val[u];
            if (!(mx > -INFINITY && mx < INFINITY))
                mx = 0.0;
            double sum = 0.0;
            for (int64_t u = 0; u < c; u++)
                sum += exp((double)val[u] - mx);
            logprob_out[a + i] = mx + log(sum);
        }
    }
    ipem_free(Z), ipem_free(L), ipem_free(val);
    return IPEM_OK;
}

/* ------------------------------------------------------------------ */
/* full-covariance GMM                                                  */
/* ------------------------------------------------------------------ */
static IPEM_INLINE REAL FN(sumsq)(const REAL *restrict y, int64_t dp)
{
    SSVEC s0 = {0}, s1 = {0};
    int64_t t = 0;
    for (; t + 2 * SSL <= dp; t += 2 * SSL) {
        SSVEC a, b;
        memcpy(&a, y + t, sizeof a);
        memcpy(&b, y + t + SSL, sizeof b);
        s0 += a * a;
        s1 += b * b;
    }
    for (; t < dp; t += SSL) {
        SSVEC a;
        memcpy(&a, y + t, sizeof a);
        s0 += a * a;
    }
    s0 += s1;
#if IPEM_VBYTES == 64 && !IPEM_F64 /* SSVEC is half a vector */
    ipem_v4f h[2];
    memcpy(h, &s0, sizeof s0);
    ipem_v4f v4 = h[0] + h[1];
    return (v4[0] + v4[2]) + (v4[1] + v4[3]);
#else
    return FN(hsum)(s0);
#endif
}

/* Work of one call, split in groups of whole chunks run by worker threads
 * (ipem_parallel.h); each group's float64 statistics are added in group
 * order, so the result does not depend on the number of threads.  With more
 * than one worker the caller limits the BLAS to one thread. */
typedef struct {
    int64_t n, d, k, ldx, dp, kb, m, mb, P, kp, G;
    const REAL *X, *shift, *U;
    const double *cst, *sw;
    double *logprob_out;
    void *resp_out;
    int resp_f64, stats, need_e;
    REAL **XC, **Y, **L, **Q, **S; /* per thread */
    double *acc, ll;
} FN(full_ctx);

typedef struct {
    double *acc; /* k x P, or NULL without statistics */
    double ll;
} FN(full_buf);

static void FN(full_chunk)(const FN(full_ctx) *c, int tid, int64_t a, int64_t mm,
                           FN(full_buf) *buf)
{
    const int64_t d = c->d, k = c->k, dp = c->dp, kb = c->kb, P = c->P, kp = c->kp;
    const int64_t q1 = d + 1, mb = c->mb;
    const double *sw = c->sw, *cst = c->cst;
    REAL *XC = c->XC[tid], *Y = c->Y[tid], *L = c->L[tid], *Q = c->Q[tid], *S = c->S[tid];
    for (int64_t i = 0; i < mm; i++) {
        const REAL *restrict x = c->X + (a + i) * c->ldx;
        REAL *restrict xc = XC + i * q1;
        for (int64_t t = 0; t < d; t++)
            xc[t] = x[t] - c->shift[t];
        xc[d] = 1;
    }
    for (int64_t j0 = 0; j0 < k; j0 += kb) {
        const int64_t kk = j0 + kb <= k ? kb : k - j0;
        const int64_t ldy = kk * dp;
        /* Y (row-major mm x kk*dp) = [x, 1] [U_j; -mu_j U_j]_j */
        FN(gemm)('N', 'N', ldy, mm, q1, (REAL)1.0, c->U + j0 * dp, k * dp, XC, q1,
                 (REAL)0.0, Y, ldy);
        for (int64_t i = 0; i < mm; i++) {
            const REAL *y = Y + i * ldy;
            REAL *restrict l = L + i * kp + j0;
            for (int64_t jj = 0; jj < kk; jj++)
                l[jj] = (REAL)(cst[j0 + jj] - 0.5 * (double)FN(sumsq)(y + jj * dp, dp));
        }
    }
    for (int64_t i = 0; i < mm; i++) {
        REAL *restrict l = L + i * kp;
        for (int64_t j = k; j < kp; j++)
            l[j] = (REAL)-INFINITY;
        double w;
        const double lp = FN(lse_row)(l, kp, c->need_e, &w);
        if (!sw)
            buf->ll += lp;
        else if (sw[a + i] != 0.0)
            buf->ll += sw[a + i] * lp;
        if (c->logprob_out)
            c->logprob_out[a + i] = lp;
        if (c->need_e) {
            /* normalise in place: K values per frame, fewer than Q's columns */
            const REAL wr = (REAL)w;
            for (int64_t j = 0; j < k; j++)
                l[j] *= wr;
        }
        if (c->resp_out)
            FN(write_resp)(c->resp_out, c->resp_f64, a + i, k, l, 1.0);
        if (sw && c->stats) {
            /* the frame weight scales the row of R in R^T Q (resp_out
             * above stays unweighted) */
            const double wn = sw[a + i];
            if (wn == 0.0) {
                /* dropped frame: zero its responsibilities and its x (the
                 * source of its Q row), which may be NaN or inf */
                memset(l, 0, sizeof(REAL) * (size_t)k);
                memset(XC + i * q1, 0, sizeof(REAL) * (size_t)d);
            } else {
                const REAL swr = (REAL)wn;
                for (int64_t j = 0; j < k; j++)
                    l[j] *= swr;
            }
        }
    }
    if (!c->stats)
        return;
    for (int64_t r0 = 0; r0 < mm; r0 += mb) {
        const int64_t rr = r0 + mb <= mm ? mb : mm - r0;
        /* Q rows = [1, x, x_t x_u (t <= u)].  Each segment is written
         * with whole vectors; a vector running past the segment's end
         * (reading past x's end) is overwritten by the next segment or
         * the next row, and the last one lands in the slack. */
        for (int64_t i = 0; i < rr; i++) {
            const REAL *xc = XC + (r0 + i) * q1;
            REAL *qrow = Q + i * P;
            for (int64_t u = 0; u < d; u += VL)
                FN(vstore)(qrow + 1 + u, FN(vload)(xc + u));
            qrow[0] = 1;
            int64_t off = 1 + d;
            for (int64_t t = 0; t < d; t++) {
                const VEC xt = FN(vbcast)(xc[t]);
                REAL *dst = qrow + off - t;
                for (int64_t u = t; u < d; u += VL)
                    FN(vstore)(dst + u, xt * FN(vload)(xc + u));
                off += d - t;
            }
        }
        /* S (column-major k x P) (+)= R^T Q, R = the responsibilities */
        FN(gemm)('N', 'T', k, P, rr, (REAL)1.0, L + r0 * kp, kp, Q, P,
                 (REAL)(r0 ? 1.0 : 0.0), S, k);
    }
    for (int64_t j = 0; j < k; j++) {
        double *restrict arow = buf->acc + j * P;
        for (int64_t p = 0; p < P; p++)
            arow[p] += (double)S[p * k + j];
    }
}

static void FN(full_work)(void *ctx, int tid, int64_t g, void *bufp)
{
    const FN(full_ctx) *c = (const FN(full_ctx) *)ctx;
    FN(full_buf) *buf = (FN(full_buf) *)bufp;
    buf->ll = 0.0;
    if (c->stats)
        memset(buf->acc, 0, sizeof(double) * (size_t)(c->k * c->P));
    const int64_t a0 = g * c->G, a1 = a0 + c->G < c->n ? a0 + c->G : c->n;
    for (int64_t a = a0; a < a1; a += c->m)
        FN(full_chunk)(c, tid, a, a + c->m <= a1 ? c->m : a1 - a, buf);
}

static void FN(full_commit)(void *ctx, int64_t g, void *bufp)
{
    (void)g;
    FN(full_ctx) *c = (FN(full_ctx) *)ctx;
    const FN(full_buf) *buf = (const FN(full_buf) *)bufp;
    c->ll += buf->ll;
    if (c->stats)
        for (int64_t j = 0; j < c->k * c->P; j++)
            c->acc[j] += buf->acc[j];
}

static int FN(gmm_full)(int64_t n, int64_t d, int64_t k, const REAL *X, int64_t ldx,
                        const REAL *shift, const REAL *U, int64_t dp, const double *cst,
                        int64_t chunk, int64_t kblock, const double *sw,
                        double *logprob_out, void *resp_out, int resp_f64,
                        int compute_stats, double *acc, double *loglik, int nthreads)
{
    FN(full_ctx) c;
    memset(&c, 0, sizeof c);
    c.n = n, c.d = d, c.k = k, c.ldx = ldx, c.dp = dp, c.X = X, c.shift = shift, c.U = U;
    c.cst = cst, c.sw = sw, c.logprob_out = logprob_out, c.resp_out = resp_out;
    c.resp_f64 = resp_f64, c.stats = compute_stats != 0;
    c.need_e = compute_stats || resp_out != NULL;
    c.P = 1 + d + d * (d + 1) / 2;
    c.kp = IPEM_ROUND_UP(k, VL);
    c.m = n < chunk ? (n > 0 ? n : 1) : chunk;
    c.kb = kblock < k ? kblock : k;
    /* rows per statistics GEMM: keeps the quadratic-feature block <= ~2 MB */
    int64_t mb = (int64_t)((2 << 20) / (sizeof(REAL) * (size_t)c.P));
    mb = mb < 32 ? 32 : mb;
    c.mb = mb < c.m ? mb : c.m;
    /* frames per group: whole chunks, ~4096 frames (independent of the threads) */
    int64_t gb = (4096 + c.m / 2) / c.m;
    c.G = c.m * (gb < 1 ? 1 : gb);
    c.acc = acc;
    if (c.stats)
        memset(acc, 0, sizeof(double) * (size_t)(k * c.P));
    const int64_t ngroups = n > 0 ? (n + c.G - 1) / c.G : 0;
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > ngroups)
        nthreads = ngroups > 0 ? (int)ngroups : 1;
    if (nthreads > 64)
        nthreads = 64;
    const int nbufs = nthreads + 1;
    REAL *XC[64] = {0}, *Y[64] = {0}, *L[64] = {0}, *Q[64] = {0}, *S[64] = {0};
    FN(full_buf) bufs[65];
    void *bptr[65];
    const int64_t q1 = d + 1, m = c.m;
    int ok = 1;
    for (int t = 0; t < nthreads && ok; t++) {
        /* XC and Q get VL elements of slack: the Q rows are built with whole
         * vectors that may run past a segment's end */
        XC[t] = (REAL *)ipem_calloc(sizeof(REAL) * (size_t)(m * q1 + VL));
        Y[t] = (REAL *)ipem_malloc(sizeof(REAL) * (size_t)(m * c.kb * dp));
        L[t] = (REAL *)ipem_calloc(sizeof(REAL) * (size_t)(m * c.kp));
        ok = XC[t] && Y[t] && L[t];
        if (ok && c.stats) {
            Q[t] = (REAL *)ipem_malloc(sizeof(REAL) * (size_t)(c.mb * c.P + VL));
            S[t] = (REAL *)ipem_malloc(sizeof(REAL) * (size_t)(k * c.P));
            ok = Q[t] && S[t];
        }
    }
    for (int b = 0; b < nbufs; b++) {
        bufs[b].acc = NULL;
        bptr[b] = &bufs[b];
        if (ok && c.stats) {
            bufs[b].acc = (double *)ipem_malloc(sizeof(double) * (size_t)(k * c.P));
            ok = bufs[b].acc != NULL;
        }
    }
    int rc = IPEM_ERR_NOMEM;
    if (ok) {
        c.XC = XC, c.Y = Y, c.L = L, c.Q = Q, c.S = S;
        rc = ipem_sched_run(ngroups, nthreads, bptr, nbufs, FN(full_work), FN(full_commit), &c);
    }
    *loglik = c.ll;
    for (int t = 0; t < 64; t++) {
        ipem_free(XC[t]), ipem_free(Y[t]), ipem_free(L[t]), ipem_free(Q[t]), ipem_free(S[t]);
    }
    for (int b = 0; b < nbufs; b++)
        ipem_free(bufs[b].acc);
    return rc;
}

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
