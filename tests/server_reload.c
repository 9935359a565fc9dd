/*
 * server_reload.c - hot reload end to end: convoyd watches its model directory while clients
 * post continuously; model files are replaced, corrupted, truncated, copied in slowly,
 * deleted; the repository API loads, unloads and lists, with and without the admin token.
 *
 * Model versions are made at test time in a temporary directory: A is models/fashion-mnist.cvy,
 * B the same with one class bias of the last Gemm shifted (tools/cvy_variant.py, Debian's
 * python3 + numpy), so top-1 differs on some test images; "stale" is B keeping A's golden
 * self-test (it must fail validation); "corrupt" is A with a flipped weight byte (checksum);
 * "truncated" is the first half of A (incomplete: the watcher must wait, not fail).
 */
#include "server_util.h"

#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static timg RIMG[TS_NIMG];
static char vdir[256]; /* temporary directory of variants */
enum { V_A, V_B, V_STALE, V_CORRUPT, V_TRUNC, NV };
static unsigned char *vdata[NV];
static size_t vlen[NV];

/* Makes the variants once per process (each test runs in its own fork). */
static void make_variants(void)
{
    if (vdata[V_A]) return;
    ck_assert_int_eq(ts_load_images(RIMG), TS_NIMG);
    snprintf(vdir, sizeof vdir, "/tmp/convoy-reload-XXXXXX");
    ck_assert(mkdtemp(vdir) != NULL);
    ck_assert_msg(ts_make_variants(vdir) == 0, "cannot make the model variants in %s", vdir);
    char path[512];
    vdata[V_A] = ts_read_file("models/fashion-mnist.cvy", &vlen[V_A]);
    snprintf(path, sizeof path, "%s/B.cvy", vdir);
    vdata[V_B] = ts_read_file(path, &vlen[V_B]);
    snprintf(path, sizeof path, "%s/stale.cvy", vdir);
    vdata[V_STALE] = ts_read_file(path, &vlen[V_STALE]);
    ck_assert(vdata[V_A] && vdata[V_B] && vdata[V_STALE]);
    vlen[V_CORRUPT] = vlen[V_A];
    vdata[V_CORRUPT] = malloc(vlen[V_A]);
    memcpy(vdata[V_CORRUPT], vdata[V_A], vlen[V_A]);
    vdata[V_CORRUPT][vlen[V_A] / 2] ^= 0x5a; /* inside WEIGHTS: its CRC no longer matches */
    vlen[V_TRUNC] = vlen[V_A] / 2;
    vdata[V_TRUNC] = vdata[V_A];
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", vdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Deploys variant v as <dir>/<name>.cvy (write-then-rename). */
static void deploy(const tserver *s, const char *name, int v)
{
    ck_assert_int_eq(ts_deploy(s, name, vdata[v], vlen[v]), 0);
}

/* GET /models/<name>: version (into buf, "" if none) and load_failures; -1 if not 200. */
static long model_info(const tserver *s, const char *name, char *ver, size_t n, char *state,
                       size_t sn)
{
    char path[256];
    snprintf(path, sizeof path, "/models/%s", name);
    tresp r = ts_http(s, "GET", path, NULL, NULL, 0, NULL);
    long fails = -1;
    if (ver) *ver = 0;
    if (state) *state = 0;
    if (r.status == 200) {
        json_t *j = json_loads(r.body, 0, NULL);
        const char *v = json_string_value(json_object_get(j, "version"));
        if (ver) snprintf(ver, n, "%s", v ? v : "");
        const char *st = json_string_value(json_object_get(j, "state"));
        if (state) snprintf(state, sn, "%s", st ? st : "");
        fails = (long)json_integer_value(json_object_get(j, "load_failures"));
        json_decref(j);
    }
    ts_resp_free(&r);
    return fails;
}

/* Waits (bounded) until model name serves version want. Returns 1 on success. */
static int wait_version(const tserver *s, const char *name, const char *want, int timeout_ms)
{
    long t0 = ts_now_ms();
    char v[32];
    while (ts_now_ms() - t0 < timeout_ms) {
        model_info(s, name, v, sizeof v, NULL, 0);
        if (strcmp(v, want) == 0) return 1;
        ts_sleep_ms(5);
    }
    return 0;
}

static long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    fclose(f);
    return kb;
}

