/*
 * metrics.c - see metrics.h.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define NLAT (int)(sizeof latency_bounds / sizeof latency_bounds[0])
#define NBAT (int)(sizeof batch_bounds / sizeof batch_bounds[0])

static const int codes[] = {200, 400, 404, 405, 408, 413, 415, 431, 499, 500, 503, 504};
#define NCODES (int)(sizeof codes / sizeof codes[0])
/* slot NCODES holds every other status */

atomic_ullong srv_metrics_model_loads;
atomic_long srv_metrics_connections;
static atomic_ullong limit_hits[SRV_LIMIT_COUNT];
static const struct {
    const char *label, *code;
} limits[SRV_LIMIT_COUNT] = {
    [SRV_LIMIT_BODY] = {"body", "body_too_large"},
    [SRV_LIMIT_HEADER] = {"header", "header_too_large"},
    [SRV_LIMIT_PIXELS] = {"pixels", "image_too_large"},
    [SRV_LIMIT_IMAGES] = {"images", "too_many_images"},
    [SRV_LIMIT_CONNECTIONS] = {"connections", "too_many_connections"},
    [SRV_LIMIT_REQUEST_TIMEOUT] = {"request_timeout", NULL},
    [SRV_LIMIT_IDLE_TIMEOUT] = {"idle_timeout", NULL},
    [SRV_LIMIT_QUEUE] = {"queue", "queue_full"},
};
atomic_ullong srv_metrics_model_load_failures;

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static srv_metrics_model *slots[SRV_METRICS_MAX_MODELS + 1];
static atomic_int nslots;

static void hist_init(srv_hist *h, const double *b, int nb)
{
    h->nb = nb;
    h->bounds = b;
}

static srv_metrics_model *slot_new(const char *name)
{
    srv_metrics_model *mm = calloc(1, sizeof *mm);
    if (!mm) return NULL;
    snprintf(mm->name, sizeof mm->name, "%s", name);
    hist_init(&mm->request_s, latency_bounds, NLAT);
    hist_init(&mm->queue_s, latency_bounds, NLAT);
    hist_init(&mm->decode_s, latency_bounds, NLAT);
    hist_init(&mm->inference_s, latency_bounds, NLAT);
    hist_init(&mm->batch_size, batch_bounds, NBAT);
    return mm;
}

srv_metrics_model *srv_metrics_model_get(const char *name)
{
    pthread_mutex_lock(&slots_mu);
    if (!slots[0]) slots[0] = slot_new("none");
    srv_metrics_model *found = slots[0];
    if (name) {
        int n = atomic_load(&nslots);
        int i;
        for (i = 1; i <= n; i++)
            if (strcmp(slots[i]->name, name) == 0) break;
        if (i <= n) {
            found = slots[i];
        } else if (n < SRV_METRICS_MAX_MODELS) {
            srv_metrics_model *mm = slot_new(name);
            if (mm) {
                slots[n + 1] = mm;
                atomic_store(&nslots, n + 1);
                found = mm;
            }
        }
    }
    pthread_mutex_unlock(&slots_mu);
    return found;
}

void srv_metrics_count(srv_metrics_model *mm, int status)
{
    int i;
    for (i = 0; i < NCODES; i++)
        if (codes[i] == status) break;
    atomic_fetch_add_explicit(&mm->by_code[i], 1, memory_order_relaxed);
}

void srv_metrics_limit(srv_limit l)
{
    if ((unsigned)l < SRV_LIMIT_COUNT)
        atomic_fetch_add_explicit(&limit_hits[l], 1, memory_order_relaxed);
}

int srv_metrics_limit_of_code(const char *code)
{
    for (int i = 0; code && i < SRV_LIMIT_COUNT; i++)
        if (limits[i].code && strcmp(limits[i].code, code) == 0) return i;
    return -1;
}

