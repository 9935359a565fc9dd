/* pool.c - a thread pool on pthreads. Tasks are claimed one by one from a shared counter, so
 * a worker the OS has not scheduled yet never holds up a run: whoever is running takes the
 * next task. The counter carries the run's generation, so a late worker cannot claim a task
 * of a later run. Workers spin briefly for the next run (or while a hold lasts), then
 * sleep. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <xmmintrin.h>

#define SPIN_NS    50000 /* workers spin this long for the next run before sleeping */
#define LOCK_TRIES 1000  /* then try the lock this often (pausing between) before sleeping on it */

struct cvy_pool {
    int threads;
    pthread_t *tids;
    pthread_mutex_t run_lock; /* one run at a time */
    pthread_mutex_t lock;     /* guards the job fields and the condvars */
    pthread_cond_t wake, done_cv;
    atomic_uint generation;     /* bumped for each run */
    atomic_uint_fast64_t claim; /* generation << 32 | next task index */
    atomic_int done;            /* tasks finished in the current run */
    atomic_int holds;           /* cvy_pool_hold: spin rather than sleep while > 0 */
    atomic_int stop;            /* set once by destroy: workers leave, held or not */
    /* the current run */
    cvy_task_fn fn;
    void *arg;
    int n, active;
};

typedef struct worker_arg {
    cvy_pool *p;
    int index;
} worker_arg;

unsigned cvy_fpu_enter(void)
{
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040); /* FTZ | DAZ */
    return old;
}

void cvy_fpu_leave(unsigned saved) { _mm_setcsr(saved); }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Claims and runs tasks of run `gen` until none is left; returns how many it ran. */
static int run_tasks(cvy_pool *p, unsigned gen, cvy_task_fn fn, void *arg, int n, int me)
{
    int ran = 0;
    for (;;) {
        uint_fast64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
        if ((unsigned)(c >> 32) != gen || (int)(c & 0xffffffffu) >= n) break;
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        fn(arg, (int)(c & 0xffffffffu), me);
        ran++;
        if (atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel) + 1 == n) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return ran;
}

static void *worker_main(void *v)
{
    worker_arg *wa = v;
    cvy_pool *p = wa->p;
    int me = wa->index;
    free(wa);
    cvy_fpu_enter();
    unsigned seen = 0;
    for (;;) {
        /* spin while held or for a bounded time, then sleep until the generation moves */
        uint64_t until = now_ns() + SPIN_NS;
        while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_relaxed) &&
               (atomic_load_explicit(&p->holds, memory_order_relaxed) > 0 || now_ns() < until))
            _mm_pause();
        /* a run's starter holds the lock for a few stores after bumping the generation: try
         * it a while before sleeping on it, which costs a wake-up of ~10 us */
        int locked = 0;
        if (atomic_load_explicit(&p->generation, memory_order_acquire) != seen)
            for (int i = 0; i < LOCK_TRIES && !locked; i++)
                if (!(locked = pthread_mutex_trylock(&p->lock) == 0)) _mm_pause();
        if (!locked) pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
            pthread_cond_wait(&p->wake, &p->lock);
        if (atomic_load(&p->stop)) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        seen = atomic_load(&p->generation);
        cvy_task_fn fn = p->fn;
        void *arg = p->arg;
        int n = p->n, active = p->active;
        pthread_mutex_unlock(&p->lock);
        if (me < active) run_tasks(p, seen, fn, arg, n, me);
    }
}

cvy_pool *cvy_pool_create(int threads)
{
    if (threads < 1) return NULL;
    cvy_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads;
    p->tids = calloc((size_t)threads, sizeof *p->tids);
    if (!p->tids) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    for (int t = 1; t < threads; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa ||
            (wa->p = p, wa->index = t, pthread_create(&p->tids[t], NULL, worker_main, wa) != 0)) {
            free(wa);
            p->threads = t; /* destroy joins the ones that started */
            cvy_pool_destroy(p);
            return NULL;
        }
    }
    return p;
}

void cvy_pool_destroy(cvy_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int t = 1; t < p->threads; t++) pthread_join(p->tids[t], NULL);
    pthread_mutex_destroy(&p->run_lock);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done_cv);
    free(p->tids);
    free(p);
}

int cvy_pool_threads(const cvy_pool *p) { return p->threads; }

void cvy_pool_hold(cvy_pool *p, int on)
{
    if (p->threads > 1) atomic_fetch_add_explicit(&p->holds, on ? 1 : -1, memory_order_relaxed);
}

void cvy_pool_run(cvy_pool *p, int n, int max_threads, cvy_task_fn fn, void *arg)
{
    if (n <= 0) return;
    int active = p->threads < max_threads ? p->threads : max_threads;
    if (active > n) active = n;
    if (active <= 1) {
        for (int i = 0; i < n; i++) fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    pthread_mutex_lock(&p->lock);
    unsigned gen = atomic_load(&p->generation) + 1;
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->active = active;
    atomic_store(&p->done, 0);
    atomic_store_explicit(&p->claim, (uint_fast64_t)gen << 32, memory_order_release);
    atomic_store_explicit(&p->generation, gen, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_tasks(p, gen, fn, arg, n, 0);
    /* wait for tasks other workers claimed: spin while held or briefly, then sleep */
    uint64_t until = now_ns() + SPIN_NS;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n &&
           (atomic_load_explicit(&p->holds, memory_order_relaxed) > 0 || now_ns() < until))
        _mm_pause();
    pthread_mutex_lock(&p->lock);
    while (atomic_load(&p->done) < n) pthread_cond_wait(&p->done_cv, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->run_lock);
}