/* One /classify: returns the status; fills version and the predictions of image 0 (JSON). */
static long classify(const tserver *s, int img, char *ver, size_t vn, char **preds, double *secs)
{
    tresp r =
        ts_http(s, "POST", "/models/m/classify", "image/png", RIMG[img].data, RIMG[img].len, NULL);
    long st = r.status;
    *ver = 0;
    *preds = NULL;
    if (secs) *secs = r.seconds;
    if (st == 200) {
        json_t *j = json_loads(r.body, 0, NULL);
        const char *v = json_string_value(json_object_get(j, "model_version"));
        snprintf(ver, vn, "%s", v ? v : "");
        json_t *p =
            json_object_get(json_array_get(json_object_get(j, "results"), 0), "predictions");
        *preds = p ? json_dumps(p, JSON_COMPACT) : NULL;
        json_decref(j);
    }
    ts_resp_free(&r);
    return st;
}

/* ---- reloads under load --------------------------------------------------------------------- */

#define NCLIENT 32
#define NRELOAD 200
#define MAXLAT  400000

typedef struct shared {
    const tserver *s;
    char ver[2][32];          /* versions A and B */
    char *expect[2][TS_NIMG]; /* predictions per version and image */
    atomic_int stop, phase;   /* 0 warm-up, 1 steady, 2 reloading, 3 after */
    atomic_int pause, busy;   /* pause: clients wait (for an idle RSS reading) */
    atomic_long ok, failed, wrong, unknown_version;
    atomic_long nlat[2];
    float *lat[2]; /* milliseconds, per phase */
    char first_error[512];
    pthread_mutex_t mu;
} shared;

static void *client(void *arg)
{
    shared *sh = arg;
    static atomic_int next_id;
    int id = atomic_fetch_add(&next_id, 1);
    long deadline = ts_now_ms() + 100000; /* never runs away */
    for (int k = 0; !atomic_load(&sh->stop) && ts_now_ms() < deadline; k++) {
        if (atomic_load(&sh->pause)) {
            ts_sleep_ms(5);
            continue;
        }
        atomic_fetch_add(&sh->busy, 1);
        int img = (id + k) % TS_NIMG;
        int phase = atomic_load(&sh->phase);
        char ver[32], *preds;
        long t0 = now_us();
        long st = classify(sh->s, img, ver, sizeof ver, &preds, NULL);
        double ms = (double)(now_us() - t0) / 1e3;
        atomic_fetch_sub(&sh->busy, 1);
        if (st != 200) {
            atomic_fetch_add(&sh->failed, 1);
            pthread_mutex_lock(&sh->mu);
            if (!*sh->first_error)
                snprintf(sh->first_error, sizeof sh->first_error, "status %ld", st);
            pthread_mutex_unlock(&sh->mu);
            continue;
        }
        int v = strcmp(ver, sh->ver[0]) == 0 ? 0 : strcmp(ver, sh->ver[1]) == 0 ? 1 : -1;
        if (v < 0) {
            atomic_fetch_add(&sh->unknown_version, 1);
        } else if (!preds || strcmp(preds, sh->expect[v][img]) != 0) {
            atomic_fetch_add(&sh->wrong, 1);
            pthread_mutex_lock(&sh->mu);
            if (!*sh->first_error)
                snprintf(sh->first_error, sizeof sh->first_error,
                         "image %d version %s: %.100s, expected %.100s", img, ver,
                         preds ? preds : "-", sh->expect[v][img]);
            pthread_mutex_unlock(&sh->mu);
        } else {
            atomic_fetch_add(&sh->ok, 1);
        }
        free(preds);
        if (phase == 1 || phase == 2) {
            long i = atomic_fetch_add(&sh->nlat[phase - 1], 1);
            if (i < MAXLAT) sh->lat[phase - 1][i] = (float)ms;
        }
    }
    return NULL;
}

