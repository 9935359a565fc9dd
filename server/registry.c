/*
 * registry.c - see registry.h.
 */
#include "registry.h"
#include "log.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

enum { ENT_LOADING, ENT_READY, ENT_FAILED };

typedef struct entry {
    char name[128];
    char path[1024];
    srv_model *cur;
    int state;
    char last_error[512];
    double last_attempt; /* Unix time of the last load attempt */
    struct stat st;      /* file identity at the last attempt */
    double load_ms;
} entry;

struct srv_registry {
    cvy_engine *eng;
    const srv_config *cfg;
    pthread_mutex_t mu;
    entry *ents;
    int n, cap;
    int scanning;
    int scanned; /* at least one scan finished */
    char dir_error[256];
};

static double unix_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

srv_registry *srv_registry_create(cvy_engine *eng, const srv_config *cfg)
{
    srv_registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->eng = eng;
    r->cfg = cfg;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void model_free(srv_model *m)
{
    srv_batcher_destroy(m->b);
    cvy_model_free(m->m);
    free(m);
}

void srv_model_release(srv_model *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1) model_free(m);
}

/* Loads one version. Returns it (refs = 1) or NULL with a message in err. */
static srv_model *model_load(srv_registry *r, const char *name, const char *path, char *err,
                             size_t errn)
{
    srv_model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errn, "out of memory");
        return NULL;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    cvy_error e;
    cvy_status st = cvy_model_load_file(r->eng, path, &m->m, &e);
    if (st != CVY_OK) {
        snprintf(err, errn, "%s: %.400s", cvy_status_str(st), e.msg);
        free(m);
        return NULL;
    }
    snprintf(m->hash, sizeof m->hash, "%s", cvy_model_hash(m->m));
    m->mm = srv_metrics_model_get(name);
    if (srv_batcher_create(m->m, r->cfg->max_batch, r->cfg->max_delay_us, r->cfg->max_queue, m->mm,
                           &m->b, err, errn) < 0) {
        cvy_model_free(m->m);
        free(m);
        return NULL;
    }
    m->loaded_at = unix_now();
    atomic_init(&m->refs, 1);
    return m;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int srv_registry_scan(srv_registry *r)
{
    const char *dir = r->cfg->models;
    pthread_mutex_lock(&r->mu);
    r->scanning = 1;
    pthread_mutex_unlock(&r->mu);

    DIR *d = opendir(dir);
    if (!d) {
        srv_log(SRV_LOG_ERROR, "cannot read model directory %s: %m", dir);
        pthread_mutex_lock(&r->mu);
        snprintf(r->dir_error, sizeof r->dir_error, "cannot read model directory %.200s", dir);
        r->scanning = 0;
        r->scanned = 1;
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= 4 || strcmp(de->d_name + l - 4, ".cvy") != 0 || de->d_name[0] == '.') continue;
        if (l - 4 >= sizeof(((entry *)0)->name)) continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 16;
            char **nw = realloc(names, cap * sizeof *names);
            if (!nw) break;
            names = nw;
        }
        names[nn] = strdup(de->d_name);
        if (names[nn]) nn++;
    }
    closedir(d);
    if (nn) qsort(names, nn, sizeof *names, cmp_str);

    int failures = 0;
    for (size_t i = 0; i < nn; i++) {
        char name[128], path[1024];
        size_t l = strlen(names[i]) - 4;
        memcpy(name, names[i], l);
        name[l] = 0;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        free(names[i]);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;

        pthread_mutex_lock(&r->mu);
        int idx = -1;
        for (int k = 0; k < r->n; k++)
            if (strcmp(r->ents[k].name, name) == 0) idx = k;
        if (idx >= 0) {
            entry *e = &r->ents[idx];
            int same = e->st.st_ino == st.st_ino && e->st.st_dev == st.st_dev &&
                       e->st.st_size == st.st_size && e->st.st_mtim.tv_sec == st.st_mtim.tv_sec &&
                       e->st.st_mtim.tv_nsec == st.st_mtim.tv_nsec;
            if (same) {
                if (e->state == ENT_FAILED && !e->cur) failures++;
                pthread_mutex_unlock(&r->mu);
                continue;
            }
        } else {
            if (r->n == r->cap) {
                int ncap = r->cap ? r->cap * 2 : 8;
                entry *ne = realloc(r->ents, sizeof(entry) * (size_t)ncap);
                if (!ne) {
                    pthread_mutex_unlock(&r->mu);
                    continue;
                }
                r->ents = ne;
                r->cap = ncap;
            }
            idx = r->n++;
            memset(&r->ents[idx], 0, sizeof(entry));
            snprintf(r->ents[idx].name, sizeof r->ents[idx].name, "%s", name);
            snprintf(r->ents[idx].path, sizeof r->ents[idx].path, "%s", path);
            r->ents[idx].state = ENT_LOADING;
        }
        r->ents[idx].st = st;
        pthread_mutex_unlock(&r->mu);

        char err[512];
        double t0 = unix_now();
        srv_model *m = model_load(r, name, path, err, sizeof err);
        double ms = (unix_now() - t0) * 1e3;

        srv_model *old = NULL;
        pthread_mutex_lock(&r->mu);
        entry *e = &r->ents[idx];
        e->last_attempt = t0;
        if (m) {
            if (e->cur && strcmp(e->cur->hash, m->hash) == 0) {
                /* touched but same content: keep the running version */
                old = m;
                srv_log(SRV_LOG_INFO, "model %s: unchanged (version %s)", name, m->hash);
            } else {
                old = e->cur;
                e->cur = m;
                e->load_ms = ms;
                atomic_fetch_add(&srv_metrics_model_loads, 1);
                srv_log(SRV_LOG_INFO, "model %s: loaded %s version %s in %.1f ms%s", name, path,
                        m->hash, ms, old ? " (replaced the previous version)" : "");
            }
            e->state = ENT_READY;
            e->last_error[0] = 0;
        } else {
            atomic_fetch_add(&srv_metrics_model_load_failures, 1);
            snprintf(e->last_error, sizeof e->last_error, "%s", err);
            if (e->cur) {
                e->state = ENT_READY;
                srv_log(SRV_LOG_WARN, "model %s: reload of %s failed, keeping version %s: %s", name,
                        path, e->cur->hash, err);
            } else {
                e->state = ENT_FAILED;
                failures++;
                srv_log(SRV_LOG_ERROR, "model %s: cannot load %s: %s", name, path, err);
            }
        }
        pthread_mutex_unlock(&r->mu);
        srv_model_release(old);
    }
    free(names);
    pthread_mutex_lock(&r->mu);
    r->scanning = 0;
    r->scanned = 1;
    r->dir_error[0] = 0;
    if (r->n == 0) srv_log(SRV_LOG_WARN, "no model files (*.cvy) in %s", dir);
    pthread_mutex_unlock(&r->mu);
    return failures;
}

