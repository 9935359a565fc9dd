/*
 * http.c - see http.h.
 */
#include "http.h"
#include "admin.h"
#include "console.h"
#include "handlers.h"
#include "log.h"
#include "v2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- routing ----------------------------------------------------------------------------- */

/* Copies one path segment starting at p into buf; returns a pointer after it. */
static const char *segment(const char *p, char *buf, size_t n, int *ok)
{
    size_t i = 0;
    while (*p && *p != '/') {
        if (i + 1 >= n)
            *ok = 0;
        else
            buf[i++] = *p;
        p++;
    }
    buf[i] = 0;
    if (i == 0) *ok = 0;
    return p;
}

/* Sets r->route and r->name from the path. */
static void route(srv_req *r, const char *url)
{
    int ok = 1;
    const char *p;
    r->route = R_NONE;
    if (strcmp(url, "/") == 0)
        r->route = R_CONSOLE;
    else if (strcmp(url, "/stats") == 0)
        r->route = R_STATS;
    else if (strcmp(url, "/healthz") == 0)
        r->route = R_HEALTHZ;
    else if (strcmp(url, "/readyz") == 0)
        r->route = R_READYZ;
    else if (strcmp(url, "/metrics") == 0)
        r->route = R_METRICS;
    else if (strcmp(url, "/models") == 0 || strcmp(url, "/models/") == 0)
        r->route = R_MODELS;
    else if (strcmp(url, "/classify") == 0)
        r->route = R_CLASSIFY;
    else if (strncmp(url, "/models/", 8) == 0) {
        p = segment(url + 8, r->name, sizeof r->name, &ok);
        if (ok && !*p)
            r->route = R_MODEL;
        else if (ok && strcmp(p, "/classify") == 0)
            r->route = R_CLASSIFY;
    } else if (strncmp(url, "/v2", 3) == 0) {
        r->v2 = 1;
        p = url + 3;
        if (!*p || strcmp(p, "/") == 0)
            r->route = R_V2;
        else if (strcmp(p, "/health/live") == 0)
            r->route = R_V2_LIVE;
        else if (strcmp(p, "/health/ready") == 0)
            r->route = R_V2_READY;
        else if (strncmp(p, "/models/", 8) == 0) {
            p = segment(p + 8, r->name, sizeof r->name, &ok);
            if (ok && strncmp(p, "/versions/", 10) == 0) { /* any version: we serve one */
                char v[64];
                p = segment(p + 10, v, sizeof v, &ok);
            }
            if (!ok) return;
            if (!*p)
                r->route = R_V2_MODEL;
            else if (strcmp(p, "/ready") == 0)
                r->route = R_V2_MODEL_READY;
            else if (strcmp(p, "/infer") == 0)
                r->route = R_V2_INFER;
        } else if (strcmp(p, "/repository/index") == 0) {
            r->route = R_V2_REPO_INDEX;
        } else if (strncmp(p, "/repository/models/", 19) == 0) {
            p = segment(p + 19, r->name, sizeof r->name, &ok);
            if (ok && strcmp(p, "/load") == 0)
                r->route = R_V2_REPO_LOAD;
            else if (ok && strcmp(p, "/unload") == 0)
                r->route = R_V2_REPO_UNLOAD;
        }
    }
}

static int route_is_post(srv_route rt)
{
    return rt == R_CLASSIFY || rt == R_V2_INFER || rt == R_V2_REPO_INDEX || rt == R_V2_REPO_LOAD ||
           rt == R_V2_REPO_UNLOAD;
}

/* ---- responses --------------------------------------------------------------------------- */

static void log_request(srv_req *r)
{
    double ms = (double)(srv_now_ns() - r->t0_ns) / 1e6;
    srv_metrics_model *mm = r->model ? r->model->mm : srv_metrics_model_get(NULL);
    srv_metrics_count(mm, r->status);
    if (r->model) srv_hist_observe(&mm->request_s, ms / 1e3);
    srv_console_observe(r, ms);
    int lvl = r->status >= 500 ? SRV_LOG_WARN : SRV_LOG_INFO;
    if (r->route == R_METRICS || r->route == R_HEALTHZ || r->route == R_READYZ ||
        r->route == R_V2_LIVE || r->route == R_V2_READY || r->route == R_STATS)
        lvl = SRV_LOG_DEBUG;
    srv_log(lvl, "req=%llu %s %s model=%s images=%d batch=%d status=%d latency_ms=%.3f",
            (unsigned long long)r->id, r->is_post ? "POST" : "GET", r->url,
            r->model ? r->model->name : "-", r->n, r->job.batch_size, r->status, ms);
}

