/* ipem_fused_kmeans_avx512.h -- fused float32 k-means (Lloyd) step for
 * AVX-512, optionally with Hamerly's distance bounds, with its own
 * register-tiled distance products and worker threads.
 * Included by ipem_fused_avx512.h. */

/* ------------------------------------------------------------------ */
/* k-means (Lloyd) assignment step, float32, fused, with optional bounds */
/* ------------------------------------------------------------------ */
/* Frames run along the lanes: a tile is 32 frames x 8 centres of dot
 * products x.c accumulated over the features with broadcast FMAs (the frames
 * of a tile are packed feature-major, XT[p][0:32]; the centres in groups of
 * 8, Cp[g][p][0:8]).  d = |c|^2 - 2 x.c is formed as fma(-2, x.c, |c|^2),
 * which rounds exactly as |c|^2 + (-2 x.c) since the product by -2 is exact;
 * the running minimum over centres visited in increasing order with a strict
 * < keeps the lowest index of ties, as np.argmin.  Counts, sums and inertia
 * of a group are float64 partials added in group order.
 *
 * Bounds (Hamerly's algorithm, made safe for float32): with `upper` given,
 * upper[i] >= |x_i - c_label| and lower[i] <= |x_i - c_j| for every other
 * centre j hold on return (true distances between the float32 frame and
 * centres).  On the next call, given how far every centre moved (drift) and
 * half the distance of each centre to its nearest other centre (half_sep),
 * a frame keeps its label without the distances to the other centres when
 *     max(lower - max drift, 2 half_sep[a] - U)^2 - U^2 > 2 E,
 * U the upper bound tightened from the frame's computed distance to its
 * centre and E a bound on the float32 rounding error of one computed squared
 * distance, (d + 4) 2^-24 (|x| + max |c|)^2 times a safety factor of 2.  So
 * the float32 distances that the full computation would compare cannot reach
 * a tie: labels, distances and statistics are bit-identical to the full
 * step (the frame's own distance is computed with the same operations, in
 * the same order, as in a tile). */
#define FK_R 8   /* centres per tile */
#define FK_F 32  /* frames per tile */

typedef struct {
    int64_t n, d, k, ldx, kr, m, G;
    const float *X, *shift, *C, *Cp, *csq;
    const double *sw;
    int64_t *labels;
    double *mindist;
    double *upper, *lower;              /* NULL: no bounds */
    const double *drift, *half_sep;     /* drift NULL: bounds not valid yet */
    double dmax1, dmax2, cnorm, eps;
    int64_t jmax;
    /* per thread */
    float **XT, **bv, **sv, **xq;
    int32_t **lb, **lst;
    uint8_t **full;
    /* totals */
    double *counts, *sums, inertia;
    int64_t n_changed, n_full;
} fkm_ctx;

typedef struct {
    double *counts, *sums;
    double inertia;
    int64_t n_changed, n_full;
} fkm_buf;

/* Nearest centre of the 32 packed frames xt (and the second nearest value
 * when `second`): best/second squared distances (|x|^2 included), index, |x|^2. */