void srv_hist_observe(srv_hist *h, double v)
{
    int i = 0;
    while (i < h->nb && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    if (v > 0)
        atomic_fetch_add_explicit(&h->sum_micro, (unsigned long long)(v * 1e6 + 0.5),
                                  memory_order_relaxed);
}

/* A growing text buffer. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap * 2 + (size_t)n + 1;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

static void hist_render(sbuf *b, const char *metric, const char *model, srv_hist *h)
{
    unsigned long long cum = 0;
    for (int i = 0; i <= h->nb; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->nb) {
            sb_printf(b, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", metric, model, h->bounds[i],
                      cum);
        } else {
            sb_printf(b, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", metric, model, cum);
        }
    }
    double sum = (double)atomic_load_explicit(&h->sum_micro, memory_order_relaxed) / 1e6;
    sb_printf(b, "%s_sum{model=\"%s\"} %.6f\n", metric, model, sum);
    sb_printf(b, "%s_count{model=\"%s\"} %llu\n", metric, model, cum);
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long size = 0, res = 0;
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

char *srv_metrics_render(srv_metrics_depth_fn depth, void *user, size_t *len)
{
    sbuf b = {malloc(16384), 0, 16384, 0};
    if (!b.p) return NULL;
    b.p[0] = 0;
    srv_metrics_model_get(NULL); /* make sure slot 0 exists */
    int n = atomic_load(&nslots);
    srv_metrics_model *list[SRV_METRICS_MAX_MODELS + 1];
    pthread_mutex_lock(&slots_mu);
    for (int i = 0; i <= n; i++)
        list[i] = slots[i];
    pthread_mutex_unlock(&slots_mu);

    sb_printf(&b, "# HELP convoy_requests_total HTTP requests by model and status code.\n"
                  "# TYPE convoy_requests_total counter\n");
    for (int i = 0; i <= n; i++)
        for (int c = 0; c <= NCODES; c++) {
            unsigned long long v = atomic_load(&list[i]->by_code[c]);
            if (!v && !(c == 0 && i > 0)) continue;
            if (c < NCODES)
                sb_printf(&b, "convoy_requests_total{model=\"%s\",code=\"%d\"} %llu\n",
                          list[i]->name, codes[c], v);
            else
                sb_printf(&b, "convoy_requests_total{model=\"%s\",code=\"other\"} %llu\n",
                          list[i]->name, v);
        }

    struct {
        const char *name, *help;
        size_t off;
    } hs[] = {
        {"convoy_request_duration_seconds", "Request latency from first byte to response.",
         offsetof(srv_metrics_model, request_s)},
        {"convoy_queue_duration_seconds", "Time from enqueue to the first batch that ran it.",
         offsetof(srv_metrics_model, queue_s)},
        {"convoy_decode_duration_seconds", "Decode and preprocess time per request.",
         offsetof(srv_metrics_model, decode_s)},
        {"convoy_inference_duration_seconds", "Duration of one forward pass.",
         offsetof(srv_metrics_model, inference_s)},
        {"convoy_batch_size", "Images per forward pass.", offsetof(srv_metrics_model, batch_size)},
    };
    for (size_t k = 0; k < sizeof hs / sizeof hs[0]; k++) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hs[k].name, hs[k].help, hs[k].name);
        for (int i = 1; i <= n; i++)
            hist_render(&b, hs[k].name, list[i]->name, (srv_hist *)((char *)list[i] + hs[k].off));
    }

    struct {
        const char *name, *help;
        size_t off;
    } cs[] = {
        {"convoy_images_total", "Images classified.", offsetof(srv_metrics_model, images)},
        {"convoy_batches_total", "Forward passes run.", offsetof(srv_metrics_model, batches)},
        {"convoy_deadline_exceeded_total", "Queued entries dropped at their deadline.",
         offsetof(srv_metrics_model, timeouts)},
        {"convoy_cancelled_total", "Queued entries dropped because the client left.",
         offsetof(srv_metrics_model, cancelled)},
        {"convoy_rejected_total", "Requests refused because the queue was full.",
         offsetof(srv_metrics_model, rejected)},
        {"convoy_model_load_failures_by_model_total",
         "Failed loads and reloads of the model's file (the old version kept serving).",
         offsetof(srv_metrics_model, load_fails)},
    };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", cs[k].name, cs[k].help, cs[k].name);
        for (int i = 1; i <= n; i++)
            sb_printf(&b, "%s{model=\"%s\"} %llu\n", cs[k].name, list[i]->name,
                      atomic_load((atomic_ullong *)((char *)list[i] + cs[k].off)));
    }

    sb_printf(&b, "# HELP convoy_queue_depth Images waiting to run.\n"
                  "# TYPE convoy_queue_depth gauge\n");
    for (int i = 1; i <= n; i++) {
        long d = depth ? depth(list[i]->name, user) : -1;
        if (d >= 0) sb_printf(&b, "convoy_queue_depth{model=\"%s\"} %ld\n", list[i]->name, d);
    }
    sb_printf(&b, "# HELP convoy_limit_hits_total Requests refused or connections closed by a "
                  "limit.\n# TYPE convoy_limit_hits_total counter\n");
    for (int i = 0; i < SRV_LIMIT_COUNT; i++)
        sb_printf(&b, "convoy_limit_hits_total{limit=\"%s\"} %llu\n", limits[i].label,
                  atomic_load(&limit_hits[i]));
    sb_printf(&b, "# HELP convoy_connections Open HTTP connections.\n"
                  "# TYPE convoy_connections gauge\nconvoy_connections %ld\n",
              atomic_load(&srv_metrics_connections));
    sb_printf(&b,
              "# HELP convoy_model_loads_total Model files loaded.\n"
              "# TYPE convoy_model_loads_total counter\nconvoy_model_loads_total %llu\n"
              "# HELP convoy_model_load_failures_total Model files that failed to load.\n"
              "# TYPE convoy_model_load_failures_total counter\n"
              "convoy_model_load_failures_total %llu\n"
              "# HELP process_resident_memory_bytes Resident set size.\n"
              "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n",
              atomic_load(&srv_metrics_model_loads), atomic_load(&srv_metrics_model_load_failures),
              rss_bytes());
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len) *len = b.len;
    return b.p;
}