static void queue(srv_req *r, int status, struct MHD_Response *resp)
{
    if (!resp) {
        srv_log(SRV_LOG_ERROR, "req=%llu: cannot create a response", (unsigned long long)r->id);
        return;
    }
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)r->id);
    MHD_add_response_header(resp, "X-Request-Id", id);
    if (r->model) MHD_add_response_header(resp, "X-Model-Version", r->model->hash);
    if (r->draining || r->body_too_large || r->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (status == 503) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                route_is_post(r->route) ? "POST" : "GET");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ok != MHD_YES) {
        srv_log(SRV_LOG_DEBUG, "req=%llu: response %d not queued now", (unsigned long long)r->id,
                status);
        return;
    }
    r->status = status;
    r->responded = 1;
    log_request(r);
}

void srv_respond_text(srv_req *r, int status, const char *ctype, char *text, size_t len)
{
    srv_respond_buffer(r, status, ctype, text, len, NULL, NULL);
}

void srv_respond_buffer(srv_req *r, int status, const char *ctype, char *buf, size_t len,
                        const char *hname, const char *hvalue)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(buf);
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hname) MHD_add_response_header(resp, hname, hvalue);
    queue(r, status, resp);
}

void srv_respond_json(srv_req *r, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(body);
    if (!s) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        queue(r, 500,
              MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT));
        return;
    }
    srv_respond_text(r, status, "application/json", s, strlen(s));
}

/* Replaces in place every byte of s that is not part of valid UTF-8, and every control
 * character, by '?': messages quote names and bytes from requests, and JSON needs UTF-8. */
static void utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int len = *p < 0x80             ? 1
                  : (*p & 0xe0) == 0xc0 ? 2
                  : (*p & 0xf0) == 0xe0 ? 3
                  : (*p & 0xf8) == 0xf0 ? 4
                                        : 0;
        int ok = len > 0 && !(len == 2 && *p < 0xc2) && !(len == 4 && *p > 0xf4);
        for (int i = 1; ok && i < len; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (ok && len == 3) ok = !(*p == 0xe0 && p[1] < 0xa0) && !(*p == 0xed && p[1] >= 0xa0);
        if (ok && len == 4) ok = !(*p == 0xf0 && p[1] < 0x90) && !(*p == 0xf4 && p[1] >= 0x90);
        if (!ok || (len == 1 && (*p < 0x20 || *p == 0x7f))) {
            *p++ = '?';
            continue;
        }
        p += len;
    }
}

void srv_respond_error(srv_req *r, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_sanitize(msg);
    json_t *body;
    if (r->v2)
        body = json_pack("{s:s}", "error", msg);
    else
        body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    int limit = srv_metrics_limit_of_code(code);
    if (limit >= 0) srv_metrics_limit((srv_limit)limit);
    if (status >= 500 || status == 413)
        srv_log(SRV_LOG_DEBUG, "req=%llu: %d %s: %s", (unsigned long long)r->id, status, code, msg);
    srv_respond_json(r, status, body);
}

const char *srv_req_arg(srv_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *srv_req_header(srv_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, key);
}

/* ---- models, deadlines, jobs ------------------------------------------------------------- */

int srv_req_model(srv_req *r)
{
    const char *name = *r->name ? r->name : srv_req_arg(r, "model");
    int why;
    r->model = srv_registry_acquire(r->app->reg, name, &why);
    if (r->model) return 0;
    switch (why) {
    case SRV_ACQ_UNKNOWN:
        srv_respond_error(r, 404, "model_not_found", "unknown model '%s'", name);
        break;
    case SRV_ACQ_AMBIGUOUS:
        srv_respond_error(r, 400, "model_required",
                          "several models are loaded: name one with ?model=NAME or "
                          "/models/NAME/classify");
        break;
    default:
        srv_respond_error(r, 503, "model_not_ready", "model '%s' is not loaded",
                          name && *name ? name : "(default)");
        break;
    }
    return -1;
}