static IPEM_INLINE void fk_tile(const fkm_ctx *c, const float *restrict xt, int second,
                                float *bv, float *sv, float *xq, int32_t *lb)
{
    const int64_t d = c->d;
    __m512 b0 = _mm512_set1_ps(INFINITY), b1 = b0, s0 = b0, s1 = b0;
    __m512i i0 = _mm512_setzero_si512(), i1 = i0;
    const __m512 m2 = _mm512_set1_ps(-2.0f);
    for (int64_t g = 0; g < c->kr; g += FK_R) {
        const float *restrict cp = c->Cp + g * d;
        __m512 acc[FK_R][2];
        for (int r = 0; r < FK_R; r++)
            acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        for (int64_t p = 0; p < d; p++) {
            const __m512 x0 = fd_load(xt + p * FK_F), x1 = fd_load(xt + p * FK_F + 16);
            for (int r = 0; r < FK_R; r++) {
                const __m512 cb = _mm512_set1_ps(cp[p * FK_R + r]);
                acc[r][0] = _mm512_fmadd_ps(cb, x0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(cb, x1, acc[r][1]);
            }
        }
        for (int r = 0; r < FK_R; r++) {
            const __m512 cs = _mm512_set1_ps(c->csq[g + r]);
            const __m512i jv = _mm512_set1_epi32((int)(g + r));
            const __m512 v0 = _mm512_fmadd_ps(acc[r][0], m2, cs);
            const __m512 v1 = _mm512_fmadd_ps(acc[r][1], m2, cs);
            const __mmask16 l0 = _mm512_cmp_ps_mask(v0, b0, _CMP_LT_OQ);
            const __mmask16 l1 = _mm512_cmp_ps_mask(v1, b1, _CMP_LT_OQ);
            if (second) { /* the old best if beaten, else min(second, v) */
                s0 = _mm512_mask_mov_ps(_mm512_min_ps(v0, s0), l0, b0);
                s1 = _mm512_mask_mov_ps(_mm512_min_ps(v1, s1), l1, b1);
            }
            b0 = _mm512_mask_mov_ps(b0, l0, v0);
            b1 = _mm512_mask_mov_ps(b1, l1, v1);
            i0 = _mm512_mask_mov_epi32(i0, l0, jv);
            i1 = _mm512_mask_mov_epi32(i1, l1, jv);
        }
    }
    __m512 q0 = _mm512_setzero_ps(), q1 = q0;
    for (int64_t p = 0; p < d; p++) {
        const __m512 x0 = fd_load(xt + p * FK_F), x1 = fd_load(xt + p * FK_F + 16);
        q0 = _mm512_fmadd_ps(x0, x0, q0);
        q1 = _mm512_fmadd_ps(x1, x1, q1);
    }
    _mm512_storeu_ps(bv, _mm512_add_ps(b0, q0));
    _mm512_storeu_ps(bv + 16, _mm512_add_ps(b1, q1));
    if (second) {
        _mm512_storeu_ps(sv, _mm512_add_ps(s0, q0));
        _mm512_storeu_ps(sv + 16, _mm512_add_ps(s1, q1));
    }
    _mm512_storeu_ps(xq, q0);
    _mm512_storeu_ps(xq + 16, q1);
    _mm512_storeu_si512((void *)lb, i0);
    _mm512_storeu_si512((void *)(lb + 16), i1);
}

/* Squared-distance error bound of a frame with |x|^2 = q. */
static IPEM_INLINE double fk_err(const fkm_ctx *c, double q)
{
    const double r = sqrt(q > 0 ? q : 0.0) + c->cnorm;
    return c->eps * r * r;
}

static void fk_block(const fkm_ctx *c, int tid, int64_t a, int64_t mm, fkm_buf *buf)
{
    const int64_t d = c->d;
    const float *restrict shift = c->shift;
    float *restrict XT = c->XT[tid], *restrict bv = c->bv[tid], *restrict sv = c->sv[tid];
    float *restrict xq = c->xq[tid];
    int32_t *restrict lb = c->lb[tid], *restrict lst = c->lst[tid];
    uint8_t *restrict full = c->full[tid];
    const int bounded = c->upper != NULL;
    int64_t nl = 0;
    if (bounded && c->drift) {
        /* the frame's own centre first: keep the label when the bounds allow;
         * 8 frames at a time so that their FMA chains overlap */
        for (int64_t i0 = 0; i0 < mm; i0 += 8) {
            const int nf = mm - i0 < 8 ? (int)(mm - i0) : 8;
            const float *xr[8], *cr[8];
            float dot[8], q[8];
            for (int f = 0; f < 8; f++) {
                const int64_t ai = a + i0 + (f < nf ? f : 0), j = c->labels[ai];
                xr[f] = c->X + ai * c->ldx;
                cr[f] = c->C + (j >= 0 && j < c->k ? j : 0) * d;
                dot[f] = q[f] = 0.0f;
            }
            if (i0 + 16 <= mm) { /* the next 8 frames' rows: 8 streams outrun the prefetcher */
                const char *nx = (const char *)(c->X + (a + i0 + 8) * c->ldx);
                const int64_t bytes = 8 * c->ldx * (int64_t)sizeof(float);
                for (int64_t o = 0; o < bytes; o += 64)
                    __builtin_prefetch(nx + o);
            }
            for (int64_t p = 0; p < d; p++) { /* the operations of a tile's lane */
                for (int f = 0; f < 8; f++) {
                    const float v = xr[f][p] - shift[p];
                    dot[f] = fmaf(cr[f][p], v, dot[f]);
                    q[f] = fmaf(v, v, q[f]);
                }
            }
            for (int f = 0; f < nf; f++) {
                const int64_t i = i0 + f, ai = a + i, j = c->labels[ai];
                full[i] = 1;
                if (j < 0 || j >= c->k) {
                    lst[nl++] = (int32_t)i;
                    continue;
                }
                const float dist = fmaf(dot[f], -2.0f, c->csq[j]) + q[f];
                const double e = fk_err(c, (double)q[f]);
                const double du = (double)dist + e;
                const double U = sqrt(du > 0 ? du : 0.0);
                const double l = c->lower[ai] - (j == c->jmax ? c->dmax2 : c->dmax1);
                const double s2 = 2.0 * c->half_sep[j] - U;
                const double L = l > s2 ? l : s2;
                if (L > 0 && L * L - U * U > 2.0 * e) {
                    full[i] = 0;
                    bv[i] = dist;
                    lb[i] = (int32_t)j;
                    c->upper[ai] = U;
                    c->lower[ai] = l;
                } else {
                    lst[nl++] = (int32_t)i;
                }
            }
        }
    } else {
        for (int64_t i = 0; i < mm; i++) {
            full[i] = 1;
            lst[i] = (int32_t)i;
        }
        nl = mm;
    }
    /* every other frame against all centres, 32 frames per tile */
    for (int64_t u0 = 0; u0 < nl; u0 += FK_F) {
        const int64_t nv = nl - u0 < FK_F ? nl - u0 : FK_F;
        for (int64_t u = 0; u < FK_F; u++) {
            float *restrict xt = XT + u;
            if (u < nv) {
                const float *restrict x = c->X + (a + lst[u0 + u]) * c->ldx;
                for (int64_t p = 0; p < d; p++)
                    xt[p * FK_F] = x[p] - shift[p];
            } else {
                for (int64_t p = 0; p < d; p++)
                    xt[p * FK_F] = 0.0f;
            }
        }
        float tb[FK_F], ts[FK_F], tq[FK_F];
        int32_t tl[FK_F];
        if (bounded)
            fk_tile(c, XT, 1, tb, ts, tq, tl);
        else
            fk_tile(c, XT, 0, tb, ts, tq, tl);
        for (int64_t u = 0; u < nv; u++) {
            const int64_t i = lst[u0 + u];
            bv[i] = tb[u], lb[i] = tl[u];
            if (bounded)
                sv[i] = ts[u], xq[i] = tq[u];
        }
    }
    buf->n_full += nl;
    /* outputs and statistics in frame order */
    for (int64_t i = 0; i < mm; i++) {
        const int64_t ai = a + i, j = lb[i];
        const double md = bv[i] < 0 ? 0.0 : (double)bv[i];
        if (bounded && full[i]) {
            const double e = fk_err(c, (double)xq[i]);
            const double du = (double)bv[i] + e, dl = (double)sv[i] - e;
            c->upper[ai] = sqrt(du > 0 ? du : 0.0);
            c->lower[ai] = dl > 0 ? sqrt(dl) : 0.0; /* +inf when k == 1 */
        }
        if (c->labels[ai] != j)
            buf->n_changed++;
        c->labels[ai] = j;
        c->mindist[ai] = md;
        const double wn = c->sw ? c->sw[ai] : 1.0;
        if (wn == 0.0)
            continue; /* a frame of weight 0 adds nothing (not even 0 * inf) */
        buf->inertia += c->sw ? wn * md : md;
        buf->counts[j] += wn;
        double *restrict srow = buf->sums + j * d;
        const float *restrict x = c->X + ai * c->ldx;
        if (c->sw)
            for (int64_t p = 0; p < d; p++)
                srow[p] += wn * (double)(x[p] - shift[p]);
        else
            for (int64_t p = 0; p < d; p++)
                srow[p] += (double)(x[p] - shift[p]);
    }
}

static void fk_work(void *ctx, int tid, int64_t g, void *bufp)
{
    const fkm_ctx *c = (const fkm_ctx *)ctx;
    fkm_buf *buf = (fkm_buf *)bufp;
    buf->inertia = 0.0;
    buf->n_changed = buf->n_full = 0;
    memset(buf->counts, 0, sizeof(double) * (size_t)c->k);
    memset(buf->sums, 0, sizeof(double) * (size_t)(c->k * c->d));
    const int64_t a0 = g * c->G, a1 = a0 + c->G < c->n ? a0 + c->G : c->n;
    for (int64_t a = a0; a < a1; a += c->m)
        fk_block(c, tid, a, a + c->m <= a1 ? c->m : a1 - a, buf);
}

static void fk_commit(void *ctx, int64_t g, void *bufp)
{
    (void)g;
    fkm_ctx *c = (fkm_ctx *)ctx;
    const fkm_buf *buf = (const fkm_buf *)bufp;
    c->inertia += buf->inertia;
    c->n_changed += buf->n_changed;
    c->n_full += buf->n_full;
    for (int64_t j = 0; j < c->k; j++)
        c->counts[j] += buf->counts[j];
    for (int64_t j = 0; j < c->k * c->d; j++)
        c->sums[j] += buf->sums[j];
}

#define FK_BLOCK_FRAMES 512
#define FK_GROUP_FRAMES 4096

/* upper == NULL: a plain Lloyd step (labels are output only). */
static int kmeans_fused_f32_avx512(int64_t n, int64_t d, int64_t k, const float *X, int64_t ldx,
                                   const float *shift, const float *C, const float *csq,
                                   int64_t chunk, const double *sw, int64_t *labels,
                                   double *mindist, double *upper, double *lower,
                                   const double *drift, const double *half_sep,
                                   double cnorm, double *counts, double *sums,
                                   double *inertia, int64_t *n_changed, int64_t *n_full,
                                   int nthreads)
{
    fkm_ctx c;
    memset(&c, 0, sizeof c);
    c.n = n, c.d = d, c.k = k, c.ldx = ldx, c.X = X, c.shift = shift, c.sw = sw, c.C = C;
    c.labels = labels, c.mindist = mindist, c.counts = counts, c.sums = sums;
    c.upper = upper, c.lower = lower, c.drift = upper ? drift : NULL, c.half_sep = half_sep;
    c.cnorm = cnorm;
    c.eps = 2.0 * (double)(d + 4) * 5.9604644775390625e-08; /* 2 (d + 4) 2^-24 */
    c.dmax1 = c.dmax2 = 0.0;
    c.jmax = -1;
    if (c.drift) {
        for (int64_t j = 0; j < k; j++) {
            const double v = c.drift[j];
            if (v > c.dmax1)
                c.dmax2 = c.dmax1, c.dmax1 = v, c.jmax = j;
            else if (v > c.dmax2)
                c.dmax2 = v;
        }
    }
    c.kr = IPEM_ROUND_UP(k, FK_R);
    int64_t m = chunk < FK_BLOCK_FRAMES ? (chunk > 0 ? chunk : 1) : FK_BLOCK_FRAMES;
    if (n > 0 && n < m)
        m = n;
    c.m = m;
    int64_t gb = (FK_GROUP_FRAMES + m / 2) / m;
    c.G = m * (gb < 1 ? 1 : gb);
    memset(counts, 0, sizeof(double) * (size_t)k);
    memset(sums, 0, sizeof(double) * (size_t)(k * d));
    const int64_t ngroups = n > 0 ? (n + c.G - 1) / c.G : 0;
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > ngroups)
        nthreads = ngroups > 0 ? (int)ngroups : 1;
    if (nthreads > 64)
        nthreads = 64;
    const int nbufs = nthreads + 1;
    float *Cp = (float *)ipem_malloc(sizeof(float) * (size_t)(c.kr * d));
    float *cs = (float *)ipem_malloc(sizeof(float) * (size_t)c.kr);
    float *XTs[64] = {0}, *bvs[64] = {0}, *svs[64] = {0}, *xqs[64] = {0};
    int32_t *lbs[64] = {0}, *lsts[64] = {0};
    uint8_t *fulls[64] = {0};
    fkm_buf bufs[65];
    void *bptr[65];
    int ok = Cp && cs;
    for (int t = 0; t < nthreads && ok; t++) {
        XTs[t] = (float *)ipem_malloc(sizeof(float) * (size_t)(FK_F * d));
        bvs[t] = (float *)ipem_malloc(sizeof(float) * (size_t)m);
        svs[t] = (float *)ipem_malloc(sizeof(float) * (size_t)m);
        xqs[t] = (float *)ipem_malloc(sizeof(float) * (size_t)m);
        lbs[t] = (int32_t *)ipem_malloc(sizeof(int32_t) * (size_t)m);
        lsts[t] = (int32_t *)ipem_malloc(sizeof(int32_t) * (size_t)m);
        fulls[t] = (uint8_t *)ipem_malloc((size_t)m);
        ok = XTs[t] && bvs[t] && svs[t] && xqs[t] && lbs[t] && lsts[t] && fulls[t];
    }
    for (int b = 0; b < nbufs; b++) {
        bufs[b].counts = bufs[b].sums = NULL;
        bptr[b] = &bufs[b];
        if (ok) {
            bufs[b].counts = (double *)ipem_malloc(sizeof(double) * (size_t)k);
            bufs[b].sums = (double *)ipem_malloc(sizeof(double) * (size_t)(k * d));
            ok = bufs[b].counts && bufs[b].sums;
        }
    }
    int rc = IPEM_ERR_NOMEM;
    if (ok) {
        for (int64_t g = 0; g < c.kr; g += FK_R)
            for (int64_t p = 0; p < d; p++)
                for (int64_t r = 0; r < FK_R; r++)
                    Cp[g * d + p * FK_R + r] = g + r < k ? C[(g + r) * d + p] : 0.0f;
        for (int64_t j = 0; j < c.kr; j++)
            cs[j] = j < k ? csq[j] : INFINITY; /* padding centres are never nearest */
        c.Cp = Cp, c.csq = cs, c.XT = XTs, c.bv = bvs, c.sv = svs, c.xq = xqs;
        c.lb = lbs, c.lst = lsts, c.full = fulls;
        rc = ipem_sched_run(ngroups, nthreads, bptr, nbufs, fk_work, fk_commit, &c);
    }
    *inertia = c.inertia;
    if (n_changed)
        *n_changed = c.n_changed;
    if (n_full)
        *n_full = c.n_full;
    for (int t = 0; t < 64; t++) {
        ipem_free(XTs[t]), ipem_free(bvs[t]), ipem_free(svs[t]), ipem_free(xqs[t]);
        ipem_free(lbs[t]), ipem_free(lsts[t]), ipem_free(fulls[t]);
    }
    for (int b = 0; b < nbufs; b++)
        ipem_free(bufs[b].counts), ipem_free(bufs[b].sums);
    ipem_free(Cp), ipem_free(cs);
    return rc;
}
