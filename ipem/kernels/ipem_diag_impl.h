/* ipem_diag_impl.h -- the diagonal-covariance GMM E-step and top-C Gaussian
 * selection on the BLAS.
 *
 * diag GMM, per chunk of m frames:
 *   Z = [x^2, x, 1] (m x (2d+1));  L = Z W with W = [-prec/2; mu*prec; c]
 *   (one GEMM gives the log-likelihoods with the constant folded in);
 *   row-wise log-sum-exp with a vectorised exp, E = exp(L - rowmax) in place;
 *   Z rows scaled by w_n = 1 / sum_j E_nj (times the frame weight s_n), so
 *   one GEMM S = E^T (w Z) gives [sum r x^2, sum r x, sum r] per component;
 *   S is added to float64 accumulators once per chunk.
 * top-C selection (UBM scoring): the diag GEMM, then per frame an insertion
 *   into a sorted list of the C best (almost every value is rejected by one
 *   comparison with the current C-th best), log-sum-exp over the C in float64.
 *
 * Part of the per-(instruction set, dtype) body of the kernels: included by
 * ipem_kernels_impl.h, which defines REAL, VEC, VL, FN(...) and the other
 * type macros; no include guard (included once per copy). */

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
