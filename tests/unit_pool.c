/* unit_pool.c - the engine's thread pool: every task runs once per run, and workers spin only
 * while a hold lasts (the steps of one forward pass), never while the engine is idle. */
#include <check.h>
#include <stdatomic.h>
#include <time.h>

#include "pool.h"

typedef struct counts {
    atomic_int ran[64];
    atomic_int bad_thread;
} counts;

static void count_task(void *arg, int task, int thread)
{
    counts *c = arg;
    atomic_fetch_add(&c->ran[task], 1);
    if (thread < 0 || thread > 1) atomic_store(&c->bad_thread, 1);
}

START_TEST(every_task_runs_once)
{
    cvy_pool *p = cvy_pool_create(2);
    ck_assert_ptr_nonnull(p);
    for (int hold = 0; hold < 2; hold++) {
        if (hold) cvy_pool_hold(p, 1);
        for (int n = 1; n <= 64; n += 7)
            for (int max = 1; max <= 3; max++) {
                counts c = {0};
                cvy_pool_run(p, n, max, count_task, &c);
                for (int t = 0; t < 64; t++)
                    ck_assert_msg(atomic_load(&c.ran[t]) == (t < n),
                                  "hold %d, %d tasks on %d: task %d ran %d times", hold, n, max, t,
                                  atomic_load(&c.ran[t]));
                ck_assert_int_eq(atomic_load(&c.bad_thread), 0);
            }
        if (hold) cvy_pool_hold(p, 0);
    }
    cvy_pool_destroy(p);
    cvy_pool_destroy(NULL);
    p = cvy_pool_create(2); /* destroyed while held: its worker leaves all the same */
    ck_assert_ptr_nonnull(p);
    cvy_pool_hold(p, 1);
    cvy_pool_destroy(p);
}
END_TEST

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* CPU time the process uses while the calling thread sleeps for ms. */
static double idle_cpu_ms(int ms)
{
    double t0 = cpu_ms();
    nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL);
    return cpu_ms() - t0;
}

START_TEST(workers_spin_only_while_held)
{
    cvy_pool *p = cvy_pool_create(2);
    ck_assert_ptr_nonnull(p);
    counts c = {0};
    cvy_pool_run(p, 2, 2, count_task, &c); /* the worker has run, then waits */
    cvy_pool_hold(p, 1);
    double held = idle_cpu_ms(200); /* the worker spins all along */
    cvy_pool_run(p, 2, 2, count_task, &c);
    cvy_pool_hold(p, 0);
    idle_cpu_ms(20); /* past the short spin after the last run */
    double released = idle_cpu_ms(200);
    ck_assert_msg(held > 50.0, "held: %.1f ms of CPU in 200 ms", held);
    ck_assert_msg(released < 10.0, "released: %.1f ms of CPU in 200 ms", released);
    cvy_pool_destroy(p);
}
END_TEST

Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_add_test(tc, every_task_runs_once);
    tcase_add_test(tc, workers_spin_only_while_held);
    suite_add_tcase(s, tc);
    return s;
}