srv_model *srv_registry_acquire(srv_registry *r, const char *name, int *why)
{
    srv_model *m = NULL;
    *why = SRV_ACQ_OK;
    if ((!name || !*name) && *r->cfg->default_model) name = r->cfg->default_model;
    pthread_mutex_lock(&r->mu);
    if (name && *name) {
        int found = 0;
        for (int i = 0; i < r->n; i++)
            if (strcmp(r->ents[i].name, name) == 0) {
                found = 1;
                m = r->ents[i].cur;
            }
        if (!found)
            *why = SRV_ACQ_UNKNOWN;
        else if (!m)
            *why = SRV_ACQ_NOT_READY;
    } else {
        int nready = 0;
        for (int i = 0; i < r->n; i++)
            if (r->ents[i].cur) {
                nready++;
                m = r->ents[i].cur;
            }
        if (nready == 0) {
            *why = SRV_ACQ_NOT_READY;
        } else if (nready > 1) {
            m = NULL;
            *why = SRV_ACQ_AMBIGUOUS;
        }
    }
    if (m) atomic_fetch_add(&m->refs, 1);
    pthread_mutex_unlock(&r->mu);
    return m;
}

static const char *state_name(int s)
{
    return s == ENT_READY ? "ready" : s == ENT_LOADING ? "loading" : "failed";
}

