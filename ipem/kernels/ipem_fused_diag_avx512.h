/* ipem_fused_diag_avx512.h -- fused float32 E-step of a diagonal GMM for
 * AVX-512, with its own matrix-product micro-kernels and worker threads.
 *
 * Included by ipem_fused_avx512.h.  Semantics are those of gmm_diag (see
 * ipem_kernels.h); only the order of float32 roundings differs.
 *
 * Per group of G frames (the unit of work of a thread, see ipem_parallel.h),
 * per block of m frames (m x K log-likelihoods stay in the core's L2 cache):
 *   1. Z = [x^2, x, 1] of the shifted frames (row stride qs, zero padded).
 *   2. L = Z W: a 12-frame x 32-component register tile accumulated over the
 *      2d+1 inputs with broadcast FMAs; W is packed once per call in panels of
 *      32 components (W_p[jb][p][0:32]), so each panel sits in L1.
 *   3. per frame: row max, E = exp(L - max) (vectors whose 16 entries all lie
 *      more than 87.3 below the max give exactly 0 and skip the exp), the
 *      log-likelihood, the frame scale w_n s_n / sum E folded into its Z row.
 *   4. statistics S^T (features x components) += Zw^T E, skipping zeros
 *      exactly: a 32-component block of a frame whose E entries are all 0 is
 *      skipped; one with at most IPEM_SPARSE_MAX non-zero entries is added as
 *      rank-1 updates of those components' rows (Ssp); the rest goes through
 *      an 11-feature x 32-component register tile over the block's frames.
 * A group's float32 partials are added to the float64 totals in group order.
 */

#define FD_R 12         /* frames per log-likelihood tile */
#define FD_T 11         /* features per statistics tile */
#define FD_JB 32        /* components per panel / block */
#define IPEM_SPARSE_MAX 8

typedef struct {
    int64_t n, d, k, ldx, q, qs, qt, kp, ldl, m, mr, G, nb;
    const float *X, *shift, *Wp;
    const double *sw;
    double *logprob_out;
    void *resp_out;
    int resp_f64, stats, prune;
    int64_t top_c;
    double min_post;
    /* per-thread scratch */
    float **Z, **L, **VM; /* VM: mr x 16 running row maxima */
    float **tmp;          /* k floats (approximate statistics) */
    int32_t **lists; /* [nb][m] frame indices of the dense blocks */
    int32_t **cnt;   /* [nb] */
    uint32_t **bmask; /* [nb] non-zero mask of one frame's blocks */
    /* totals */
    double *acc;
    double ll;
} fdiag_ctx;

typedef struct {
    float *St;  /* qt x kp: dense statistics, feature-major */
    float *Ssp; /* kp x qs: sparse statistics, component-major */
    double ll;
} fdiag_buf;


/* L[0:mr, jb*32 : jb*32+32] for all panels; Z rows beyond the block are zero. */
static void fd_loglik(const fdiag_ctx *c, const float *restrict Z, float *restrict L,
                      float *restrict VM, int64_t mr)
{
    const int64_t q = c->q, qs = c->qs, ldl = c->ldl;
    for (int64_t jb = 0; jb < c->nb; jb++) {
        const float *restrict wp = c->Wp + jb * q * FD_JB;
        for (int64_t i0 = 0; i0 < mr; i0 += FD_R) {
            const float *restrict z = Z + i0 * qs;
            __m512 a[FD_R][2];
            for (int r = 0; r < FD_R; r++)
                a[r][0] = a[r][1] = _mm512_setzero_ps();
            for (int64_t p = 0; p < q; p++) {
                const __m512 w0 = fd_load(wp + p * FD_JB), w1 = fd_load(wp + p * FD_JB + 16);
                for (int r = 0; r < FD_R; r++) {
                    const __m512 b = _mm512_set1_ps(z[r * qs + p]);
                    a[r][0] = _mm512_fmadd_ps(b, w0, a[r][0]);
                    a[r][1] = _mm512_fmadd_ps(b, w1, a[r][1]);
                }
            }
            float *restrict l = L + i0 * ldl + jb * FD_JB;
            float *restrict vm = VM + i0 * 16;
            for (int r = 0; r < FD_R; r++) {
                _mm512_storeu_ps(l + r * ldl, a[r][0]);
                _mm512_storeu_ps(l + r * ldl + 16, a[r][1]);
                /* running row maximum, 16 lanes wide (a NaN entry is skipped) */
                const __m512 m = jb ? fd_load(vm + r * 16) : _mm512_set1_ps(-INFINITY);
                _mm512_storeu_ps(vm + r * 16,
                                 _mm512_max_ps(a[r][1], _mm512_max_ps(a[r][0], m)));
            }
        }
    }
}