/* RSS with no request in flight: clients paused, 500 ms to settle. */
static long idle_rss(shared *sh, pid_t pid)
{
    atomic_store(&sh->pause, 1);
    for (int t = 0; t < 1000 && atomic_load(&sh->busy) > 0; t++) ts_sleep_ms(5);
    ts_sleep_ms(500);
    long kb = rss_kb(pid);
    atomic_store(&sh->pause, 0);
    return kb;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static float pct(float *v, long n, double p)
{
    if (n <= 0) return -1;
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    long i = (long)(p * (double)(n - 1) + 0.5);
    return v[i];
}

START_TEST(test_reload_under_load)
{
    make_variants();
    /* under the sanitizers (make asan, make tsan) everything is ~10x slower: fewer reloads, no
     * RSS bound */
    int sanitized = strstr(ts_build_dir(), "asan") || strstr(ts_build_dir(), "tsan");
    int nreload = sanitized ? 40 : NRELOAD;
    static const char *const args[] = {"--watch-debounce-ms", "20", "--log-level", "warn", NULL};
    tserver s;
    ck_assert_int_eq(ts_start(&s, 1, args), 0);
    shared *sh = calloc(1, sizeof *sh);
    sh->s = &s;
    pthread_mutex_init(&sh->mu, NULL);
    sh->lat[0] = malloc(sizeof(float) * MAXLAT);
    sh->lat[1] = malloc(sizeof(float) * MAXLAT);

    /* The reference answers of both versions, one request per image. */
    for (int v = 0; v < 2; v++) {
        deploy(&s, "m", v == 0 ? V_A : V_B);
        char want[32] = "";
        for (int t = 0; t < 400 && !*want; t++) {
            model_info(&s, "m", want, sizeof want, NULL, 0);
            if (v == 1 && strcmp(want, sh->ver[0]) == 0) *want = 0;
            if (!*want) ts_sleep_ms(10);
        }
        ck_assert_msg(*want, "version %d did not load (log %s)", v, s.log);
        snprintf(sh->ver[v], sizeof sh->ver[v], "%s", want);
        for (int i = 0; i < TS_NIMG; i++) {
            char ver[32];
            long st = classify(&s, i, ver, sizeof ver, &sh->expect[v][i], NULL);
            ck_assert_int_eq(st, 200);
            ck_assert_str_eq(ver, sh->ver[v]);
        }
    }
    int differ = 0;
    for (int i = 0; i < TS_NIMG; i++) differ += strcmp(sh->expect[0][i], sh->expect[1][i]) != 0;
    ck_assert_msg(differ > 0, "the two versions answer alike");
    deploy(&s, "m", V_A);
    ck_assert(wait_version(&s, "m", sh->ver[0], 5000));

    /* Steady state (also the warm-up), then RSS before. */
    pthread_t th[NCLIENT];
    for (int i = 0; i < NCLIENT; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, client, sh), 0);
    /* warm-up under load: ten reloads (first-time allocations: arenas, thread stacks) */
    for (int i = 1; i <= 10; i++) {
        deploy(&s, "m", i % 2 ? V_B : V_A);
        ck_assert(wait_version(&s, "m", sh->ver[i % 2], 5000));
    }
    ts_sleep_ms(500);
    atomic_store(&sh->phase, 1);
    ts_sleep_ms(3000);
    long rss_before = idle_rss(sh, s.pid);
    long fails0 = model_info(&s, "m", NULL, 0, NULL, 0);

    /* 200 reloads alternating B and A; every tenth time a corrupt (checksum or stale golden)
     * and a truncated file first. */
    atomic_store(&sh->phase, 2);
    long t_reload = ts_now_ms(), deadline = t_reload + 70000;
    int done = 0, bad = 0, notready = 0;
    char why[256] = "";
    for (int i = 1; i <= nreload && ts_now_ms() < deadline && !*why; i++) {
        int v = i % 2; /* 1 = B, 0 = A; the current version is the other one */
        if (i % 10 == 0) {
            deploy(&s, "m", (i / 10) % 2 ? V_CORRUPT : V_STALE);
            long f = -1;
            for (int t = 0; t < 500 && f < fails0 + bad + 1; t++) {
                f = model_info(&s, "m", NULL, 0, NULL, 0);
                if (f < fails0 + bad + 1) ts_sleep_ms(5);
            }
            if (f != fails0 + bad + 1)
                snprintf(why, sizeof why, "reload %d: the bad file was not counted", i);
            bad++;
            deploy(&s, "m", V_TRUNC);
            ts_sleep_ms(60); /* three debounce periods: it must be ignored */
            char cur[32];
            if (model_info(&s, "m", cur, sizeof cur, NULL, 0) != fails0 + bad ||
                strcmp(cur, sh->ver[1 - v]) != 0)
                snprintf(why, sizeof why, "reload %d: a truncated file changed the model", i);
        }
        deploy(&s, "m", v ? V_B : V_A);
        if (!wait_version(&s, "m", sh->ver[v], 5000))
            snprintf(why, sizeof why, "reload %d: version %s did not load", i, sh->ver[v]);
        tresp r = ts_http(&s, "GET", "/readyz", NULL, NULL, 0, NULL);
        notready += r.status != 200;
        ts_resp_free(&r);
        done++;
    }
    long reload_ms = ts_now_ms() - t_reload;
    atomic_store(&sh->phase, 3);
    ts_sleep_ms(300);
    atomic_store(&sh->stop, 1);
    for (int i = 0; i < NCLIENT; i++) pthread_join(th[i], NULL);
    long rss_after = idle_rss(sh, s.pid); /* the old version is freed after its last request */

    long n0 = atomic_load(&sh->nlat[0]), n1 = atomic_load(&sh->nlat[1]);
    n0 = n0 < MAXLAT ? n0 : MAXLAT;
    n1 = n1 < MAXLAT ? n1 : MAXLAT;
    double secs0 = 3.0, secs1 = reload_ms / 1e3;
    printf("reload-bench: %d reloads (%d bad files + %d truncated) in %.1f s, %d clients\n"
           "reload-bench: steady:    %ld requests, %.0f req/s, p50 %.2f ms, p99 %.2f ms\n"
           "reload-bench: reloading: %ld requests, %.0f req/s, p50 %.2f ms, p99 %.2f ms\n"
           "reload-bench: RSS before %ld kB, after %ld kB (%+.1f%%); failed %ld, wrong %ld, "
           "unknown version %ld, /readyz not 200 %d times\n",
           done, bad, bad, secs1, NCLIENT, n0, n0 / secs0, (double)pct(sh->lat[0], n0, 0.50),
           (double)pct(sh->lat[0], n0, 0.99), n1, n1 / secs1, (double)pct(sh->lat[1], n1, 0.50),
           (double)pct(sh->lat[1], n1, 0.99), rss_before, rss_after,
           100.0 * (double)(rss_after - rss_before) / (double)rss_before, atomic_load(&sh->failed),
           atomic_load(&sh->wrong), atomic_load(&sh->unknown_version), notready);
    fflush(stdout);
    ck_assert_msg(!*why, "%s (log %s)", why, s.log);
    ck_assert_int_eq(done, nreload);
    ck_assert_msg(atomic_load(&sh->failed) == 0, "failed requests: %ld (%s)",
                  atomic_load(&sh->failed), sh->first_error);
    ck_assert_msg(atomic_load(&sh->wrong) == 0, "wrong predictions: %ld (%s)",
                  atomic_load(&sh->wrong), sh->first_error);
    ck_assert_int_eq(atomic_load(&sh->unknown_version), 0);
    ck_assert_int_eq(notready, 0);
    ck_assert(n1 > 0);
    if (!sanitized) /* ASan's quarantine keeps freed memory on purpose */
        ck_assert_msg(rss_after <= rss_before * 11 / 10 && rss_after >= rss_before * 9 / 10,
                      "RSS %ld kB before, %ld kB after", rss_before, rss_after);
    /* the metrics count the failures by model */
    tresp r = ts_http(&s, "GET", "/metrics", NULL, NULL, 0, NULL);
    char series[128];
    snprintf(series, sizeof series, "convoy_model_load_failures_by_model_total{model=\"m\"} %d",
             bad);
    ck_assert_msg(strstr(r.body, series) != NULL, "no '%s' in /metrics", series);
    ts_resp_free(&r);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < TS_NIMG; i++) free(sh->expect[v][i]);
    free(sh->lat[0]);
    free(sh->lat[1]);
    free(sh);
}
END_TEST