int srv_req_deadline(srv_req *r, long extra_us)
{
    const char *s = srv_req_header(r, "X-Request-Timeout");
    const char *src = "X-Request-Timeout header";
    if (!s) {
        s = srv_req_arg(r, "timeout_ms");
        src = "timeout_ms parameter";
    }
    long ms = r->app->cfg->timeout_ms;
    int64_t dl = ms > 0 ? r->t0_ns + (int64_t)ms * 1000000 : 0;
    if (s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 1 || v > 86400000) {
            srv_respond_error(r, 400, "bad_timeout",
                              "%s: '%.60s' is not a number of "
                              "milliseconds in [1, 86400000]",
                              src, s);
            return -1;
        }
        dl = r->t0_ns + (int64_t)v * 1000000;
    }
    if (extra_us > 0) {
        int64_t d2 = r->t0_ns + (int64_t)extra_us * 1000;
        if (!dl || d2 < dl) dl = d2;
    }
    r->job.deadline_ns = dl;
    return 0;
}

static int job_alive(srv_job *job)
{
    srv_req *r = job->user;
    char c;
    ssize_t n = recv(r->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return 0;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return 0;
    return 1;
}

/* Runs on the batch thread. The lock orders it after srv_req_submit's suspend; once the
 * connection is resumed, r may be freed at any moment, so nothing touches r after that. */
static void job_done(srv_job *job)
{
    srv_req *r = job->user;
    struct MHD_Connection *conn = r->conn;
    pthread_mutex_lock(&r->mu);
    r->completed = 1;
    pthread_mutex_unlock(&r->mu);
    MHD_resume_connection(conn);
}

void srv_req_submit(srv_req *r, srv_finish_fn finish)
{
    if (r->job.deadline_ns && srv_now_ns() > r->job.deadline_ns) {
        srv_respond_error(r, 504, "deadline_exceeded", "the deadline passed before queueing");
        return;
    }
    r->finish = finish;
    r->job.n = r->n;
    r->job.input = r->input;
    r->job.output = r->output;
    r->job.done = job_done;
    r->job.alive = job_alive;
    r->job.user = r;
    pthread_mutex_lock(&r->mu);
    int rc = srv_batcher_submit(r->model->b, &r->job);
    if (rc == SRV_SUBMIT_OK) {
        r->queued = 1;
        MHD_suspend_connection(r->conn);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    pthread_mutex_unlock(&r->mu);
    if (rc == SRV_SUBMIT_FULL)
        srv_respond_error(r, 503, "queue_full",
                          "model '%s' has more than %d images waiting; retry later", r->model->name,
                          r->app->cfg->max_queue);
    else
        srv_respond_error(r, 503, "shutting_down", "the server is shutting down");
}

int srv_req_job_failed(srv_req *r)
{
    switch (r->job.status) {
    case SRV_JOB_OK:
        return 0;
    case SRV_JOB_TIMEOUT:
        srv_respond_error(r, 504, "deadline_exceeded",
                          "the request's deadline passed before it could run");
        return 1;
    case SRV_JOB_CANCELLED:
        srv_respond_error(r, 499, "cancelled", "the client went away");
        return 1;
    case SRV_JOB_SHUTDOWN:
        srv_respond_error(r, 503, "shutting_down", "the server shut down before it ran");
        return 1;
    case SRV_JOB_ERROR:
    default:
        srv_respond_error(r, 500, "inference_failed", "%s", r->job.errmsg);
        return 1;
    }
}

/* ---- connections: count, limit, request timeout ------------------------------------------ */

/* One open connection, from libmicrohttpd's "started" notification to its "closed" one (which
 * comes before the socket is closed, so the sweeper never touches a reused descriptor). All
 * fields are guarded by app->conn_mu. */
struct srv_conn {
    int fd;
    int64_t since_ns; /* opened, or its last answer completed: the next request began after */
    int busy;         /* a whole request arrived and is being answered (its deadline rules) */
    int swept;        /* shut down by the sweeper */
    int timed_out;    /* libmicrohttpd reported its idle timeout */
    srv_conn *prev, *next;
};

static srv_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Marks a connection busy (a request is being answered) or idle again. Thread-safe. */
static void conn_set_busy(srv_app *app, struct MHD_Connection *conn, int busy, int timed_out)
{
    srv_conn *c = conn_of(conn);
    if (!c) return;
    pthread_mutex_lock(&app->conn_mu);
    c->busy = busy;
    if (!busy) c->since_ns = srv_now_ns();
    if (timed_out) c->timed_out = 1;
    pthread_mutex_unlock(&app->conn_mu);
}

/* libmicrohttpd's connection notification: tracks every open connection in app->conns and
 * counts the ones its idle timeout closed. Runs on the HTTP threads. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    srv_app *app = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&srv_metrics_connections, 1);
        srv_conn *c = calloc(1, sizeof *c);
        *socket_context = c;
        if (!c) return; /* not tracked: only the idle timeout applies */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        c->since_ns = srv_now_ns();
        pthread_mutex_lock(&app->conn_mu);
        c->next = app->conns;
        if (app->conns) app->conns->prev = c;
        app->conns = c;
        pthread_mutex_unlock(&app->conn_mu);
        return;
    }
    atomic_fetch_sub(&srv_metrics_connections, 1);
    srv_conn *c = *socket_context;
    *socket_context = NULL;
    if (!c) return;
    pthread_mutex_lock(&app->conn_mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        app->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    /* Idle timeout: reported for a request in progress, or silent since the last answer.
     * libmicrohttpd times the silence from its own timestamp, taken before ours: 100 ms of
     * slack keeps a slow run (sanitizers) from missing one. */
    int64_t idle_ns = (int64_t)app->cfg->idle_timeout_s * 1000000000 - 100000000;
    if (c->timed_out || (!c->swept && !c->busy && srv_now_ns() - c->since_ns >= idle_ns))
        srv_metrics_limit(SRV_LIMIT_IDLE_TIMEOUT);
    pthread_mutex_unlock(&app->conn_mu);
    free(c);
}

/* The sweeper thread, four times a second, for every connection still receiving a request:
 * - past request-timeout-s (when set), shuts it down, so a client sending a byte now and then
 *   cannot hold a connection slot forever;
 * - when its client has closed, shuts it down too: libmicrohttpd 0.9.75 with epoll misses an
 *   end of stream that arrives with the last data of an incomplete request and would keep the
 *   connection until the idle timeout.
 * libmicrohttpd then sees the end of the stream and closes the connection. */
static void *sweeper_main(void *arg)
{
    srv_app *app = arg;
    int64_t limit_ns = (int64_t)app->cfg->request_timeout_s * 1000000000;
    pthread_mutex_lock(&app->conn_mu);
    while (!app->sweeper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&app->sweep_cv, &app->conn_mu, &ts);
        int64_t now = srv_now_ns();
        for (srv_conn *c = app->conns; c; c = c->next) {
            if (c->busy || c->swept || c->fd < 0) continue;
            char b;
            if (limit_ns > 0 && now - c->since_ns > limit_ns) {
                srv_metrics_limit(SRV_LIMIT_REQUEST_TIMEOUT);
                srv_log(SRV_LOG_DEBUG, "closing a connection: no whole request within %d s",
                        app->cfg->request_timeout_s);
            } else if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 0) {
                continue; /* data waiting, or nothing yet (EAGAIN): the client is there */
            }
            shutdown(c->fd, SHUT_RDWR);
            c->swept = 1;
        }
    }
    pthread_mutex_unlock(&app->conn_mu);
    return NULL;
}