/* St[t0:t0+11, jb*32:+32] += sum over the listed frames of Zw[i, t] E[i, j]. */
static void fd_stats_dense(const fdiag_ctx *c, const float *restrict Zw, const float *restrict E,
                           int64_t jb, const int32_t *restrict lst, int64_t cnt,
                           float *restrict St)
{
    const int64_t qs = c->qs, ldl = c->ldl, kp = c->kp;
    for (int64_t t0 = 0; t0 < c->qt; t0 += FD_T) {
        __m512 a[FD_T][2];
        for (int t = 0; t < FD_T; t++)
            a[t][0] = a[t][1] = _mm512_setzero_ps();
        for (int64_t u = 0; u < cnt; u++) {
            const int64_t i = lst[u];
            const float *restrict e = E + i * ldl + jb * FD_JB;
            const __m512 e0 = fd_load(e), e1 = fd_load(e + 16);
            const float *restrict z = Zw + i * qs + t0;
            for (int t = 0; t < FD_T; t++) {
                const __m512 b = _mm512_set1_ps(z[t]);
                a[t][0] = _mm512_fmadd_ps(b, e0, a[t][0]);
                a[t][1] = _mm512_fmadd_ps(b, e1, a[t][1]);
            }
        }
        float *restrict s = St + t0 * kp + jb * FD_JB;
        for (int t = 0; t < FD_T; t++) {
            _mm512_storeu_ps(s + t * kp, _mm512_add_ps(fd_load(s + t * kp), a[t][0]));
            _mm512_storeu_ps(s + t * kp + 16, _mm512_add_ps(fd_load(s + t * kp + 16), a[t][1]));
        }
    }
}

/* exp(x) for x <= 0 (x = L - rowmax), lanes outside `keep` (x < -87.33654,
 * whose exp is below the smallest normal float) set to 0; NaN stays NaN.
 * The same reduction and polynomial as vexp_f32 (Cephes expf, ~1 ulp), with
 * the scaling by 2^n done by vscalefps and no clamping (x <= 0 here). */
static IPEM_INLINE __m512 fd_exp(__m512 x, __mmask16 keep)
{
    const __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, y, nf);
}

/* Approximate statistics for one frame (as prune_row in ipem_vector_impl.h):
 * keep the top_c largest of its E entries (ties: lower index), then those at
 * least min_post times their sum; zero the others, update the block masks bm
 * and return the sum of the kept entries.  Only blocks with bm != 0 hold
 * non-zero entries.  The top_c-th largest is looked for among the entries
 * not below the top_c-th largest block maximum (the maxima of the top_c best
 * blocks are top_c entries at least that large), usually a few. */