/* ---- a file copied slowly --------------------------------------------------------------- */

START_TEST(test_slow_copy)
{
    make_variants();
    static const char *const args[] = {"--watch-debounce-ms", "50", NULL};
    tserver s;
    ck_assert_int_eq(ts_start(&s, 1, args), 0);
    /* B's version, from a complete copy under another name */
    deploy(&s, "ref", V_B);
    char want[32] = "";
    for (int t = 0; t < 400 && !*want; t++) {
        model_info(&s, "ref", want, sizeof want, NULL, 0);
        if (!*want) ts_sleep_ms(10);
    }
    ck_assert(*want);
    tresp r = ts_http(&s, "GET", "/metrics", NULL, NULL, 0, NULL);
    const char *p = strstr(r.body, "\nconvoy_model_loads_total ");
    ck_assert(p != NULL);
    long loads0 = atol(p + strlen("\nconvoy_model_loads_total "));
    ts_resp_free(&r);

    /* Eight chunks (the first only 5 bytes: part of the magic), each through its own open,
     * write and close, with pauses longer than the debounce; the model must not appear until
     * the file is complete, and never fail. */
    char dst[512];
    snprintf(dst, sizeof dst, "%s/slow.cvy", s.dir);
    size_t cuts[9] = {0, 5};
    for (int k = 2; k <= 8; k++) cuts[k] = vlen[V_B] * (size_t)(k - 1) / 7;
    for (int k = 0; k < 8; k++) {
        FILE *f = fopen(dst, k ? "ab" : "wb");
        ck_assert(f != NULL);
        ck_assert_uint_eq(fwrite(vdata[V_B] + cuts[k], 1, cuts[k + 1] - cuts[k], f),
                          cuts[k + 1] - cuts[k]);
        ck_assert_int_eq(fclose(f), 0);
        for (int t = 0; t < 15; t++) { /* 150 ms: three debounce periods */
            char ver[32], state[32];
            long fails = model_info(&s, "slow", ver, sizeof ver, state, sizeof state);
            if (k < 7)
                ck_assert_msg(fails < 0, "a partial file (%zu bytes) was loaded or failed: %s",
                              cuts[k + 1], state);
            ts_sleep_ms(10);
        }
    }
    ck_assert(wait_version(&s, "slow", want, 5000));
    char state[32];
    ck_assert_int_eq(model_info(&s, "slow", NULL, 0, state, sizeof state), 0);
    ck_assert_str_eq(state, "ready");
    ts_sleep_ms(200);
    r = ts_http(&s, "GET", "/metrics", NULL, NULL, 0, NULL);
    p = strstr(r.body, "\nconvoy_model_loads_total ");
    ck_assert_int_eq(atol(p + strlen("\nconvoy_model_loads_total ")), loads0 + 1);
    ck_assert(strstr(r.body, "\nconvoy_model_load_failures_total 0\n") != NULL);
    ts_resp_free(&r);
    /* a deleted file unloads after the grace period (default 5 s is too long here: SIGHUP-free
     * check of the explicit API instead is in test_admin_api) */
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);
}
END_TEST