/* Sums the sizes of the request's header lines and query arguments. */
static enum MHD_Result add_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

/* ---- libmicrohttpd callbacks ------------------------------------------------------------- */

static void dispatch(srv_req *r)
{
    switch (r->route) {
    case R_HEALTHZ:
    case R_READYZ:
    case R_MODELS:
    case R_MODEL:
    case R_METRICS:
    case R_CLASSIFY:
        srv_handle(r);
        break;
    case R_V2:
    case R_V2_LIVE:
    case R_V2_READY:
    case R_V2_MODEL:
    case R_V2_MODEL_READY:
    case R_V2_INFER:
        srv_v2_handle(r);
        break;
    case R_V2_REPO_INDEX:
    case R_V2_REPO_LOAD:
    case R_V2_REPO_UNLOAD:
        srv_admin_handle(r);
        break;
    case R_CONSOLE:
    case R_STATS:
        srv_console_handle(r);
        break;
    case R_NONE:
    default:
        srv_respond_error(r, 404, "not_found", "no such endpoint: %.200s", r->url);
        break;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    srv_app *app = cls;
    srv_req *r = *req_cls;
    (void)version;

    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *req_cls = r;
        atomic_fetch_add(&app->active, 1);
        r->app = app;
        r->conn = conn;
        r->url = url;
        r->t0_ns = srv_now_ns();
        r->draining = atomic_load(&app->draining);
        r->id = atomic_fetch_add(&app->next_id, 1) + 1;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        r->fd = ci ? ci->connect_fd : -1;
        pthread_mutex_init(&r->mu, NULL);
        r->is_post = strcmp(method, "POST") == 0;
        route(r, url);

        size_t head = strlen(method) + strlen(url) + 12;
        MHD_get_connection_values(conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, add_size, &head);
        if (head > (size_t)app->cfg->max_header) {
            r->close = 1;
            srv_respond_error(r, 431, "header_too_large",
                              "request line and headers of %zu bytes exceed the limit of %d",
                              head, app->cfg->max_header);
            return MHD_YES;
        }
        if (atomic_load(&srv_metrics_connections) > app->cfg->max_connections) {
            r->close = 1;
            srv_respond_error(r, 503, "too_many_connections",
                              "more than %d connections are open; retry later",
                              app->cfg->max_connections);
            return MHD_YES;
        }
        if (r->route == R_NONE) {
            srv_respond_error(r, 404, "not_found", "no such endpoint: %.200s", url);
            return MHD_YES;
        }
        int want_post = route_is_post(r->route);
        int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        if ((want_post && !r->is_post) || (!want_post && !is_get)) {
            srv_respond_error(r, 405, "method_not_allowed", "%s %s: use %s", method, url,
                              want_post ? "POST" : "GET");
            return MHD_YES;
        }
        if (want_post) {
            if (r->draining) {
                srv_respond_error(r, 503, "draining", "the server is shutting down");
                return MHD_YES;
            }
            const char *cl =
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl) {
                unsigned long long v = strtoull(cl, NULL, 10);
                if (v > (unsigned long long)app->cfg->max_body) {
                    r->body_too_large = 1;
                    srv_respond_error(r, 413, "body_too_large",
                                      "request body of %llu bytes exceeds the limit of %ld", v,
                                      app->cfg->max_body);
                    return MHD_YES;
                }
                if (v > 0) {
                    r->body = malloc((size_t)v + 1);
                    if (!r->body) return MHD_NO;
                    r->cap = (size_t)v + 1;
                }
            }
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->responded || r->body_too_large || !r->is_post) return MHD_YES; /* discard */
        if (r->len + n > (size_t)app->cfg->max_body) {
            /* A body without Content-Length (chunked) grew past the limit: answer now if
             * this libmicrohttpd allows it mid-upload, else drop the rest and answer at
             * the end. */
            r->body_too_large = 1;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            srv_respond_error(r, 413, "body_too_large",
                              "request body exceeds the limit of %ld bytes", app->cfg->max_body);
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t nc = r->cap ? r->cap * 2 : 65536;
            while (nc < r->len + n + 1)
                nc *= 2;
            char *nb = realloc(r->body, nc);
            if (!nb) return MHD_NO;
            r->body = nb;
            r->cap = nc;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        return MHD_YES;
    }

    if (r->responded) return MHD_YES;
    if (r->queued) {
        /* resumed after the job completed */
        pthread_mutex_lock(&r->mu);
        int completed = r->completed;
        pthread_mutex_unlock(&r->mu);
        if (!completed) return MHD_YES; /* spurious call */
        r->finish(r);
        return MHD_YES;
    }
    if (r->body_too_large) {
        srv_respond_error(r, 413, "body_too_large", "request body exceeds the limit of %ld bytes",
                          app->cfg->max_body);
        return MHD_YES;
    }
    if (r->body) r->body[r->len] = 0;
    conn_set_busy(app, conn, 1, 0);
    dispatch(r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    srv_app *app = cls;
    srv_req *r = *req_cls;
    conn_set_busy(app, conn, 0, toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED);
    if (!r) return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->responded)
        srv_log(SRV_LOG_DEBUG, "req=%llu %s: connection ended before the answer (code %d)",
                (unsigned long long)r->id, r->url, (int)toe);
    if (r->ctx_free) r->ctx_free(r->ctx);
    srv_model_release(r->model);
    free(r->body);
    free(r->input);
    free(r->output);
    pthread_mutex_destroy(&r->mu);
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&app->active, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t l = strlen(buf);
    while (l && buf[l - 1] == '\n')
        buf[--l] = 0;
    srv_log(SRV_LOG_DEBUG, "libmicrohttpd: %s", buf);
}

