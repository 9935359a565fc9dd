/*
 * watch.c - see watch.h.
 */
#include "watch.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { ACT_LOAD = 1, ACT_GONE = 2, ACT_UNLOAD = 3 };

typedef struct pending {
    char name[128];
    int action;
    int64_t due_ms; /* CLOCK_MONOTONIC */
} pending;

struct srv_watch {
    srv_registry *reg;
    const srv_config *cfg;
    int ifd, efd, wd;
    pthread_t th;
    pending *p;
    int n, cap;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Schedules action for name at due_ms, replacing whatever was pending for it. */
static void schedule(srv_watch *w, const char *name, int action, int64_t due_ms)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->p[i].name, name) == 0) {
            w->p[i].action = action;
            w->p[i].due_ms = due_ms;
            return;
        }
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 16;
        pending *np = realloc(w->p, sizeof *np * (size_t)nc);
        if (!np) {
            srv_log(SRV_LOG_ERROR, "watch: out of memory, dropping an event for %s", name);
            return;
        }
        w->p = np;
        w->cap = nc;
    }
    pending *q = &w->p[w->n++];
    snprintf(q->name, sizeof q->name, "%s", name);
    q->action = action;
    q->due_ms = due_ms;
}

/* Model name of a directory entry (a .cvy, an .onnx or a .json sidecar), or 0 when the file
 * belongs to no model. */
static int model_name(const char *file, char *name, size_t n)
{
    return srv_model_file_name(file, name, n) != 0;
}

static int file_exists(srv_watch *w, const char *name)
{
    char path[1024];
    struct stat st;
    srv_model_path(w->cfg->models, name, path, sizeof path);
    return stat(path, &st) == 0;
}

static void run_action(srv_watch *w, pending q)
{
    char msg[640];
    switch (q.action) {
    case ACT_LOAD: {
        srv_registry_load(w->reg, q.name, SRV_LOAD_WATCH, msg, sizeof msg);
        srv_log(SRV_LOG_DEBUG, "watch: %s: %s", q.name, msg);
        break;
    }
    case ACT_GONE:
        if (file_exists(w, q.name)) break; /* replaced meanwhile: its own event reloads it */
        if (w->cfg->unload_grace_ms < 0) {
            srv_log(SRV_LOG_INFO,
                    "watch: %s.cvy was removed; the model keeps serving until unloaded by API",
                    q.name);
        } else {
            srv_log(SRV_LOG_INFO, "watch: %s.cvy was removed; unloading in %d ms", q.name,
                    w->cfg->unload_grace_ms);
            schedule(w, q.name, ACT_UNLOAD, mono_ms() + w->cfg->unload_grace_ms);
        }
        break;
    case ACT_UNLOAD:
        if (!file_exists(w, q.name)) srv_registry_unload(w->reg, q.name, 1);
        break;
    }
}

static void handle_events(srv_watch *w, const char *buf, ssize_t len)
{
    int64_t now = mono_ms();
    for (const char *p = buf; p < buf + len;) {
        const struct inotify_event *ev = (const struct inotify_event *)p;
        p += sizeof *ev + ev->len;
        if (ev->mask & IN_Q_OVERFLOW) {
            srv_log(SRV_LOG_WARN, "watch: event queue overflowed, rescanning %s", w->cfg->models);
            srv_registry_scan(w->reg);
            continue;
        }
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
            srv_log(SRV_LOG_WARN, "watch: the model directory %s went away; not watching any more",
                    w->cfg->models);
            continue;
        }
        char name[128];
        if (!ev->len || !model_name(ev->name, name, sizeof name)) continue;
        if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))
            schedule(w, name, ACT_LOAD, now + w->cfg->watch_debounce_ms);
        else if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
            schedule(w, name, ACT_GONE, now + w->cfg->watch_debounce_ms);
    }
}

static void *watch_main(void *arg)
{
    srv_watch *w = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        int64_t now = mono_ms(), next = -1;
        for (int i = 0; i < w->n; i++)
            if (next < 0 || w->p[i].due_ms < next) next = w->p[i].due_ms;
        int timeout = next < 0 ? -1 : next <= now ? 0 : (int)(next - now);
        struct pollfd pf[2] = {{w->ifd, POLLIN, 0}, {w->efd, POLLIN, 0}};
        int rc = poll(pf, 2, timeout);
        if (rc < 0 && errno != EINTR) {
            srv_log(SRV_LOG_ERROR, "watch: poll: %s", strerror(errno));
            break;
        }
        if (rc > 0 && (pf[1].revents & POLLIN)) break;
        if (rc > 0 && (pf[0].revents & POLLIN)) {
            ssize_t len = read(w->ifd, buf, sizeof buf);
            if (len > 0) handle_events(w, buf, len);
        }
        /* Run whatever is due, one at a time (an action may schedule another). */
        now = mono_ms();
        for (int i = 0; i < w->n;) {
            if (w->p[i].due_ms > now) {
                i++;
                continue;
            }
            pending q = w->p[i];
            w->p[i] = w->p[--w->n];
            run_action(w, q);
        }
    }
    return NULL;
}

srv_watch *srv_watch_start(srv_registry *reg, const srv_config *cfg, char *err, size_t errn)
{
    srv_watch *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errn, "watch: out of memory");
        return NULL;
    }
    w->reg = reg;
    w->cfg = cfg;
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->ifd < 0 || w->efd < 0) {
        snprintf(err, errn, "watch: cannot create inotify/eventfd: %s", strerror(errno));
        goto fail;
    }
    w->wd = inotify_add_watch(w->ifd, cfg->models,
                              IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM |
                                  IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
    if (w->wd < 0) {
        snprintf(err, errn, "watch: cannot watch %.300s: %s", cfg->models, strerror(errno));
        goto fail;
    }
    int rc = pthread_create(&w->th, NULL, watch_main, w);
    if (rc != 0) {
        snprintf(err, errn, "watch: cannot start the thread: %s", strerror(rc));
        goto fail;
    }
    srv_log(SRV_LOG_INFO, "watching %s (debounce %d ms, unload grace %d ms)", cfg->models,
            cfg->watch_debounce_ms, cfg->unload_grace_ms);
    return w;
fail:
    if (w->ifd >= 0) close(w->ifd);
    if (w->efd >= 0) close(w->efd);
    free(w);
    return NULL;
}

void srv_watch_stop(srv_watch *w)
{
    if (!w) return;
    uint64_t one = 1;
    if (write(w->efd, &one, sizeof one) != sizeof one)
        srv_log(SRV_LOG_WARN, "watch: cannot signal the thread: %s", strerror(errno));
    pthread_join(w->th, NULL);
    close(w->ifd);
    close(w->efd);
    free(w->p);
    free(w);
}