/* ---- deletion ----------------------------------------------------------------------------- */

START_TEST(test_delete_unloads)
{
    make_variants();
    static const char *const args[] = {"--watch-debounce-ms", "20", "--unload-grace-ms", "1500",
                                       NULL};
    tserver s;
    ck_assert_int_eq(ts_start(&s, 1, args), 0);
    deploy(&s, "m", V_B);
    char v[32] = "";
    for (int t = 0; t < 400 && !*v; t++) {
        model_info(&s, "m", v, sizeof v, NULL, 0);
        if (!*v) ts_sleep_ms(10);
    }
    ck_assert(*v);
    char path[512];
    snprintf(path, sizeof path, "%s/m.cvy", s.dir);
    ck_assert_int_eq(unlink(path), 0);
    ts_sleep_ms(200); /* within the grace period: still serving */
    char ver[32], *preds;
    ck_assert_int_eq(classify(&s, 0, ver, sizeof ver, &preds, NULL), 200);
    free(preds);
    long t0 = ts_now_ms();
    while (model_info(&s, "m", NULL, 0, NULL, 0) >= 0 && ts_now_ms() - t0 < 5000) ts_sleep_ms(10);
    ck_assert_int_lt(model_info(&s, "m", NULL, 0, NULL, 0), 0);
    ck_assert_int_eq(classify(&s, 0, ver, sizeof ver, &preds, NULL), 404);
    /* /readyz stays 200: the other model serves */
    tresp r = ts_http(&s, "GET", "/readyz", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    ts_resp_free(&r);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);
}
END_TEST

/* ---- the repository API ------------------------------------------------------------------ */

