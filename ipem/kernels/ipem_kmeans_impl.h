/* ipem_kmeans_impl.h -- the k-means (Lloyd) assignment step on the BLAS.
 *
 * G = -2 C X^T (GEMM, k x chunk), d_jn = |c_j|^2 + G_jn, argmin over j as a
 * vertical vector min with frames in the lanes (ties -> lowest index, as
 * np.argmin), scatter-add of s_n, s_n x_n and s_n d_n in float64.
 *
 * Part of the per-(instruction set, dtype) body of the kernels: included by
 * ipem_kernels_impl.h, which defines REAL, VEC, VL, FN(...) and the other
 * type macros; no include guard (included once per copy). */

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