static double fd_prune(const fdiag_ctx *c, float *restrict l, uint32_t *restrict bm,
                       float *restrict tmp)
{
    const int64_t nb = c->nb, top_c = c->top_c;
    const __m512 z0 = _mm512_setzero_ps();
    if (top_c > 0 && top_c < c->k) {
        int64_t nnz = 0, nblk = 0;
        for (int64_t jb = 0; jb < nb; jb++) {
            nnz += __builtin_popcount(bm[jb]);
            nblk += bm[jb] != 0;
        }
        if (nnz > top_c) {
            float t0 = 0.0f;
            if (nblk > top_c) {
                int64_t u = 0;
                for (int64_t jb = 0; jb < nb; jb++)
                    if (bm[jb])
                        tmp[u++] = _mm512_reduce_max_ps(_mm512_max_ps(
                            fd_load(l + jb * FD_JB), fd_load(l + jb * FD_JB + 16)));
                t0 = select_desc_f32_avx512(tmp, u, top_c - 1);
            }
            const __m512 vt0 = _mm512_set1_ps(t0);
            int64_t nc = 0;
            for (int64_t jb = 0; jb < nb; jb++) {
                if (!bm[jb])
                    continue;
                for (int h = 0; h < 2; h++) {
                    const __m512 v = fd_load(l + jb * FD_JB + 16 * h);
                    const __mmask16 m = _mm512_cmp_ps_mask(v, vt0, _CMP_GE_OQ)
                                        & _mm512_cmp_ps_mask(v, z0, _CMP_NEQ_OQ);
                    /* compress in a register, then a plain store: vcompressps to
                     * memory is microcoded (slow) on AMD Zen 4/5; tmp has slack */
                    _mm512_storeu_ps(tmp + nc, _mm512_maskz_compress_ps(m, v));
                    nc += __builtin_popcount(m);
                }
            }
            if (nc >= top_c) { /* always: the maxima of the top_c best blocks */
                const __m512 thr = _mm512_set1_ps(select_desc_f32_avx512(tmp, nc, top_c - 1));
                int64_t gt = 0;
                for (int64_t jb = 0; jb < nb; jb++)
                    if (bm[jb])
                        for (int h = 0; h < 2; h++)
                            gt += __builtin_popcount(_mm512_cmp_ps_mask(
                                fd_load(l + jb * FD_JB + 16 * h), thr, _CMP_GT_OQ));
                int64_t ties = top_c - gt;
                for (int64_t jb = 0; jb < nb; jb++) {
                    if (!bm[jb])
                        continue;
                    for (int h = 0; h < 2; h++) {
                        float *lj = l + jb * FD_JB + 16 * h;
                        const __m512 v = fd_load(lj);
                        __mmask16 keep = _mm512_cmp_ps_mask(v, thr, _CMP_GT_OQ);
                        __mmask16 eq = _mm512_cmp_ps_mask(v, thr, _CMP_EQ_OQ);
                        while (eq && ties > 0) { /* ties at the threshold: lower index */
                            keep |= eq & (__mmask16)(-(int)eq);
                            eq &= eq - 1;
                            ties--;
                        }
                        _mm512_storeu_ps(lj, _mm512_maskz_mov_ps(keep, v));
                    }
                }
            }
        }
    }
    __m512 s = z0;
    for (int64_t jb = 0; jb < nb; jb++)
        if (bm[jb])
            s = _mm512_add_ps(s, _mm512_add_ps(fd_load(l + jb * FD_JB),
                                               fd_load(l + jb * FD_JB + 16)));
    double sum = (double)_mm512_reduce_add_ps(s);
    if (c->min_post > 0) {
        const __m512 thr = _mm512_set1_ps((float)(c->min_post * sum));
        s = z0;
        for (int64_t jb = 0; jb < nb; jb++) {
            if (!bm[jb])
                continue;
            for (int h = 0; h < 2; h++) {
                float *lj = l + jb * FD_JB + 16 * h;
                const __m512 v = fd_load(lj);
                const __m512 kept = _mm512_maskz_mov_ps(
                    _mm512_cmp_ps_mask(v, thr, _CMP_NLT_UQ), v);
                _mm512_storeu_ps(lj, kept);
                s = _mm512_add_ps(s, kept);
            }
        }
        sum = (double)_mm512_reduce_add_ps(s);
    }
    for (int64_t jb = 0; jb < nb; jb++)
        if (bm[jb])
            bm[jb] = (uint32_t)_mm512_cmp_ps_mask(fd_load(l + jb * FD_JB), z0, _CMP_NEQ_UQ)
                     | ((uint32_t)_mm512_cmp_ps_mask(fd_load(l + jb * FD_JB + 16), z0,
                                                     _CMP_NEQ_UQ) << 16);
    return sum;
}