int srv_http_start(srv_app *app, char *err, size_t errn)
{
    const srv_config *cfg = app->cfg;
    char host[256];
    snprintf(host, sizeof host, "%s", cfg->listen);
    char *colon = strrchr(host, ':');
    *colon = 0;
    const char *port = colon + 1;
    char *h = host;
    if (*h == '[') { /* [::1]:8080 */
        h++;
        size_t l = strlen(h);
        if (l && h[l - 1] == ']') h[l - 1] = 0;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(*h ? h : NULL, port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errn, "option listen: cannot resolve '%s': %s", cfg->listen,
                 gai_strerror(gai));
        return -1;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    int family = ai->ai_family;
    freeaddrinfo(ai);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (family == AF_INET6) flags |= MHD_USE_IPv6;
    int pnum = atoi(port);
    pthread_mutex_init(&app->conn_mu, NULL);
    pthread_cond_init(&app->sweep_cv, NULL);
    app->conns = NULL;
    app->sweeper_on = app->sweeper_stop = 0;
    /* libmicrohttpd answers 431 itself past its pool; below that our check answers in JSON. */
    size_t pool = 2 * (size_t)cfg->max_header + 4096;
    if (pool < 16384) pool = 16384;
    /* A few connections beyond max-connections are accepted to be told 503. */
    unsigned conn_limit = (unsigned)cfg->max_connections;
    conn_limit += conn_limit / 16 < 8 ? 8 : conn_limit / 16;
    app->daemon = MHD_start_daemon(
        flags, (uint16_t)pnum, NULL, NULL, on_request, app, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(cfg->http_threads > 1 ? cfg->http_threads : 0), MHD_OPTION_CONNECTION_LIMIT,
        conn_limit, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, app, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, app,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        /* libmicrohttpd clears the per-connection pool for every request: keep it small (it
         * holds the request line, headers and the read buffer; bodies go to our buffer). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        NULL, MHD_OPTION_END);
    if (!app->daemon) {
        snprintf(err, errn, "option listen: cannot listen on %s (in use or not permitted?)",
                 cfg->listen);
        return -1;
    }
    app->listen_fd = -1;
    if (pthread_create(&app->sweeper, NULL, sweeper_main, app) == 0) app->sweeper_on = 1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(app->daemon, MHD_DAEMON_INFO_LISTEN_FD);
    app->port = pnum;
    if (di) {
        struct sockaddr_storage bound;
        socklen_t bl = sizeof bound;
        if (getsockname(di->listen_fd, (struct sockaddr *)&bound, &bl) == 0) {
            if (bound.ss_family == AF_INET)
                app->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
            else if (bound.ss_family == AF_INET6)
                app->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        }
    }
    return 0;
}

/* The listen socket is shut down at once, so new connections are refused, but closed only
 * after MHD_stop_daemon: the pool threads still remove it from their epoll sets. */
void srv_http_quiesce(srv_app *app)
{
    if (!app->daemon || app->listen_fd >= 0) return;
    MHD_socket fd = MHD_quiesce_daemon(app->daemon);
    if (fd != MHD_INVALID_SOCKET) {
        shutdown(fd, SHUT_RDWR);
        app->listen_fd = fd;
    }
}

void srv_http_stop(srv_app *app)
{
    if (app->sweeper_on) {
        pthread_mutex_lock(&app->conn_mu);
        app->sweeper_stop = 1;
        pthread_cond_signal(&app->sweep_cv);
        pthread_mutex_unlock(&app->conn_mu);
        pthread_join(app->sweeper, NULL);
        app->sweeper_on = 0;
    }
    if (app->daemon) MHD_stop_daemon(app->daemon);
    app->daemon = NULL;
    if (app->listen_fd >= 0) close(app->listen_fd);
    app->listen_fd = -1;
}
