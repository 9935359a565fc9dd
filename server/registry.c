/*
 * registry.c - see registry.h.
 */
#include "registry.h"
#include "sidecar.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

enum { ENT_LOADING, ENT_READY, ENT_FAILED, ENT_UNLOADED };

typedef struct entry {
    char name[128];
    char path[1024];
    srv_model *cur;
    int state;
    char last_error[512];
    double last_attempt; /* Unix time of the last load attempt */
    struct stat st;      /* file identity at the last attempt */
    double load_ms;
    unsigned long failures; /* failed load attempts */
} entry;

struct srv_registry {
    cvy_engine *eng;
    const srv_config *cfg;
    pthread_mutex_t mu;      /* guards the table; held only briefly */
    pthread_mutex_t load_mu; /* serializes loads and unloads (held while a file loads) */
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
    /* Model files, weights and arenas are large blocks that come and go with every reload.
     * A fixed mmap threshold keeps them out of the heaps (glibc's dynamic threshold would
     * move them into the heaps after the first free, where fragments keep pages resident),
     * so a freed version's memory goes back to the system. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->load_mu, NULL);
    return r;
}

static void model_free(srv_model *m)
{
    srv_batcher_destroy(m->b);
    cvy_model_free(m->m);
    free(m);
    malloc_trim(0); /* a model is megabytes: give the pages back to the system */
}

void srv_model_release(srv_model *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1) model_free(m);
}

