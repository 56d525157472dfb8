/* ipem_full_impl.h -- the full-covariance GMM E-step on the BLAS, run by
 * worker threads (ipem_parallel.h).
 *
 * Y = [x, 1] [U_j; -mu_j U_j]_j for a block of components in one GEMM (each
 * component's columns padded to dp, a multiple of 8), the Mahalanobis terms
 * are row sums of squares of Y; row-wise log-sum-exp, then the K
 * responsibilities of each frame are normalised in place (and multiplied by
 * the frame weight s_n after resp_out was written); statistics S = R^T Q
 * with Q = [1, x, upper triangle of x x^T]: one GEMM with d(d+1)/2 instead
 * of d^2 columns per component.
 *
 * Part of the per-(instruction set, dtype) body of the kernels: included by
 * ipem_kernels_impl.h, which defines REAL, VEC, VL, FN(...) and the other
 * type macros; no include guard (included once per copy). */

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
