/* pool.h - the engine's one thread pool. The caller of cvy_pool_run is worker 0; the other
 * workers sleep on a condition variable between runs (after a short bounded spin, or as long
 * as a hold lasts), so an idle engine uses no CPU. */
#ifndef CVY_POOL_H
#define CVY_POOL_H

typedef struct cvy_pool cvy_pool;

/* fn(arg, task, thread): runs task number `task` on worker `thread` (0..threads-1). */
typedef void (*cvy_task_fn)(void *arg, int task, int thread);

/* Starts threads-1 workers (threads >= 1). NULL on failure. */
cvy_pool *cvy_pool_create(int threads);
void cvy_pool_destroy(cvy_pool *p);
int cvy_pool_threads(const cvy_pool *p);

/* Runs tasks 0..n-1 on up to max_threads workers (the caller included) and returns when all
 * are done. Tasks are claimed dynamically, so which worker runs a task varies from run to run:
 * a task's result must not depend on its worker (the thread index only selects scratch
 * space). Concurrent callers are serialized. Thread-safe. */
void cvy_pool_run(cvy_pool *p, int n, int max_threads, cvy_task_fn fn, void *arg);

/* Holds the workers awake (on) or lets them sleep again (off) between runs: while any hold
 * lasts, idle workers and a caller waiting for them spin instead of sleeping, so a sequence
 * of runs (the steps of one forward pass) pays no wake-ups between them. Holds nest; each on
 * needs its off. Thread-safe. */
void cvy_pool_hold(cvy_pool *p, int on);

/* Sets flush-to-zero and denormals-are-zero on the calling thread; returns the old MXCSR. */
unsigned cvy_fpu_enter(void);
void cvy_fpu_leave(unsigned saved);

#endif