/* One block of mm frames starting at frame a. */
static void fd_block(const fdiag_ctx *c, int tid, int64_t a, int64_t mm, fdiag_buf *buf)
{
    const int64_t d = c->d, q = c->q, qs = c->qs, ldl = c->ldl, nb = c->nb;
    float *restrict Z = c->Z[tid], *restrict L = c->L[tid], *restrict VM = c->VM[tid];
    int32_t *restrict lists = c->lists[tid], *restrict cnt = c->cnt[tid];
    uint32_t *restrict bm = c->bmask[tid];
    const int need_e = c->stats || c->resp_out != NULL;
    const float *restrict shift = c->shift;

    /* 1. Z = [x^2, x, 1, 0...] */
    for (int64_t i = 0; i < mm; i++) {
        const float *restrict x = c->X + (a + i) * c->ldx;
        float *restrict z = Z + i * qs;
        for (int64_t t = 0; t < d; t++) {
            const float v = x[t] - shift[t];
            z[t] = v * v;
            z[d + t] = v;
        }
        z[2 * d] = 1.0f;
        for (int64_t t = q; t < qs; t++)
            z[t] = 0.0f;
    }
    const int64_t mr = IPEM_ROUND_UP(mm, FD_R);
    if (mm < mr)
        memset(Z + mm * qs, 0, sizeof(float) * (size_t)((mr - mm) * qs));

    /* 2. log-likelihoods */
    fd_loglik(c, Z, L, VM, mr);

    /* 3. per frame: log-sum-exp, outputs, scaled Z row, block classification */
    if (c->stats)
        memset(cnt, 0, sizeof(int32_t) * (size_t)nb);
    const __m512 vlo = _mm512_set1_ps(-87.33654f);
    double ll = 0.0;
    for (int64_t i = 0; i < mm; i++) {
        float *restrict l = L + i * ldl;
        float mx = _mm512_reduce_max_ps(fd_load(VM + i * 16));
        if (!(mx > -INFINITY && mx < INFINITY))
            mx = 0.0f;
        const __m512 vmx = _mm512_set1_ps(mx);
        __m512 s0 = _mm512_setzero_ps(), s1 = s0;
        for (int64_t jb = 0; jb < nb; jb++) {
            float *restrict lj = l + jb * FD_JB;
            const __m512 x0 = _mm512_sub_ps(fd_load(lj), vmx);
            const __m512 x1 = _mm512_sub_ps(fd_load(lj + 16), vmx);
            /* keep: not below the underflow threshold (NaN is kept) */
            const __mmask16 k0 = _mm512_cmp_ps_mask(x0, vlo, _CMP_NLT_UQ);
            const __mmask16 k1 = _mm512_cmp_ps_mask(x1, vlo, _CMP_NLT_UQ);
            if (need_e)
                bm[jb] = (uint32_t)k0 | ((uint32_t)k1 << 16); /* the non-zero entries */
            if (!(k0 | k1)) {
                /* every entry underflows: exactly what exp gives, without it */
                if (c->resp_out) {
                    _mm512_storeu_ps(lj, _mm512_setzero_ps());
                    _mm512_storeu_ps(lj + 16, _mm512_setzero_ps());
                }
                continue;
            }
            const __m512 e0 = fd_exp(x0, k0), e1 = fd_exp(x1, k1);
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
            if (need_e) {
                _mm512_storeu_ps(lj, e0);
                _mm512_storeu_ps(lj + 16, e1);
            }
        }
        const double sum = (double)_mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
        const double lp = (double)mx + log(sum);
        const double sw = c->sw ? c->sw[a + i] : 1.0;
        if (sw != 0.0)
            ll += c->sw ? sw * lp : lp;
        if (c->logprob_out)
            c->logprob_out[a + i] = lp;
        double w = 1.0 / sum;
        if (c->resp_out)
            write_resp_f32_avx512(c->resp_out, c->resp_f64, a + i, c->k, l, w);
        if (!c->stats || sw == 0.0)
            continue; /* a frame of weight 0 adds nothing (its values may be NaN) */
        if (c->prune) /* approximate statistics: the kept entries, renormalised */
            w = 1.0 / fd_prune(c, l, bm, c->tmp[tid]);
        /* fold the normalisation and the frame weight into the frame's Z row */
        float *restrict z = Z + i * qs;
        const __m512 vw = _mm512_set1_ps((float)(w * sw));
        for (int64_t t = 0; t < qs; t += 16)
            _mm512_storeu_ps(z + t, _mm512_mul_ps(fd_load(z + t), vw));
        for (int64_t jb = 0; jb < nb; jb++) {
            uint32_t msk = bm[jb];
            if (!msk)
                continue;
            if (__builtin_popcount(msk) > IPEM_SPARSE_MAX) {
                lists[jb * c->m + cnt[jb]++] = (int32_t)i;
                continue;
            }
            while (msk) {
                const int bit = __builtin_ctz(msk);
                msk &= msk - 1;
                const int64_t j = jb * FD_JB + bit;
                const __m512 e = _mm512_set1_ps(l[j]);
                float *restrict s = buf->Ssp + j * qs;
                for (int64_t t = 0; t < qs; t += 16)
                    _mm512_storeu_ps(s + t, _mm512_fmadd_ps(e, fd_load(z + t), fd_load(s + t)));
            }
        }
    }
    buf->ll += ll;

    /* 4. dense statistics */
    if (c->stats)
        for (int64_t jb = 0; jb < nb; jb++)
            if (cnt[jb])
                fd_stats_dense(c, Z, L, jb, lists + jb * c->m, cnt[jb], buf->St);
}

