/* pool.c - a static-partition thread pool on pthreads with a bounded spin before sleeping. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <xmmintrin.h>

#define SPIN_NS 50000 /* workers spin this long for the next job before sleeping */

struct cvy_pool {
    int threads;
    pthread_t *tids;
    pthread_mutex_t run_lock; /* one run at a time */
    pthread_mutex_t lock;     /* guards the fields below together with the condvars */
    pthread_cond_t wake, done;
    atomic_uint generation; /* bumped for each job */
    atomic_int pending;     /* workers still busy with the current job */
    int stop;
    /* the current job */
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

/* Runs worker t's share of the current job. */
static void run_share(cvy_pool *p, int t)
{
    int lo = (int)((long)t * p->n / p->active), hi = (int)((long)(t + 1) * p->n / p->active);
    for (int i = lo; i < hi; i++) p->fn(p->arg, i, t);
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
        /* bounded spin, then sleep until the generation moves */
        uint64_t until = now_ns() + SPIN_NS;
        while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen &&
               now_ns() < until)
            _mm_pause();
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->generation) == seen && !p->stop)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        seen = atomic_load(&p->generation);
        pthread_mutex_unlock(&p->lock);
        if (me < p->active) run_share(p, me);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
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
    pthread_cond_init(&p->done, NULL);
    for (int t = 1; t < threads; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || (wa->p = p, wa->index = t,
                    pthread_create(&p->tids[t], NULL, worker_main, wa) != 0)) {
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
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int t = 1; t < p->threads; t++) pthread_join(p->tids[t], NULL);
    pthread_mutex_destroy(&p->run_lock);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->tids);
    free(p);
}

int cvy_pool_threads(const cvy_pool *p) { return p->threads; }

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
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->active = active;
    atomic_store(&p->pending, p->threads - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_share(p, 0);
    /* wait for the workers: spin briefly, then sleep */
    uint64_t until = now_ns() + SPIN_NS;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && now_ns() < until)
        _mm_pause();
    pthread_mutex_lock(&p->lock);
    while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->run_lock);
}
