/*
 * faults.c - fault injection for the model loaders (build/test_faults).
 *
 * The binary is linked with -Wl,--wrap for malloc, calloc, realloc, posix_memalign, strdup,
 * free and read, so every allocation made by the engine and the server's registry goes
 * through the wrappers below (libraries' own allocations - protobuf-c, jansson, OpenBLAS -
 * do not). Armed with fail_at = N, the N-th allocation from then on returns NULL. Every
 * wrapped allocation is kept in a pointer set, so a test can tell that a failed load left
 * nothing behind.
 *
 * Tests: every allocation of cvy_model_load_memory, of cvy_onnx_convert and of a registry
 * reload (read, parse, self-test, warm-up context, batcher) fails in turn: each load fails
 * cleanly with its status and message, nothing leaks, and - for the registry - the old
 * version keeps serving and answers exactly as before. Then the model file shrinking or
 * vanishing while it is read.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "convoy.h"
#include "registry.h"

/* ---- the wrappers -------------------------------------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
char *__real_strdup(const char *s);
void __real_free(void *p);
ssize_t __real_read(int fd, void *buf, size_t n);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);
char *__wrap_strdup(const char *s);
void __wrap_free(void *p);
ssize_t __wrap_read(int fd, void *buf, size_t n);

static atomic_long fail_at = -1; /* allocations left before the one that fails; -1 = off */
static atomic_long failed;       /* allocations failed on purpose */

/* Open-addressing set of live wrapped pointers (tombstones for removals). */
#define SET_CAP (1u << 20)
#define TOMB    ((void *)1)
static void **set;
static long set_live;
static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(void *p) { return ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 44; }

static void set_add(void *p)
{
    if (!p) return;
    pthread_mutex_lock(&set_mu);
    if (!set) set = __real_calloc(SET_CAP, sizeof *set);
    for (size_t i = slot_of(p) & (SET_CAP - 1);; i = (i + 1) & (SET_CAP - 1))
        if (!set[i] || set[i] == TOMB) {
            set[i] = p;
            set_live++;
            break;
        }
    pthread_mutex_unlock(&set_mu);
}

static void set_del(void *p)
{
    if (!p) return;
    pthread_mutex_lock(&set_mu);
    for (size_t i = slot_of(p) & (SET_CAP - 1); set && set[i]; i = (i + 1) & (SET_CAP - 1))
        if (set[i] == p) {
            set[i] = TOMB;
            set_live--;
            break;
        }
    pthread_mutex_unlock(&set_mu);
}

static long live(void)
{
    pthread_mutex_lock(&set_mu);
    long n = set_live;
    pthread_mutex_unlock(&set_mu);
    return n;
}