static void fd_work(void *ctx, int tid, int64_t g, void *bufp)
{
    const fdiag_ctx *c = (const fdiag_ctx *)ctx;
    fdiag_buf *buf = (fdiag_buf *)bufp;
    buf->ll = 0.0;
    if (c->stats) {
        memset(buf->St, 0, sizeof(float) * (size_t)(c->qt * c->kp));
        memset(buf->Ssp, 0, sizeof(float) * (size_t)(c->kp * c->qs));
    }
    const int64_t a0 = g * c->G, a1 = a0 + c->G < c->n ? a0 + c->G : c->n;
    for (int64_t a = a0; a < a1; a += c->m)
        fd_block(c, tid, a, a + c->m <= a1 ? c->m : a1 - a, buf);
}

static void fd_commit(void *ctx, int64_t g, void *bufp)
{
    (void)g;
    fdiag_ctx *c = (fdiag_ctx *)ctx;
    const fdiag_buf *buf = (const fdiag_buf *)bufp;
    c->ll += buf->ll;
    if (!c->stats)
        return;
    const int64_t q = c->q, qs = c->qs, kp = c->kp, k = c->k;
    /* acc is k x q (row-major); St is feature-major: go through it in
     * 16-component strips so both sides stay in cache */
    for (int64_t j0 = 0; j0 < k; j0 += 16) {
        const int64_t j1 = j0 + 16 < k ? j0 + 16 : k;
        for (int64_t t = 0; t < q; t++) {
            const float *restrict st = buf->St + t * kp;
            for (int64_t j = j0; j < j1; j++)
                c->acc[j * q + t] += (double)st[j];
        }
        for (int64_t j = j0; j < j1; j++) {
            const float *restrict sp = buf->Ssp + j * qs;
            double *restrict ar = c->acc + j * q;
            for (int64_t t = 0; t < q; t++)
                ar[t] += (double)sp[t];
        }
    }
}

/* Bytes of one thread's block of log-likelihoods (m x K float32): fits L2. */
#define FD_BLOCK_BYTES (384 << 10)
/* Frames per group (the unit of work and of the float32 partial sums). */
#define FD_GROUP_FRAMES 4096

