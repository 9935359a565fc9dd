/*
 * http.h - the libmicrohttpd front end: daemon, per-request state, routing, responses.
 *
 * The daemon runs an internal epoll thread pool (http-threads) with suspend/resume. Per
 * request: the first handler call creates an srv_req (freed only in the completion
 * callback), checks the route, the method and Content-Length (413 before reading the body);
 * later calls append the body; the last call dispatches to the route's handler. A handler
 * either answers at once or submits a batcher job and suspends the connection; the job's
 * completion (on the batch thread) resumes it and the handler's finish function answers on
 * an HTTP thread. HTTP threads never run the model.
 */
#ifndef SRV_HTTP_H
#define SRV_HTTP_H

#include "batcher.h"
#include "config.h"
#include "registry.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct srv_conn srv_conn;

typedef struct srv_app {
    const srv_config *cfg;
    srv_registry *reg;
    struct MHD_Daemon *daemon;
    int port;            /* bound port */
    int listen_fd;       /* after srv_http_quiesce: the shut-down listen socket, else -1 */
    atomic_int draining; /* SIGTERM seen: readiness off, answers close their connection */
    atomic_long active;  /* requests between first handler call and completion */
    atomic_ullong next_id;

    /* open connections, for the request timeout (http.c) */
    pthread_mutex_t conn_mu;
    pthread_cond_t sweep_cv;
    srv_conn *conns;
    pthread_t sweeper;
    int sweeper_on, sweeper_stop;
} srv_app;

typedef enum srv_route {
    R_NONE = 0,
    R_HEALTHZ,
    R_READYZ,
    R_MODELS,
    R_MODEL,
    R_METRICS,
    R_CLASSIFY,
    R_V2,
    R_V2_LIVE,
    R_V2_READY,
    R_V2_MODEL,
    R_V2_MODEL_READY,
    R_V2_INFER,
    R_V2_REPO_INDEX,  /* POST /v2/repository/index (admin.c) */
    R_V2_REPO_LOAD,   /* POST /v2/repository/models/{name}/load */
    R_V2_REPO_UNLOAD, /* POST /v2/repository/models/{name}/unload */
    R_CONSOLE,        /* GET / (console.c) */
    R_STATS,          /* GET /stats */
} srv_route;

typedef struct srv_req srv_req;
typedef void (*srv_finish_fn)(srv_req *r);

struct srv_req {
    srv_app *app;
    struct MHD_Connection *conn;
    int fd;
    uint64_t id;
    int64_t t0_ns;
    const char *url;
    int is_post;
    srv_route route;
    int v2;         /* errors as {"error": "..."} */
    char name[128]; /* model name from the path */

    char *body; /* request body (NUL-terminated) */
    size_t len, cap;
    int body_too_large;
    int close;     /* answer with Connection: close */
    int draining;  /* SIGTERM had been seen when the request arrived: one answer for its
                    * readiness and its Connection header */
    int responded;

    /* batch job */
    srv_model *model;
    srv_job job;
    float *input, *output;
    int n, top_k;
    int64_t decode_ns;
    srv_finish_fn finish; /* called once the job completed, on an HTTP thread */
    void *ctx;            /* handler data, freed by ctx_free */
    void (*ctx_free)(void *);
    pthread_mutex_t mu;
    int queued, completed;

    /* for the log line */
    int status;
};

/* Starts the daemon on cfg->listen (and the request-timeout sweeper). Returns 0 or -1 with a
 * message in err. */
int srv_http_start(srv_app *app, char *err, size_t errn);
/* Stops accepting connections (the listen socket closes); open ones keep being served. */
void srv_http_quiesce(srv_app *app);
/* Stops the daemon. No connection may be suspended (stop the batchers first). */
void srv_http_stop(srv_app *app);

/* ---- for handlers ----------------------------------------------------------------------- */

/* Value of a query argument or header, NULL if absent. */
const char *srv_req_arg(srv_req *r, const char *key);
const char *srv_req_header(srv_req *r, const char *key);

/* Sends body (stolen) with a status. */
void srv_respond_json(srv_req *r, int status, json_t *body);
/* Sends an error: {"error": {"code", "message"}}, or {"error": "message"} on /v2 routes. */
void srv_respond_error(srv_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Sends len bytes of text/buf (malloc'ed, stolen) with a Content-Type and optionally one more
 * header (hname: hvalue). */
void srv_respond_text(srv_req *r, int status, const char *ctype, char *text, size_t len);
void srv_respond_buffer(srv_req *r, int status, const char *ctype, char *buf, size_t len,
                        const char *hname, const char *hvalue);

/* Acquires the model (r->name, else query model=, else the default), answering 404/400/503
 * itself when it cannot. Returns 0 with r->model set, or -1 (already answered). */
int srv_req_model(srv_req *r);

/* The request's deadline from X-Request-Timeout (ms) / timeout_ms= / the default; extra_us
 * is a deadline from the body (0 = none). Returns 0, or -1 after answering 400. */
int srv_req_deadline(srv_req *r, long extra_us);

/* Queues r->job (r->n images in r->input, output to r->output) on r->model's batcher and
 * suspends the connection; finish runs when it completes. On refusal answers 503 itself. */
void srv_req_submit(srv_req *r, srv_finish_fn finish);

/* Maps a finished job's status to an error answer; returns 1 if it answered, 0 if ok. */
int srv_req_job_failed(srv_req *r);

#endif
