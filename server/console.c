/*
 * console.c - see console.h.
 */
#include "console.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* srv_console_html[], srv_console_html_len: the bytes of server/console.html, generated into
 * $(BUILD)/gen by server/console.mk. */
#include "console_html.c"

#define RING     1024 /* recent successful inference requests kept */
#define WINDOW_S 60   /* ...of which those younger than this count */
#define RATE_S   5    /* requests_per_s: whole seconds averaged */
#define SECONDS  8    /* per-second request counters (> RATE_S + 1) */

typedef struct recent {
    int64_t t_ns;
    float ms;
    int images, batch;
} recent;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static recent ring[RING];
static unsigned long long ring_n;  /* entries ever written; ring[(ring_n - 1) % RING] is last */
static unsigned long long total;   /* inference requests answered */
static int64_t sec_stamp[SECONDS]; /* which second each counter holds */
static unsigned long sec_count[SECONDS];
static int64_t t_start_ns;

__attribute__((constructor)) static void console_start(void) { t_start_ns = srv_now_ns(); }

void srv_console_observe(const srv_req *r, double ms)
{
    if (r->route != R_CLASSIFY && r->route != R_V2_INFER) return;
    int64_t now = srv_now_ns(), s = now / 1000000000;
    int i = (int)(s % SECONDS);
    pthread_mutex_lock(&mu);
    total++;
    if (sec_stamp[i] != s) {
        sec_stamp[i] = s;
        sec_count[i] = 0;
    }
    sec_count[i]++;
    if (r->status >= 200 && r->status < 300) {
        recent *e = &ring[ring_n % RING];
        e->t_ns = now;
        e->ms = (float)ms;
        e->images = r->n > 0 ? r->n : 1;
        e->batch = r->job.batch_size > 0 ? r->job.batch_size : 1;
        ring_n++;
    }
    pthread_mutex_unlock(&mu);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of n sorted values. */
static double pct(const float *v, int n, double p)
{
    int k = (int)(p / 100.0 * n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

static void handle_stats(srv_req *r)
{
    static float lat[RING];
    int64_t now = srv_now_ns(), s = now / 1000000000;
    double up = (double)(now - t_start_ns) / 1e9;
    int n = 0;
    double images = 0, batches = 0;
    unsigned long long tot;
    unsigned long rate_sum = 0;
    /* lat is shared by concurrent /stats calls: filled and sorted under the lock. */
    pthread_mutex_lock(&mu);
    tot = total;
    for (int k = 1; k <= RATE_S; k++) {
        int i = (int)((s - k) % SECONDS);
        if (sec_stamp[i] == s - k) rate_sum += sec_count[i];
    }
    unsigned long long have = ring_n < RING ? ring_n : RING;
    for (unsigned long long k = 0; k < have; k++) {
        const recent *e = &ring[(ring_n - 1 - k) % RING];
        if (now - e->t_ns > (int64_t)WINDOW_S * 1000000000) break;
        lat[n++] = e->ms;
        images += e->images;
        batches += (double)e->images / e->batch; /* each image ran in a batch of e->batch */
    }
    qsort(lat, (size_t)n, sizeof lat[0], cmp_float);
    double p50 = n ? pct(lat, n, 50) : 0, p99 = n ? pct(lat, n, 99) : 0;
    pthread_mutex_unlock(&mu);

    double span = up < RATE_S ? (up < 1 ? 1 : (double)(int64_t)up) : RATE_S;
    json_t *models = json_array();
    json_t *all = srv_registry_describe(r->app->reg, NULL);
    long depth = 0;
    size_t i;
    json_t *m;
    json_array_foreach(all, i, m)
    {
        json_t *q = json_object_get(m, "queue_depth");
        if (json_is_integer(q)) depth += (long)json_integer_value(q);
        json_t *o = json_object();
        static const char *keep[] = {"name", "version", "state", "queue_depth", "last_error"};
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
            json_t *v = json_object_get(m, keep[k]);
            json_object_set(o, keep[k], v ? v : json_null());
        }
        json_array_append_new(models, o);
    }
    json_decref(all);
    json_t *body =
        json_pack("{s:f,s:I,s:f,s:o,s:{s:o,s:o},s:I,s:o}", "uptime_s", up, "requests_total",
                  (json_int_t)tot, "requests_per_s", (double)rate_sum / span, "mean_batch_size",
                  batches > 0 ? json_real(images / batches) : json_null(), "latency_ms", "p50",
                  n ? json_real(p50) : json_null(), "p99", n ? json_real(p99) : json_null(),
                  "queue_depth", (json_int_t)depth, "models", models);
    if (!body) {
        srv_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    srv_respond_json(r, 200, body);
}

void srv_console_handle(srv_req *r)
{
    if (r->route == R_STATS) {
        handle_stats(r);
        return;
    }
    char *page = malloc(srv_console_html_len ? srv_console_html_len : 1);
    if (!page) {
        srv_respond_error(r, 500, "internal", "out of memory");
        return;
    }
    memcpy(page, srv_console_html, srv_console_html_len);
    srv_respond_buffer(r, 200, "text/html; charset=utf-8", page, srv_console_html_len,
                       "Cache-Control", "no-cache");
}
