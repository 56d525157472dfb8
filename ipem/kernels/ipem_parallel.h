/* ipem_parallel.h -- worker threads with ordered commits, for the fused kernels.
 *
 * Included once by ipem_kernels.c, before the per-instruction-set kernels.
 *
 * A kernel call splits its frames into groups of a fixed size that depends
 * only on the problem (never on the number of threads).  Worker threads take
 * groups dynamically (the next unprocessed group), each computes its group's
 * partial statistics into a buffer of its own, and the partial statistics are
 * added to the float64 totals strictly in group order.  So a kernel gives
 * bit-identical results with 1, 2 or any number of threads, and a thread
 * slowed down by another process does not hold the others back until the
 * ordered commit needs its group (up to `nthreads + 1` groups may be pending).
 *
 * Without POSIX threads (Windows) everything runs in the calling thread.
 */
#if defined(_WIN32)
#define IPEM_HAVE_THREADS 0
#else
#include <pthread.h>
#define IPEM_HAVE_THREADS 1
#endif

/* work(ctx, tid, group, buf): compute group `group` into `buf` (thread `tid`'s
 * scratch).  commit(ctx, group, buf): add `buf` to the totals; called for
 * group 0, 1, 2, ... in this order, never concurrently. */
typedef void (*ipem_work_fn)(void *ctx, int tid, int64_t group, void *buf);
typedef void (*ipem_commit_fn)(void *ctx, int64_t group, void *buf);

typedef struct {
#if IPEM_HAVE_THREADS
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
    int64_t ngroups, next, committed;
    int committing, nfree;
    void **ready;     /* [ngroups]: a finished group's buffer, until committed */
    void **free_bufs; /* [nbufs] */
    ipem_work_fn work;
    ipem_commit_fn commit;
    void *ctx;
} ipem_sched;

typedef struct {
    ipem_sched *s;
    int tid;
} ipem_worker_arg;

#if IPEM_HAVE_THREADS
#define IPEM_LOCK(s) pthread_mutex_lock(&(s)->mu)
#define IPEM_UNLOCK(s) pthread_mutex_unlock(&(s)->mu)
#define IPEM_WAIT(s) pthread_cond_wait(&(s)->cv, &(s)->mu)
#define IPEM_WAKE(s) pthread_cond_broadcast(&(s)->cv)
#else
#define IPEM_LOCK(s) ((void)0)
#define IPEM_UNLOCK(s) ((void)0)
#define IPEM_WAIT(s) ((void)0)
#define IPEM_WAKE(s) ((void)0)
#endif

static void ipem_sched_worker(ipem_sched *s, int tid)
{
    for (;;) {
        IPEM_LOCK(s);
        while (s->nfree == 0 && s->next < s->ngroups)
            IPEM_WAIT(s); /* every buffer holds a group waiting for its turn */
        if (s->next >= s->ngroups) {
            IPEM_UNLOCK(s);
            return;
        }
        const int64_t g = s->next++;
        void *buf = s->free_bufs[--s->nfree];
        IPEM_UNLOCK(s);

        s->work(s->ctx, tid, g, buf);

        IPEM_LOCK(s);
        s->ready[g] = buf;
        if (!s->committing) {
            /* commit every finished group whose predecessors are committed */
            s->committing = 1;
            while (s->committed < s->ngroups && s->ready[s->committed]) {
                const int64_t c = s->committed;
                void *b = s->ready[c];
                IPEM_UNLOCK(s);
                s->commit(s->ctx, c, b);
                IPEM_LOCK(s);
                s->ready[c] = NULL;
                s->committed++;
                s->free_bufs[s->nfree++] = b;
                IPEM_WAKE(s);
            }
            s->committing = 0;
        }
        IPEM_UNLOCK(s);
    }
}

#if IPEM_HAVE_THREADS
static void *ipem_worker_main(void *p)
{
    ipem_worker_arg *a = (ipem_worker_arg *)p;
    ipem_sched_worker(a->s, a->tid);
    return NULL;
}
#endif

/* Run all groups on `nthreads` threads (the caller is one of them) with the
 * `nbufs >= nthreads` buffers `bufs`.  Returns IPEM_OK or IPEM_ERR_NOMEM.
 * A thread that cannot be started is simply not used. */
static int ipem_sched_run(int64_t ngroups, int nthreads, void **bufs, int nbufs,
                          ipem_work_fn work, ipem_commit_fn commit, void *ctx)
{
    if (ngroups <= 0)
        return IPEM_OK;
    ipem_sched s;
    memset(&s, 0, sizeof s);
    s.ngroups = ngroups;
    s.work = work;
    s.commit = commit;
    s.ctx = ctx;
    s.ready = (void **)calloc((size_t)ngroups, sizeof(void *));
    s.free_bufs = (void **)malloc(sizeof(void *) * (size_t)nbufs);
    if (!s.ready || !s.free_bufs) {
        free(s.ready), free(s.free_bufs);
        return IPEM_ERR_NOMEM;
    }
    for (int b = 0; b < nbufs; b++)
        s.free_bufs[b] = bufs[b];
    s.nfree = nbufs;
    if (nthreads > ngroups)
        nthreads = (int)ngroups;
#if IPEM_HAVE_THREADS
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    if (nthreads > 1) {
        pthread_t th[64];
        ipem_worker_arg args[64];
        int started = 0;
        if (nthreads > 64)
            nthreads = 64;
        for (int t = 1; t < nthreads; t++) {
            args[started].s = &s;
            args[started].tid = t;
            if (pthread_create(&th[started], NULL, ipem_worker_main, &args[started]) == 0)
                started++;
        }
        ipem_sched_worker(&s, 0);
        for (int t = 0; t < started; t++)
            pthread_join(th[t], NULL);
    } else {
        ipem_sched_worker(&s, 0);
    }
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
#else
    (void)nthreads;
    ipem_sched_worker(&s, 0);
#endif
    free(s.ready), free(s.free_bufs);
    return IPEM_OK;
}