static int gmm_diag_fused_f32_avx512(int64_t n, int64_t d, int64_t k, const float *X,
                                     int64_t ldx, const float *shift, const float *W,
                                     int64_t chunk, const double *sw, double *logprob_out,
                                     void *resp_out, int resp_f64, int compute_stats,
                                     double *acc, double *loglik, int64_t top_c,
                                     double min_post, int nthreads)
{
    fdiag_ctx c;
    memset(&c, 0, sizeof c);
    c.top_c = top_c, c.min_post = min_post;
    c.prune = compute_stats && ((top_c > 0 && top_c < k) || min_post > 0);

    c.n = n, c.d = d, c.k = k, c.ldx = ldx, c.X = X, c.shift = shift, c.sw = sw;
    c.logprob_out = logprob_out, c.resp_out = resp_out, c.resp_f64 = resp_f64;
    c.stats = compute_stats != 0;
    c.q = 2 * d + 1;
    c.qt = IPEM_ROUND_UP(c.q, FD_T);
    c.qs = IPEM_ROUND_UP(c.qt, 16);
    c.kp = IPEM_ROUND_UP(k, FD_JB);
    c.nb = c.kp / FD_JB;
    c.ldl = c.kp + ((c.kp * 4) % 4096 == 0 ? 16 : 0); /* no 4K aliasing between rows */
    /* rows per block: the block of log-likelihoods fills ~L2, but at least 96
     * rows so that the statistics tiles are not re-read too often */
    int64_t m = FD_BLOCK_BYTES / (4 * c.ldl);
    m = m / FD_R * FD_R;
    if (m < 96)
        m = 96;
    const int64_t mc = IPEM_ROUND_UP(chunk, FD_R);
    if (mc < m)
        m = mc;
    const int64_t nr = IPEM_ROUND_UP(n > 0 ? n : 1, FD_R);
    if (nr < m)
        m = nr;
    c.m = m;
    c.mr = m; /* a multiple of FD_R */
    int64_t gb = (FD_GROUP_FRAMES + m / 2) / m;
    c.G = m * (gb < 1 ? 1 : gb);
    c.acc = acc;
    if (c.stats)
        memset(acc, 0, sizeof(double) * (size_t)(k * c.q));
    const int64_t ngroups = n > 0 ? (n + c.G - 1) / c.G : 0;
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > ngroups)
        nthreads = ngroups > 0 ? (int)ngroups : 1;
    if (nthreads > 64)
        nthreads = 64;
    const int nbufs = nthreads + 1;

    /* packed W: panels of 32 components; padding components get -inf */
    const int64_t q = c.q;
    float *Wp = (float *)ipem_malloc(sizeof(float) * (size_t)(c.kp * q));
    float *Zs[64] = {0}, *Ls[64] = {0}, *VMs[64] = {0}, *tmps[64] = {0};
    int32_t *lists[64] = {0}, *cnts[64] = {0};
    uint32_t *bms[64] = {0};
    fdiag_buf bufs[65];
    void *bptr[65];
    int ok = Wp != NULL;
    for (int t = 0; t < nthreads && ok; t++) {
        Zs[t] = (float *)ipem_malloc(sizeof(float) * (size_t)(c.mr * c.qs));
        Ls[t] = (float *)ipem_malloc(sizeof(float) * (size_t)(c.mr * c.ldl));
        VMs[t] = (float *)ipem_malloc(sizeof(float) * (size_t)(c.mr * 16));
        lists[t] = (int32_t *)ipem_malloc(sizeof(int32_t) * (size_t)(c.nb * c.m));
        cnts[t] = (int32_t *)ipem_malloc(sizeof(int32_t) * (size_t)c.nb);
        bms[t] = (uint32_t *)ipem_malloc(sizeof(uint32_t) * (size_t)c.nb);
        ok = Zs[t] && Ls[t] && VMs[t] && lists[t] && cnts[t] && bms[t];
        if (ok && c.prune) {
            tmps[t] = (float *)ipem_malloc(sizeof(float) * (size_t)(c.kp + 16));
            ok = tmps[t] != NULL;
        }
    }
    for (int b = 0; b < nbufs; b++) {
        bufs[b].St = bufs[b].Ssp = NULL;
        bptr[b] = &bufs[b];
        if (ok && c.stats) {
            bufs[b].St = (float *)ipem_malloc(sizeof(float) * (size_t)(c.qt * c.kp));
            bufs[b].Ssp = (float *)ipem_malloc(sizeof(float) * (size_t)(c.kp * c.qs));
            ok = bufs[b].St && bufs[b].Ssp;
        }
    }
    int rc = IPEM_ERR_NOMEM;
    if (ok) {
        for (int64_t jb = 0; jb < c.nb; jb++)
            for (int64_t p = 0; p < q; p++)
                for (int64_t u = 0; u < FD_JB; u++) {
                    const int64_t j = jb * FD_JB + u;
                    Wp[(jb * q + p) * FD_JB + u] =
                        j < k ? W[p * k + j] : (p == q - 1 ? -INFINITY : 0.0f);
                }
        c.Wp = Wp, c.Z = Zs, c.L = Ls, c.VM = VMs, c.tmp = tmps;
        c.lists = lists, c.cnt = cnts, c.bmask = bms;
        rc = ipem_sched_run(ngroups, nthreads, bptr, nbufs, fd_work, fd_commit, &c);
    }
    *loglik = c.ll;
    for (int t = 0; t < 64; t++) {
        ipem_free(Zs[t]), ipem_free(Ls[t]), ipem_free(VMs[t]), ipem_free(lists[t]);
        ipem_free(cnts[t]), ipem_free(tmps[t]);
        ipem_free(bms[t]);
    }
    for (int b = 0; b < nbufs; b++)
        ipem_free(bufs[b].St), ipem_free(bufs[b].Ssp);
    ipem_free(Wp);
    return rc;
}