int srv_model_name_ok(const char *name)
{
    size_t l = name ? strlen(name) : 0;
    if (l == 0 || l >= sizeof(((entry *)0)->name) || name[0] == '.' || strstr(name, "..")) return 0;
    for (size_t i = 0; i < l; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static uint32_t crc32_le(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

/* 1 when buf looks like the beginning of a .cvy file that is still being written: a prefix of
 * the magic, or a valid header (magic and checksum) announcing more bytes than there are. */
static int cvy_incomplete(const unsigned char *buf, size_t size)
{
    static const char magic[8] = {'C', 'V', 'Y', 'M', 'O', 'D', 'E', 'L'};
    if (size < 64) return memcmp(buf, magic, size < 8 ? size : 8) == 0;
    if (memcmp(buf, magic, 8) != 0) return 0;
    uint32_t want = (uint32_t)buf[60] | (uint32_t)buf[61] << 8 | (uint32_t)buf[62] << 16 |
                    (uint32_t)buf[63] << 24;
    if (crc32_le(buf, 60) != want) return 0;
    uint64_t fsize = 0;
    for (int i = 7; i >= 0; i--) fsize = fsize << 8 | buf[16 + i];
    return fsize > size;
}

/* Reads the whole file at path (at most 16 GiB). Returns the buffer or NULL with errno set
 * (ENOENT: no file). */
static unsigned char *read_whole(const char *path, size_t *len, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        errno = ENOENT;
        return NULL;
    }
    size_t cap = (size_t)st->st_size + 1, n = 0;
    if (cap > (16ul << 30)) {
        close(fd);
        errno = EFBIG;
        return NULL;
    }
    unsigned char *buf = malloc(cap);
    while (buf) {
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int e = errno;
            free(buf);
            close(fd);
            errno = e;
            return NULL;
        }
        if (got == 0) break;
        n += (size_t)got;
        if (n == cap) { /* the file grew while we read it */
            unsigned char *nb = cap < (16ul << 30) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    close(fd);
    if (buf) *len = n;
    return buf;
}

/* Builds one version from the file's bytes and validates it: parse and checksums, the golden
 * self-test (if the file carries one), a warm-up forward pass through a fresh context, then
 * the batcher. Returns it (refs = 1) or NULL with a message in err. */
static srv_model *model_build(srv_registry *r, const char *name, const unsigned char *buf,
                              size_t len, char *err, size_t errn)
{
    srv_model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errn, "out of memory");
        return NULL;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    cvy_error e;
    cvy_status st = cvy_model_load_memory(r->eng, buf, len, &m->m, &e);
    if (st != CVY_OK) {
        snprintf(err, errn, "%s: %.400s", cvy_status_str(st), e.msg);
        free(m);
        return NULL;
    }
    int golden = 0;
    st = cvy_model_self_test(m->m, &golden, &e);
    if (st != CVY_OK) {
        snprintf(err, errn, "self-test failed: %s: %.380s", cvy_status_str(st), e.msg);
        goto fail;
    }
    /* Warm-up: one batch of zeros through a fresh context; the outputs must be finite. */
    int wb = r->cfg->max_batch < 4 ? r->cfg->max_batch : 4;
    cvy_context *ctx = NULL;
    st = cvy_context_create(m->m, wb, &ctx, &e);
    if (st == CVY_OK) {
        size_t in = cvy_model_input_size(m->m), out = cvy_model_output_size(m->m);
        float *x = cvy_context_input(ctx);
        memset(x, 0, sizeof(float) * in * (size_t)wb);
        float *y = malloc(sizeof(float) * out * (size_t)wb);
        if (!y) {
            snprintf(e.msg, sizeof e.msg, "out of memory");
            st = CVY_ERR_NOMEM;
        } else {
            st = cvy_context_run(ctx, wb, NULL, y, &e);
            for (size_t i = 0; st == CVY_OK && i < out * (size_t)wb; i++)
                if (!isfinite(y[i])) {
                    snprintf(e.msg, sizeof e.msg, "output %zu is not finite on zero input", i);
                    st = CVY_ERR_INTERNAL;
                }
        }
        free(y);
        cvy_context_destroy(ctx);
    }
    if (st != CVY_OK) {
        snprintf(err, errn, "warm-up failed: %s: %.380s", cvy_status_str(st), e.msg);
        goto fail;
    }
    snprintf(m->hash, sizeof m->hash, "%s", cvy_model_hash(m->m));
    m->mm = srv_metrics_model_get(name);
    if (srv_batcher_create(m->m, r->cfg->max_batch, r->cfg->max_delay_us, r->cfg->max_queue, m->mm,
                           &m->b, err, errn) < 0)
        goto fail;
    m->loaded_at = unix_now();
    atomic_init(&m->refs, 1);
    return m;
fail:
    cvy_model_free(m->m);
    free(m);
    malloc_trim(0);
    return NULL;
}

int srv_model_path(const char *dir, const char *name, char *path, size_t n)
{
    struct stat st;
    snprintf(path, n, "%s/%s.onnx", dir, name);
    int onnx = stat(path, &st) == 0;
    char cvy[1024];
    snprintf(cvy, sizeof cvy, "%s/%s.cvy", dir, name);
    if (!onnx || stat(cvy, &st) == 0) { /* .cvy wins when both exist */
        snprintf(path, n, "%s", cvy);
        onnx = 0;
    }
    return onnx;
}

int srv_model_file_name(const char *file, char *name, size_t n)
{
    static const char *const ext[] = {".cvy", ".onnx", ".json"};
    size_t l = strlen(file);
    for (int k = 0; k < 3; k++) {
        size_t e = strlen(ext[k]);
        if (l <= e || l - e >= n || strcmp(file + l - e, ext[k]) != 0) continue;
        memcpy(name, file, l - e);
        name[l - e] = 0;
        return srv_model_name_ok(name) ? k + 1 : 0;
    }
    return 0;
}

/* Converts <dir>/<name>.onnx (path) to .cvy bytes with the options of <dir>/<name>.json;
 * NULL with a message in err. */
static unsigned char *onnx_to_cvy(const char *dir, const char *name, const char *path,
                                  size_t *len, char *err, size_t errn)
{
    char json[1024], labels[1024];
    snprintf(json, sizeof json, "%s/%s.json", dir, name);
    cvy_onnx_options o;
    if (srv_sidecar_read(json, dir, &o, labels, sizeof labels, err, errn) != 0) return NULL;
    uint8_t *out = NULL;
    cvy_error e;
    cvy_status st = cvy_onnx_convert(path, &o, &out, len, &e);
    if (st != CVY_OK) {
        snprintf(err, errn, "%s: %.400s", cvy_status_str(st), e.msg);
        return NULL;
    }
    return out;
}

static int find_locked(srv_registry *r, const char *name)
{
    for (int k = 0; k < r->n; k++)
        if (strcmp(r->ents[k].name, name) == 0) return k;
    return -1;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

#define MSG(...)                                                                                   \
    do {                                                                                           \
        if (msg) snprintf(msg, msgn, __VA_ARGS__);                                                 \
    } while (0)

/* srv_registry_load with load_mu held. */
static int load_locked(srv_registry *r, const char *name, int mode, char *msg, size_t msgn)
{
    char path[1024];
    int onnx = srv_model_path(r->cfg->models, name, path, sizeof path);
    pthread_mutex_lock(&r->mu);
    int idx = find_locked(r, name);
    int unloaded = idx >= 0 && r->ents[idx].state == ENT_UNLOADED;
    struct stat prev;
    memset(&prev, 0, sizeof prev);
    if (idx >= 0) prev = r->ents[idx].st;
    pthread_mutex_unlock(&r->mu);
    if (unloaded && mode != SRV_LOAD_EXPLICIT) {
        MSG("model %s was unloaded explicitly; load it through the API", name);
        return SRV_SKIPPED;
    }

    struct stat st;
    size_t len = 0;
    unsigned char *buf = read_whole(path, &len, &st);
    if (!buf && errno == ENOENT) {
        MSG("no file %s", path);
        return SRV_MISSING;
    }
    /* an ONNX model also depends on its sidecar: no shortcut, the version hash decides */
    if (buf && !onnx && idx >= 0 && mode != SRV_LOAD_EXPLICIT && same_file(&prev, &st)) {
        free(buf);
        MSG("model %s: file unchanged", name);
        return SRV_UNCHANGED;
    }
    if (buf && !onnx && mode == SRV_LOAD_WATCH && cvy_incomplete(buf, len)) {
        free(buf);
        srv_log(SRV_LOG_DEBUG, "model %s: %s is incomplete (%zu bytes), waiting", name, path, len);
        MSG("model %s: file incomplete", name);
        return SRV_INCOMPLETE;
    }

    pthread_mutex_lock(&r->mu);
    if (idx < 0) {
        if (r->n == r->cap) {
            int ncap = r->cap ? r->cap * 2 : 8;
            entry *ne = realloc(r->ents, sizeof(entry) * (size_t)ncap);
            if (!ne) {
                pthread_mutex_unlock(&r->mu);
                free(buf);
                MSG("out of memory");
                return SRV_FAILED;
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
    if (buf) r->ents[idx].st = st;
    pthread_mutex_unlock(&r->mu);

    char err[512];
    double t0 = unix_now();
    srv_model *m = NULL;
    if (buf && onnx) { /* convert in memory, with the sidecar's labels and preprocessing */
        free(buf);
        buf = onnx_to_cvy(r->cfg->models, name, path, &len, err, sizeof err);
        if (buf) m = model_build(r, name, buf, len, err, sizeof err);
    } else if (buf)
        m = model_build(r, name, buf, len, err, sizeof err);
    else
        snprintf(err, sizeof err, "cannot read %.400s: %s", path, strerror(errno));
    free(buf);
    double ms = (unix_now() - t0) * 1e3;

    int res;
    srv_model *old = NULL;
    pthread_mutex_lock(&r->mu);
    entry *e = &r->ents[idx];
    e->last_attempt = t0;
    if (m) {
        if (e->cur && strcmp(e->cur->hash, m->hash) == 0) {
            /* touched but same content: keep the running version */
            old = m;
            res = SRV_UNCHANGED;
            srv_log(SRV_LOG_INFO, "model %s: unchanged (version %s)", name, m->hash);
            MSG("model %s: unchanged (version %s)", name, m->hash);
        } else {
            old = e->cur;
            e->cur = m;
            e->load_ms = ms;
            res = SRV_LOADED;
            atomic_fetch_add(&srv_metrics_model_loads, 1);
            srv_log(SRV_LOG_INFO, "model %s: loaded %s version %s in %.1f ms%s%s%s", name, path,
                    m->hash, ms, old ? " (replaced version " : "", old ? old->hash : "",
                    old ? ")" : "");
            MSG("model %s: loaded version %s in %.1f ms", name, m->hash, ms);
        }
        e->state = ENT_READY;
        e->last_error[0] = 0;
    } else {
        res = SRV_FAILED;
        e->failures++;
        atomic_fetch_add(&srv_metrics_model_load_failures, 1);
        atomic_fetch_add(&srv_metrics_model_get(name)->load_fails, 1);
        snprintf(e->last_error, sizeof e->last_error, "%s", err);
        if (e->cur) {
            e->state = ENT_READY;
            srv_log(SRV_LOG_WARN, "model %s: reload of %s failed, keeping version %s: %s", name,
                    path, e->cur->hash, err);
            MSG("model %s: load failed, version %s keeps serving: %s", name, e->cur->hash, err);
        } else {
            e->state = ENT_FAILED;
            srv_log(SRV_LOG_ERROR, "model %s: cannot load %s: %s", name, path, err);
            MSG("model %s: load failed: %s", name, err);
        }
    }
    pthread_mutex_unlock(&r->mu);
    srv_model_release(old);
    return res;
}

int srv_registry_load(srv_registry *r, const char *name, int mode, char *msg, size_t msgn)
{
    if (!srv_model_name_ok(name)) {
        MSG("invalid model name");
        return SRV_MISSING;
    }
    pthread_mutex_lock(&r->load_mu);
    int res = load_locked(r, name, mode, msg, msgn);
    pthread_mutex_unlock(&r->load_mu);
    return res;
}

int srv_registry_unload(srv_registry *r, const char *name, int forget)
{
    srv_model *old = NULL;
    pthread_mutex_lock(&r->load_mu);
    pthread_mutex_lock(&r->mu);
    int idx = find_locked(r, name);
    if (idx >= 0) {
        old = r->ents[idx].cur;
        r->ents[idx].cur = NULL;
        if (forget) {
            memmove(&r->ents[idx], &r->ents[idx + 1], sizeof(entry) * (size_t)(r->n - idx - 1));
            r->n--;
        } else {
            r->ents[idx].state = ENT_UNLOADED;
            r->ents[idx].last_error[0] = 0;
            memset(&r->ents[idx].st, 0, sizeof(struct stat));
        }
    }
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_unlock(&r->load_mu);
    if (idx < 0) return -1;
    srv_log(SRV_LOG_INFO, "model %s: unloaded%s%s%s", name, old ? " version " : "",
            old ? old->hash : "", forget ? " (file removed)" : "");
    srv_model_release(old); /* freed now, or after the last request still using it */
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the model files in the directory (sorted; caller frees each and the array), or
 * NULL with *nn = 0 and errno set when it cannot be read. */
static char **list_dir(const char *dir, size_t *nn_out, int *ok)
{
    *nn_out = 0;
    *ok = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    *ok = 1;
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char name[128];
        int kind = srv_model_file_name(de->d_name, name, sizeof name);
        if (kind != 1 && kind != 2) continue; /* .cvy or .onnx */
        int dup = 0;
        for (size_t k = 0; k < nn && !dup; k++) dup = strcmp(names[k], name) == 0;
        if (dup) continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 16;
            char **nw = realloc(names, cap * sizeof *names);
            if (!nw) break;
            names = nw;
        }
        names[nn] = strdup(name);
        if (names[nn]) nn++;
    }
    closedir(d);
    if (nn) qsort(names, nn, sizeof *names, cmp_str);
    *nn_out = nn;
    return names;
}

int srv_registry_scan(srv_registry *r)
{
    const char *dir = r->cfg->models;
    pthread_mutex_lock(&r->load_mu);
    pthread_mutex_lock(&r->mu);
    r->scanning = 1;
    pthread_mutex_unlock(&r->mu);

    size_t nn;
    int ok;
    char **names = list_dir(dir, &nn, &ok);
    if (!ok) {
        srv_log(SRV_LOG_ERROR, "cannot read model directory %s: %m", dir);
        pthread_mutex_lock(&r->mu);
        snprintf(r->dir_error, sizeof r->dir_error, "cannot read model directory %.200s", dir);
        r->scanning = 0;
        r->scanned = 1;
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_unlock(&r->load_mu);
        return -1;
    }
    for (size_t i = 0; i < nn; i++) {
        load_locked(r, names[i], SRV_LOAD_SCAN, NULL, 0);
        free(names[i]);
    }
    free(names);
    int failures = 0;
    pthread_mutex_lock(&r->mu);
    for (int k = 0; k < r->n; k++)
        if (r->ents[k].state == ENT_FAILED && !r->ents[k].cur) failures++;
    r->scanning = 0;
    r->scanned = 1;
    r->dir_error[0] = 0;
    if (r->n == 0) srv_log(SRV_LOG_WARN, "no model files (*.cvy, *.onnx) in %s", dir);
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_unlock(&r->load_mu);
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
    return s == ENT_READY     ? "ready"
           : s == ENT_LOADING ? "loading"
           : s == ENT_FAILED  ? "failed"
                              : "unloaded";
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
    json_object_set_new(o, "load_failures", json_integer((json_int_t)e->failures));
    return o;
}

json_t *srv_registry_describe(srv_registry *r, const char *name)
{
    json_t *res = NULL;
    pthread_mutex_lock(&r->mu);
    if (!name) {
        res = json_array();
        for (int i = 0; i < r->n; i++) json_array_append_new(res, describe_entry(&r->ents[i]));
    } else {
        for (int i = 0; i < r->n; i++)
            if (strcmp(r->ents[i].name, name) == 0) res = describe_entry(&r->ents[i]);
    }
    pthread_mutex_unlock(&r->mu);
    return res;
}

int srv_registry_ready(srv_registry *r, char *why, size_t n)
{
    int ok = 1, serving = 0;
    pthread_mutex_lock(&r->mu);
    if (!r->scanned) {
        snprintf(why, n, "loading models");
        ok = 0;
    } else if (*r->dir_error) {
        snprintf(why, n, "%s", r->dir_error);
        ok = 0;
    } else if (r->n == 0) {
        snprintf(why, n, "no models in %s", r->cfg->models);
        ok = 0;
    } else {
        /* A reload in progress keeps its old version serving; a model loading for the first
         * time after startup does not hold the others back; a model that failed with no
         * version to fall back on does. */
        for (int i = 0; i < r->n && ok; i++) {
            const entry *e = &r->ents[i];
            if (e->cur)
                serving++;
            else if (e->state == ENT_FAILED) {
                snprintf(why, n, "model %s is failed: %.300s", e->name, e->last_error);
                ok = 0;
            }
        }
        if (ok && !serving) {
            snprintf(why, n, "no model is serving");
            ok = 0;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

json_t *srv_registry_index(srv_registry *r, int ready_only)
{
    size_t nn;
    int ok;
    char **names = list_dir(r->cfg->models, &nn, &ok);
    json_t *a = json_array();
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) {
        const entry *e = &r->ents[i];
        if (ready_only && !e->cur) continue;
        const char *state = e->cur ? "READY" : e->state == ENT_LOADING ? "LOADING" : "UNAVAILABLE";
        const char *reason = e->state == ENT_UNLOADED ? "unloaded"
                             : *e->last_error         ? e->last_error
                                                      : "";
        json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s}", "name", e->name, "version",
                                           e->cur ? e->cur->hash : "", "state", state, "reason",
                                           reason));
    }
    for (size_t k = 0; k < nn; k++) {
        if (!ready_only && find_locked(r, names[k]) < 0)
            json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s}", "name", names[k], "version", "",
                                               "state", "UNAVAILABLE", "reason", "not loaded yet"));
        free(names[k]);
    }
    pthread_mutex_unlock(&r->mu);
    free(names);
    return a;
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
    for (int i = 0; i < r->n; i++) srv_model_release(r->ents[i].cur);
    free(r->ents);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