/* 1 (errno = ENOMEM) when this allocation must fail. */
static int fail_now(void)
{
    long v = atomic_load(&fail_at);
    while (v >= 0) {
        if (atomic_compare_exchange_weak(&fail_at, &v, v - 1)) {
            if (v == 0) {
                atomic_fetch_add(&failed, 1);
                errno = ENOMEM;
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    if (fail_now()) return NULL;
    void *p = __real_malloc(n);
    set_add(p);
    return p;
}

void *__wrap_calloc(size_t n, size_t m)
{
    if (fail_now()) return NULL;
    void *p = __real_calloc(n, m);
    set_add(p);
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    if (fail_now()) return NULL;
    void *q = __real_realloc(p, n);
    if (q || n == 0) set_del(p);
    set_add(q);
    return q;
}

int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
    if (fail_now()) return ENOMEM;
    int rc = __real_posix_memalign(p, a, n);
    if (rc == 0) set_add(*p);
    return rc;
}

char *__wrap_strdup(const char *s)
{
    if (fail_now()) return NULL;
    char *p = __real_strdup(s);
    set_add(p);
    return p;
}

void __wrap_free(void *p)
{
    set_del(p);
    __real_free(p);
}

/* read() hook: once armed, the next read() of any descriptor first shrinks or removes the
 * file at hook_path (the registry's read of the model file is the only read in between). */
enum { HOOK_NONE, HOOK_SHRINK, HOOK_VANISH };
static atomic_int hook;
static char hook_path[512];

ssize_t __wrap_read(int fd, void *buf, size_t n)
{
    int h = atomic_exchange(&hook, HOOK_NONE);
    if (h == HOOK_SHRINK) {
        struct stat st;
        if (stat(hook_path, &st) == 0 && truncate(hook_path, st.st_size / 2) != 0)
            perror("truncate");
    } else if (h == HOOK_VANISH) {
        unlink(hook_path);
    }
    return __real_read(fd, buf, n);
}

static void arm(long n) { atomic_store(&fail_at, n); }
static void disarm(void) { atomic_store(&fail_at, -1); }

/* ---- helpers --------------------------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = b && fread(b, 1, (size_t)n, f) == (size_t)n ? (size_t)n : 0;
    fclose(f);
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t n)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    ck_assert(f != NULL);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
}

static cvy_engine *engine(void)
{
    cvy_engine_params p = cvy_engine_default_params();
    p.threads = 1;
    cvy_engine *eng = NULL;
    ck_assert_int_eq(cvy_engine_create(&p, &eng, NULL), CVY_OK);
    return eng;
}

/* ---- engine loaders ---------------------------------------------------------------------- */

START_TEST(test_cvy_load_faults)
{
    cvy_engine *eng = engine();
    size_t len;
    unsigned char *buf = slurp("models/fashion-mnist.cvy", &len);
    ck_assert(buf && len);
    long base = live(), n, nomem = 0;
    for (n = 0; n < 100000; n++) {
        cvy_model *m = NULL;
        cvy_error err = {{0}};
        arm(n);
        cvy_status st = cvy_model_load_memory(eng, buf, len, &m, &err);
        disarm();
        if (st == CVY_OK) {
            ck_assert_int_eq(cvy_model_self_test(m, NULL, &err), CVY_OK);
            cvy_model_free(m);
            break;
        }
        ck_assert_msg(st == CVY_ERR_NOMEM, "allocation %ld failed: status %s (%s)", n,
                      cvy_status_str(st), err.msg);
        ck_assert_msg(*err.msg, "allocation %ld failed without a message", n);
        ck_assert_msg(m == NULL, "allocation %ld: a model came back from a failed load", n);
        ck_assert_msg(live() == base, "allocation %ld failed: %ld allocations leaked", n,
                      live() - base);
        nomem++;
    }
    ck_assert_int_eq(live(), base);
    fprintf(stderr, "cvy_model_load_memory: each of %ld allocations failed in turn, cleanly\n",
            nomem);
    ck_assert(nomem >= 10);
    free(buf);
    cvy_engine_destroy(eng);
}
END_TEST

START_TEST(test_onnx_convert_faults)
{
    const char *path = "tests/data/zoo/patterns_opset9.onnx";
    cvy_onnx_options o = cvy_onnx_default_options();
    long base = live(), n, nomem = 0;
    for (n = 0; n < 100000; n++) {
        uint8_t *out = NULL;
        size_t len = 0;
        cvy_error err = {{0}};
        arm(n);
        cvy_status st = cvy_onnx_convert(path, &o, &out, &len, &err);
        disarm();
        if (st == CVY_OK) {
            ck_assert(out && len);
            free(out);
            break;
        }
        ck_assert_msg(st == CVY_ERR_NOMEM, "allocation %ld failed: status %s (%s)", n,
                      cvy_status_str(st), err.msg);
        ck_assert_msg(*err.msg, "allocation %ld failed without a message", n);
        ck_assert_msg(live() == base, "allocation %ld failed: %ld allocations leaked", n,
                      live() - base);
        nomem++;
    }
    ck_assert_int_eq(live(), base);
    fprintf(stderr, "cvy_onnx_convert: each of %ld allocations failed in turn, cleanly\n", nomem);
    ck_assert(nomem >= 10);
}
END_TEST

/* ---- the registry: reloads under faults --------------------------------------------------- */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} waiter;

static void job_done(srv_job *job)
{
    waiter *w = job->user;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Runs one input through the serving version of model `name` (its batcher): x (784 floats)
 * zero-padded or cut to the model's input size; writes the first 10 outputs (zero-padded) to
 * y and the version hash. */
static void serve_one(srv_registry *r, const char *name, const float *x, float *y, char *hash)
{
    int why;
    srv_model *m = srv_registry_acquire(r, name, &why);
    ck_assert_msg(m != NULL, "model %s does not serve (why %d)", name, why);
    snprintf(hash, 17, "%s", m->hash);
    size_t nin = cvy_model_input_size(m->m), nout = cvy_model_output_size(m->m);
    float *in = calloc(nin, sizeof *in), *out = calloc(nout, sizeof *out);
    ck_assert(in && out);
    memcpy(in, x, sizeof *in * (nin < 784 ? nin : 784));
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    srv_job job = {.n = 1, .input = in, .output = out, .done = job_done, .user = &w};
    ck_assert_int_eq(srv_batcher_submit(m->b, &job), SRV_SUBMIT_OK);
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    ck_assert_int_eq(job.status, SRV_JOB_OK);
    memset(y, 0, sizeof(float) * 10);
    memcpy(y, out, sizeof *out * (nout < 10 ? nout : 10));
    free(in);
    free(out);
    srv_model_release(m);
}

typedef struct fixture {
    char dir[64], path[128];
    srv_config cfg;
    cvy_engine *eng;
    srv_registry *reg;
    unsigned char *a, *b;
    size_t na, nb;
    float x[784], ya[10], y[10];
    char hash_a[17];
} fixture;

/* A registry on a fresh directory serving model "m" = fashion-mnist (A); B = the tutorial-
 * shaped test network converted from ONNX, a different valid model. */
static void fixture_up(fixture *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/convoy-faults-XXXXXX");
    ck_assert(mkdtemp(f->dir) != NULL);
    snprintf(f->path, sizeof f->path, "%s/m.cvy", f->dir);
    char *argv[] = {"convoyd",   "--models", f->dir,        "--log-level", "error",
                    "--threads", "1",        "--max-batch", "4",           NULL};
    ck_assert_int_eq(srv_config_load(&f->cfg, 9, argv), 0);
    f->a = slurp("models/fashion-mnist.cvy", &f->na);
    ck_assert(f->a && f->na);
    cvy_onnx_options o = cvy_onnx_default_options();
    cvy_error err;
    uint8_t *b = NULL;
    ck_assert_int_eq(cvy_onnx_convert("tests/data/zoo/patterns_opset9.onnx", &o, &b, &f->nb, &err),
                     CVY_OK);
    f->b = b;
    spit(f->path, f->a, f->na);
    f->eng = engine();
    f->reg = srv_registry_create(f->eng, &f->cfg);
    ck_assert(f->reg != NULL);
    ck_assert_int_eq(srv_registry_scan(f->reg), 0);
    for (int i = 0; i < 784; i++) f->x[i] = (float)((i * 31) % 17) / 17.0f;
    serve_one(f->reg, "m", f->x, f->ya, f->hash_a);
}

static void fixture_down(fixture *f)
{
    srv_registry_stop(f->reg);
    srv_registry_destroy(f->reg);
    cvy_engine_destroy(f->eng);
    free(f->a);
    free(f->b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Checks that A still serves and answers exactly as before. */
static void expect_a(fixture *f, long n)
{
    char hash[17];
    serve_one(f->reg, "m", f->x, f->y, hash);
    ck_assert_msg(strcmp(hash, f->hash_a) == 0, "after allocation %ld failed: version %s", n, hash);
    ck_assert_msg(memcmp(f->y, f->ya, sizeof f->y) == 0,
                  "after allocation %ld failed: answers differ", n);
}

START_TEST(test_registry_reload_faults)
{
    fixture f;
    fixture_up(&f);
    long n, failures = 0, base = -1;
    char msg[512];
    for (n = 0; n < 100000; n++) {
        spit(f.path, f.b, f.nb);
        arm(n);
        int rc = srv_registry_load(f.reg, "m", SRV_LOAD_EXPLICIT, msg, sizeof msg);
        disarm();
        if (rc == SRV_LOADED) break;
        ck_assert_msg(rc == SRV_FAILED, "allocation %ld failed: result %d (%s)", n, rc, msg);
        ck_assert_msg(strstr(msg, "memory") != NULL, "allocation %ld failed: message '%s'", n, msg);
        expect_a(&f, n);
        /* the registry's own bookkeeping (last error) settles after the first failure */
        if (base < 0)
            base = live();
        else
            ck_assert_msg(live() == base, "allocation %ld failed: %ld allocations leaked", n,
                          live() - base);
        failures++;
    }
    ck_assert_msg(n < 100000, "the reload never succeeded");
    char hash[17];
    serve_one(f.reg, "m", f.x, f.y, hash);
    ck_assert_msg(strcmp(hash, f.hash_a) != 0, "B loaded but A still serves");
    fprintf(stderr, "registry reload: each of %ld allocations failed in turn; A kept serving\n",
            failures);
    ck_assert(failures >= 20);
    fixture_down(&f);
}
END_TEST

START_TEST(test_registry_file_shrinks_or_vanishes)
{
    fixture f;
    fixture_up(&f);
    char msg[512];
    snprintf(hook_path, sizeof hook_path, "%s", f.path);
    /* shrinking while read: the watcher waits (incomplete), an explicit load fails */
    spit(f.path, f.b, f.nb);
    atomic_store(&hook, HOOK_SHRINK);
    int rc = srv_registry_load(f.reg, "m", SRV_LOAD_WATCH, msg, sizeof msg);
    ck_assert_msg(rc == SRV_INCOMPLETE || rc == SRV_FAILED, "result %d (%s)", rc, msg);
    expect_a(&f, -1);
    spit(f.path, f.b, f.nb);
    atomic_store(&hook, HOOK_SHRINK);
    rc = srv_registry_load(f.reg, "m", SRV_LOAD_EXPLICIT, msg, sizeof msg);
    ck_assert_msg(rc == SRV_FAILED, "result %d (%s)", rc, msg);
    expect_a(&f, -1);
    /* vanishing while read: the open descriptor still reads the whole file, which loads */
    spit(f.path, f.b, f.nb);
    atomic_store(&hook, HOOK_VANISH);
    rc = srv_registry_load(f.reg, "m", SRV_LOAD_EXPLICIT, msg, sizeof msg);
    ck_assert_msg(rc == SRV_LOADED, "result %d (%s)", rc, msg);
    ck_assert(access(f.path, F_OK) != 0);
    char hash[17];
    serve_one(f.reg, "m", f.x, f.y, hash);
    ck_assert(strcmp(hash, f.hash_a) != 0);
    /* gone before the load: reported missing; what serves keeps serving */
    rc = srv_registry_load(f.reg, "m", SRV_LOAD_EXPLICIT, msg, sizeof msg);
    ck_assert_msg(rc == SRV_MISSING, "result %d (%s)", rc, msg);
    serve_one(f.reg, "m", f.x, f.y, hash);
    fixture_down(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("alloc");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_cvy_load_faults);
    tcase_add_test(tc, test_onnx_convert_faults);
    tcase_add_test(tc, test_registry_reload_faults);
    tcase_add_test(tc, test_registry_file_shrinks_or_vanishes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed_tests = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed_tests ? 1 : 0;
}
