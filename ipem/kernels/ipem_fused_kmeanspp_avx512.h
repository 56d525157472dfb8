/* ipem_fused_kmeanspp_avx512.h -- fused float32 k-means++ trials for
 * AVX-512: distances of every frame to up to 16 candidate centres and their
 * potentials, in one pass over the frames.
 * Included by ipem_fused_avx512.h. */

/* ------------------------------------------------------------------ */
/* k-means++ trials: distances to a few candidate centres              */
/* ------------------------------------------------------------------ */
/* For k <= 16 candidates (along the lanes) and 8 frames at a time (their
 * features broadcast): dist_out[i, j] = max(0, |c_j|^2 - 2 x_i.c_j + |x_i|^2)
 * computed with exactly the operations of the k-means kernel (so equal to its
 * mindist for that centre), and pots[j] = sum_i s_i min(closest_i, dist_ij). */
typedef struct {
    int64_t n, d, k, ldx, G;
    const float *X, *shift, *CT, *csq; /* CT: d x 16, csq: 16 (padding 0) */
    const double *closest, *sw;
    double *dist_out, *pots;
} fpp_ctx;

typedef struct {
    double pots[16];
} fpp_buf;

static void fp_work(void *ctx, int tid, int64_t g, void *bufp)
{
    (void)tid;
    const fpp_ctx *c = (const fpp_ctx *)ctx;
    fpp_buf *buf = (fpp_buf *)bufp;
    const int64_t d = c->d, k = c->k;
    const __mmask16 km = (__mmask16)((1u << k) - 1u);
    const __m512 m2 = _mm512_set1_ps(-2.0f), cs = fd_load(c->csq);
    __m512d p0 = _mm512_setzero_pd(), p1 = p0;
    const int64_t a0 = g * c->G, a1 = a0 + c->G < c->n ? a0 + c->G : c->n;
    for (int64_t i0 = a0; i0 < a1; i0 += 8) {
        const int nf = a1 - i0 < 8 ? (int)(a1 - i0) : 8;
        const float *xr[8];
        __m512 acc[8];
        float q[8];
        for (int f = 0; f < 8; f++) {
            xr[f] = c->X + (i0 + (f < nf ? f : 0)) * c->ldx;
            acc[f] = _mm512_setzero_ps();
            q[f] = 0.0f;
        }
        for (int64_t p = 0; p < d; p++) {
            const __m512 cv = fd_load(c->CT + p * 16);
            for (int f = 0; f < 8; f++) {
                const float v = xr[f][p] - c->shift[p];
                acc[f] = _mm512_fmadd_ps(_mm512_set1_ps(v), cv, acc[f]);
                q[f] = fmaf(v, v, q[f]);
            }
        }
        for (int f = 0; f < nf; f++) {
            const int64_t i = i0 + f;
            __m512 v = _mm512_add_ps(_mm512_fmadd_ps(acc[f], m2, cs), _mm512_set1_ps(q[f]));
            v = _mm512_max_ps(v, _mm512_setzero_ps()); /* dist < 0 -> 0 (NaN stays) */
            const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            const __m512d hi = _mm512_cvtps_pd(
                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
            if (c->dist_out) {
                double *o = c->dist_out + i * k;
                _mm512_mask_storeu_pd(o, (__mmask8)(km & 0xFF), lo);
                if (k > 8)
                    _mm512_mask_storeu_pd(o + 8, (__mmask8)(km >> 8), hi);
            }
            const double w = c->sw ? c->sw[i] : 1.0;
            if (w == 0.0)
                continue;
            __m512d m0 = lo, m1 = hi;
            if (c->closest) {
                const __m512d cl = _mm512_set1_pd(c->closest[i]);
                m0 = _mm512_min_pd(cl, lo); /* NaN distance -> the closest value, as np.minimum? */
                m1 = _mm512_min_pd(cl, hi);
            }
            if (c->sw) {
                p0 = _mm512_fmadd_pd(_mm512_set1_pd(w), m0, p0);
                p1 = _mm512_fmadd_pd(_mm512_set1_pd(w), m1, p1);
            } else {
                p0 = _mm512_add_pd(p0, m0);
                p1 = _mm512_add_pd(p1, m1);
            }
        }
    }
    _mm512_storeu_pd(buf->pots, p0);
    _mm512_storeu_pd(buf->pots + 8, p1);
}

static void fp_commit(void *ctx, int64_t g, void *bufp)
{
    (void)g;
    fpp_ctx *c = (fpp_ctx *)ctx;
    const fpp_buf *buf = (const fpp_buf *)bufp;
    for (int64_t j = 0; j < c->k; j++)
        c->pots[j] += buf->pots[j];
}

static int kmeans_pp_f32_avx512(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                                const float *shift, const float *C, const float *csq,
                                const double *closest, const double *sw, double *dist_out,
                                double *pots, int nthreads)
{
    fpp_ctx c;
    memset(&c, 0, sizeof c);
    c.n = n, c.d = d, c.k = k, c.ldx = ldx, c.X = X, c.shift = shift;
    c.closest = closest, c.sw = sw, c.dist_out = dist_out, c.pots = pots;
    c.G = 4096;
    for (int64_t j = 0; j < k; j++)
        pots[j] = 0.0;
    const int64_t ngroups = n > 0 ? (n + c.G - 1) / c.G : 0;
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > ngroups)
        nthreads = ngroups > 0 ? (int)ngroups : 1;
    if (nthreads > 64)
        nthreads = 64;
    float *CT = (float *)ipem_malloc(sizeof(float) * (size_t)(d * 16 + 16));
    fpp_buf bufs[65];
    void *bptr[65];
    if (!CT)
        return IPEM_ERR_NOMEM;
    for (int64_t p = 0; p < d; p++)
        for (int64_t j = 0; j < 16; j++)
            CT[p * 16 + j] = j < k ? C[j * d + p] : 0.0f;
    float *cs = CT + d * 16;
    for (int64_t j = 0; j < 16; j++)
        cs[j] = j < k ? csq[j] : 0.0f;
    c.CT = CT, c.csq = cs;
    for (int b = 0; b <= nthreads; b++)
        bptr[b] = &bufs[b];
    const int rc = ipem_sched_run(ngroups, nthreads, bptr, nthreads + 1, fp_work, fp_commit, &c);
    ipem_free(CT);
    return rc;
}
