/*
 * metrics.h - Prometheus counters and fixed-bucket histograms.
 *
 * Per-model slots (at most SRV_METRICS_MAX_MODELS names, plus "none" for requests that named
 * no known model) hold request counts by status code and latency/batch histograms. Updates
 * use atomics; slot creation takes a mutex. srv_metrics_render writes the text format.
 */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_METRICS_MAX_MODELS 64
#define SRV_HIST_MAX_BUCKETS 20

typedef struct srv_hist {
    int nb;                                         /* finite buckets */
    const double *bounds;                           /* upper bounds, ascending */
    atomic_ullong counts[SRV_HIST_MAX_BUCKETS + 1]; /* per bucket (not cumulative), +Inf last */
    atomic_ullong sum_micro;                        /* sum of observations x 1e6 */
} srv_hist;

typedef struct srv_metrics_model {
    char name[128];
    atomic_ullong by_code[16]; /* indexed by srv_metrics_code_slot() */
    srv_hist request_s;        /* request latency, seconds */
    srv_hist queue_s;          /* time a request waited before its first batch ran, seconds */
    srv_hist decode_s;         /* decode + preprocess per request, seconds */
    srv_hist inference_s;      /* one forward pass, seconds */
    srv_hist batch_size;       /* images per forward pass */
    atomic_ullong images;      /* images classified */
    atomic_ullong batches;     /* forward passes */
    atomic_ullong timeouts;    /* entries dropped at their deadline */
    atomic_ullong cancelled;   /* entries dropped because the client left */
    atomic_ullong rejected;    /* requests refused because the queue was full */
    atomic_ullong load_fails;  /* failed loads and reloads of its file */
} srv_metrics_model;

/* Returns the slot for a model name (created on first use), or the "none" slot when name is
 * NULL or the table is full. Never NULL. Thread-safe. */
srv_metrics_model *srv_metrics_model_get(const char *name);

void srv_metrics_count(srv_metrics_model *mm, int http_status);
void srv_hist_observe(srv_hist *h, double v);

/* The request limits of issue "Hardening", each counted when it refuses or closes something. */
typedef enum srv_limit {
    SRV_LIMIT_BODY,            /* 413 body_too_large */
    SRV_LIMIT_HEADER,          /* 431 header_too_large */
    SRV_LIMIT_PIXELS,          /* 413 image_too_large */
    SRV_LIMIT_IMAGES,          /* 413 too_many_images */
    SRV_LIMIT_CONNECTIONS,     /* 503 too_many_connections */
    SRV_LIMIT_REQUEST_TIMEOUT, /* connection closed: request not received within the limit */
    SRV_LIMIT_IDLE_TIMEOUT,    /* connection closed: no byte within the idle timeout */
    SRV_LIMIT_QUEUE,           /* 503 queue_full */
    SRV_LIMIT_COUNT
} srv_limit;

/* Counts one hit of a limit. Thread-safe. */
void srv_metrics_limit(srv_limit l);
/* The limit an error code reports ("body_too_large" -> SRV_LIMIT_BODY), or -1. */
int srv_metrics_limit_of_code(const char *code);
/* Open HTTP connections (kept by http.c). */
extern atomic_long srv_metrics_connections;

extern atomic_ullong srv_metrics_model_loads;
extern atomic_ullong srv_metrics_model_load_failures;

/* Queue depth callback: images waiting for a model name; -1 if unknown. */
typedef long (*srv_metrics_depth_fn)(const char *model, void *user);

/* Renders every metric. Returns a malloc'ed NUL-terminated string (caller frees), or NULL. */
char *srv_metrics_render(srv_metrics_depth_fn depth, void *user, size_t *len);

#endif