static long post(const tserver *s, const char *path, const char *body, const char *h1, char **out)
{
    const char *hs[] = {h1, NULL};
    tresp r = ts_http(s, "POST", path, body ? "application/json" : NULL, body ? body : "",
                      body ? strlen(body) : 0, h1 ? hs : NULL);
    long st = r.status;
    if (out) *out = r.body ? strdup(r.body) : strdup("");
    ts_resp_free(&r);
    return st;
}

/* The state of model name in the index ("" if absent). */
static void index_state(const tserver *s, const char *h1, const char *name, char *state, size_t n)
{
    char *body;
    *state = 0;
    ck_assert_int_eq(post(s, "/v2/repository/index", NULL, h1, &body), 200);
    json_t *j = json_loads(body, 0, NULL);
    ck_assert(json_is_array(j));
    for (size_t i = 0; i < json_array_size(j); i++) {
        json_t *e = json_array_get(j, i);
        if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0) {
            snprintf(state, n, "%s", json_string_value(json_object_get(e, "state")));
            ck_assert(json_is_string(json_object_get(e, "version")));
            ck_assert(json_is_string(json_object_get(e, "reason")));
        }
    }
    json_decref(j);
    free(body);
}

START_TEST(test_admin_api)
{
    make_variants();
    static const char *const noauto[] = {"--watch", "0", NULL};
    tserver s;
    ck_assert_int_eq(ts_start(&s, 1, noauto), 0);
    char state[32], *body;
    /* no token configured: loopback only, and no proxy header */
    index_state(&s, NULL, "fashion-mnist", state, sizeof state);
    ck_assert_str_eq(state, "READY");
    ck_assert_int_eq(post(&s, "/v2/repository/index", NULL, "X-Forwarded-For: 203.0.113.7", &body),
                     403);
    ck_assert(strstr(body, "\"error\"") != NULL);
    free(body);
    ck_assert_int_eq(post(&s, "/v2/repository/models/fashion-mnist/unload", NULL,
                          "Forwarded: for=203.0.113.7", NULL),
                     403);
    tresp r = ts_http(&s, "GET", "/v2/repository/index", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 405);
    ts_resp_free(&r);

    /* names may not escape the directory */
    long st0 = post(&s, "/v2/repository/models/../load", NULL, NULL, NULL); /* curl may fold it */
    ck_assert_msg(st0 == 400 || st0 == 404, "status %ld", st0);
    ck_assert_int_eq(post(&s, "/v2/repository/models/x..y/load", NULL, NULL, NULL), 400);
    ck_assert_int_eq(post(&s, "/v2/repository/models/.hidden/load", NULL, NULL, NULL), 400);
    ck_assert_int_eq(post(&s, "/v2/repository/models/a%20b/load", NULL, NULL, NULL), 400);
    long st = post(&s, "/v2/repository/models/..%2Fetc%2Fpasswd/load", NULL, NULL, NULL);
    ck_assert_msg(st == 400 || st == 404, "status %ld", st);
    ck_assert_int_eq(post(&s, "/v2/repository/models/nosuch/load", NULL, NULL, NULL), 404);
    ck_assert_int_eq(post(&s, "/v2/repository/models/nosuch/unload", NULL, NULL, NULL), 404);
    ck_assert_int_eq(post(&s, "/v2/repository/index", "not json", NULL, NULL), 400);

    /* unload: requests get 503, the index says why, /readyz turns 503 (nothing serves) */
    ck_assert_int_eq(post(&s, "/v2/repository/models/fashion-mnist/unload", NULL, NULL, NULL), 200);
    r = ts_http(&s, "POST", "/models/fashion-mnist/classify", "image/png", RIMG[0].data,
                RIMG[0].len, NULL);
    ck_assert_int_eq(r.status, 503);
    ts_resp_free(&r);
    ck_assert_int_eq(post(&s, "/v2/repository/index", NULL, NULL, &body), 200);
    ck_assert_msg(strstr(body, "\"unloaded\"") != NULL, "%s", body);
    free(body);
    index_state(&s, NULL, "fashion-mnist", state, sizeof state);
    ck_assert_str_eq(state, "UNAVAILABLE");
    ck_assert_int_eq(post(&s, "/v2/repository/index", "{\"ready\": true}", NULL, &body), 200);
    ck_assert_str_eq(body, "[]");
    free(body);
    /* SIGHUP does not bring an explicitly unloaded model back */
    kill(s.pid, SIGHUP);
    ts_sleep_ms(300);
    index_state(&s, NULL, "fashion-mnist", state, sizeof state);
    ck_assert_str_eq(state, "UNAVAILABLE");

    /* load: serves again */
    ck_assert_int_eq(post(&s, "/v2/repository/models/fashion-mnist/load", NULL, NULL, &body), 200);
    ck_assert_msg(strstr(body, "\"loaded\"") != NULL, "%s", body);
    free(body);
    r = ts_http(&s, "POST", "/models/fashion-mnist/classify", "image/png", RIMG[0].data,
                RIMG[0].len, NULL);
    ck_assert_int_eq(r.status, 200);
    ts_resp_free(&r);

    /* with watching off, a new file is loaded by the API; a stale golden self-test fails and
     * leaves the serving version in place, with last_error and the failure counted */
    deploy(&s, "m", V_B);
    ck_assert_int_eq(post(&s, "/v2/repository/models/m/load", NULL, NULL, NULL), 200);
    char v_b[32];
    ck_assert_int_eq(model_info(&s, "m", v_b, sizeof v_b, NULL, 0), 0);
    ck_assert(*v_b);
    deploy(&s, "m", V_STALE);
    ck_assert_int_eq(post(&s, "/v2/repository/models/m/load", NULL, NULL, &body), 400);
    ck_assert_msg(strstr(body, "self-test") != NULL, "%s", body);
    free(body);
    char v2[32];
    ck_assert_int_eq(model_info(&s, "m", v2, sizeof v2, state, sizeof state), 1);
    ck_assert_str_eq(v2, v_b);
    ck_assert_str_eq(state, "ready");
    r = ts_http(&s, "GET", "/models/m", NULL, NULL, 0, NULL);
    ck_assert_msg(strstr(r.body, "self-test failed") != NULL, "%s", r.body);
    ts_resp_free(&r);
    r = ts_http(&s, "GET", "/readyz", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    ts_resp_free(&r);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);

    /* with a token: 401 without credentials, 403 with wrong ones, 200 with the right one;
     * the token is never printed */
    static const char *const tok[] = {"--admin-token", "s3cret-token", NULL};
    ck_assert_int_eq(ts_start(&s, 1, tok), 0);
    ck_assert_int_eq(post(&s, "/v2/repository/index", NULL, NULL, &body), 401);
    ck_assert(strstr(body, "\"error\"") != NULL);
    free(body);
    ck_assert_int_eq(post(&s, "/v2/repository/index", NULL, "Authorization: Bearer wrong", NULL),
                     403);
    ck_assert_int_eq(post(&s, "/v2/repository/index", NULL, "Authorization: Basic czM=", NULL),
                     401);
    ck_assert_int_eq(post(&s, "/v2/repository/models/fashion-mnist/unload", NULL,
                          "Authorization: Bearer s3cret-tokenX", NULL),
                     403);
    index_state(&s, "Authorization: Bearer s3cret-token", "fashion-mnist", state, sizeof state);
    ck_assert_str_eq(state, "READY");
    /* with the token a proxied request is fine */
    ck_assert_int_eq(post(&s, "/v2/repository/models/fashion-mnist/load", NULL,
                          "Authorization: Bearer s3cret-token", &body),
                     200);
    ck_assert_msg(strstr(body, "\"unchanged\"") != NULL, "%s", body);
    free(body);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);
    char cmd[512], out[4096] = "";
    snprintf(cmd, sizeof cmd, "CONVOY_ADMIN_TOKEN=hidden-value %s/convoyd --print-config",
             ts_build_dir());
    FILE *f = popen(cmd, "r");
    ck_assert(f != NULL);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    ck_assert_int_eq(pclose(f), 0);
    ck_assert_msg(strstr(out, "hidden-value") == NULL && strstr(out, "\"admin-token\": \"(set)\""),
                  "%s", out);
}
END_TEST

Suite *reload_suite(void)
{
    Suite *s = suite_create("reload");
    TCase *tc = tcase_create("hot-reload");
    tcase_set_timeout(tc, 110);
    tcase_add_test(tc, test_admin_api);
    tcase_add_test(tc, test_slow_copy);
    tcase_add_test(tc, test_delete_unloads);
    suite_add_tcase(s, tc);
    TCase *load = tcase_create("under-load");
    tcase_set_timeout(load, 110);
    tcase_add_test(load, test_reload_under_load);
    suite_add_tcase(s, load);
    return s;
}