static json_t *describe_entry(const entry *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(e->name));
    json_object_set_new(o, "state", json_string(state_name(e->state)));
    json_object_set_new(o, "path", json_string(e->path));
    if (e->cur) {
        const cvy_model *m = e->cur->m;
        int c, h, w;
        cvy_model_input_shape(m, &c, &h, &w);
        const cvy_preproc *pp = cvy_model_preproc(m);
        json_object_set_new(o, "version", json_string(e->cur->hash));
        json_t *in = json_object();
        json_object_set_new(in, "shape", json_pack("[i,i,i]", c, h, w));
        json_object_set_new(in, "datatype", json_string("FP32"));
        json_object_set_new(in, "color",
                            json_string(pp->color == CVY_COLOR_GRAY  ? "gray"
                                        : pp->color == CVY_COLOR_RGB ? "rgb"
                                                                     : "bgr"));
        json_object_set_new(in, "width", json_integer(pp->width));
        json_object_set_new(in, "height", json_integer(pp->height));
        json_object_set_new(o, "input", in);
        json_object_set_new(o, "outputs", json_integer((json_int_t)cvy_model_output_size(m)));
        json_object_set_new(o, "labels", json_integer(cvy_model_label_count(m)));
        json_object_set_new(o, "params", json_integer((json_int_t)cvy_model_param_count(m)));
        json_object_set_new(o, "loaded_at", json_real(e->cur->loaded_at));
        json_object_set_new(o, "load_ms", json_real(e->load_ms));
        json_object_set_new(o, "queue_depth", json_integer(srv_batcher_depth(e->cur->b)));
    } else {
        json_object_set_new(o, "version", json_null());
    }
    json_object_set_new(o, "last_error", *e->last_error ? json_string(e->last_error) : json_null());
    return o;
}

json_t *srv_registry_describe(srv_registry *r, const char *name)
{
    json_t *res = NULL;
    pthread_mutex_lock(&r->mu);
    if (!name) {
        res = json_array();
        for (int i = 0; i < r->n; i++)
            json_array_append_new(res, describe_entry(&r->ents[i]));
    } else {
        for (int i = 0; i < r->n; i++)
            if (strcmp(r->ents[i].name, name) == 0) res = describe_entry(&r->ents[i]);
    }
    pthread_mutex_unlock(&r->mu);
    return res;
}

int srv_registry_ready(srv_registry *r, char *why, size_t n)
{
    int ok = 1;
    pthread_mutex_lock(&r->mu);
    if (!r->scanned || r->scanning) {
        snprintf(why, n, "loading models");
        ok = 0;
    } else if (*r->dir_error) {
        snprintf(why, n, "%s", r->dir_error);
        ok = 0;
    } else if (r->n == 0) {
        snprintf(why, n, "no models in %s", r->cfg->models);
        ok = 0;
    } else {
        for (int i = 0; i < r->n && ok; i++)
            if (!r->ents[i].cur) {
                snprintf(why, n, "model %s is %s: %.300s", r->ents[i].name,
                         state_name(r->ents[i].state), r->ents[i].last_error);
                ok = 0;
            }
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

long srv_registry_depth(const char *name, void *registry)
{
    srv_registry *r = registry;
    long d = -1;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->ents[i].name, name) == 0 && r->ents[i].cur)
            d = srv_batcher_depth(r->ents[i].cur->b);
    pthread_mutex_unlock(&r->mu);
    return d;
}

void srv_registry_stop(srv_registry *r)
{
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++)
        if (r->ents[i].cur) srv_batcher_stop(r->ents[i].cur->b);
    pthread_mutex_unlock(&r->mu);
}

void srv_registry_destroy(srv_registry *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++)
        srv_model_release(r->ents[i].cur);
    free(r->ents);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
