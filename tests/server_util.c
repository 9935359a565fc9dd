/*
 * server_util.c - see server_util.h.
 */
#include "server_util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long ts_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void ts_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

double ts_metric(const char *text, const char *series)
{
    size_t l = strlen(series);
    for (const char *p = text; p && (p = strstr(p, series)); p += l)
        if ((p == text || p[-1] == '\n') && p[l] == ' ') return atof(p + l + 1);
    return -1;
}

int ts_deploy(const tserver *s, const char *name, const void *data, size_t n)
{
    char tmp[512], dst[512];
    snprintf(tmp, sizeof tmp, "%s/.%s.cvy.tmp", s->dir, name);
    snprintf(dst, sizeof dst, "%s/%s.cvy", s->dir, name);
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    return ok && rename(tmp, dst) == 0 ? 0 : -1;
}

int ts_make_variants(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tools/cvy_variant.py models/fashion-mnist.cvy %s/B.cvy && "
             "/usr/bin/python3 tools/cvy_variant.py models/fashion-mnist.cvy %s/stale.cvy "
             "--keep-golden",
             dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

const char *ts_build_dir(void)
{
    const char *b = getenv("CONVOY_BUILD");
    return b && *b ? b : "build";
}

unsigned char *ts_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    unsigned char *p = malloc(cap);
    while (p) {
        size_t got = fread(p + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        unsigned char *np = realloc(p, cap);
        if (!np) {
            free(p);
            p = NULL;
        } else {
            p = np;
        }
    }
    fclose(f);
    if (p) *len = n;
    return p;
}

char *ts_b64(const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc((n + 2) / 3 * 4 + 1);
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n) v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        o[j++] = tab[(v >> 18) & 63];
        o[j++] = tab[(v >> 12) & 63];
        o[j++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        o[j++] = i + 2 < n ? tab[v & 63] : '=';
    }
    o[j] = 0;
    return o;
}

float *ts_read_npy_f32(const char *path, size_t *count)
{
    size_t len;
    unsigned char *p = ts_read_file(path, &len);
    if (!p || len < 10 || memcmp(p, "\x93NUMPY", 6) != 0) {
        free(p);
        return NULL;
    }
    size_t hl, off;
    if (p[6] == 1) {
        hl = p[8] | (size_t)p[9] << 8;
        off = 10;
    } else {
        hl = p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
        off = 12;
    }
    if (off + hl > len) {
        free(p);
        return NULL;
    }
    char *hdr = strndup((const char *)p + off, hl);
    int ok = hdr && strstr(hdr, "'<f4'") && strstr(hdr, "'fortran_order': False");
    free(hdr);
    size_t n = (len - off - hl) / 4;
    float *out = ok ? malloc(n * sizeof(float) + 1) : NULL;
    if (out) memcpy(out, p + off + hl, n * sizeof(float));
    free(p);
    if (out) *count = n;
    return out;
}

int ts_load_images(timg *imgs)
{
    memset(imgs, 0, sizeof(timg) * TS_NIMG);
    for (int i = 0; i < TS_NIMG; i++) {
        char path[128];
        snprintf(imgs[i].name, sizeof imgs[i].name, "fashion_%02d.png", i);
        snprintf(path, sizeof path, "tests/data/%s", imgs[i].name);
        imgs[i].data = ts_read_file(path, &imgs[i].len);
        if (!imgs[i].data) {
            fprintf(stderr, "cannot read %s\n", path);
            return -1;
        }
        imgs[i].top1 = -2;
    }
    FILE *f = fopen("tests/data/fashion_golden.txt", "r");
    if (!f) {
        fprintf(stderr, "cannot read tests/data/fashion_golden.txt\n");
        return -1;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char fn[128], truel[64], top[64];
        if (line[0] == '#' || sscanf(line, "%127s %63s %63s", fn, truel, top) != 3) continue;
        const char *base = strrchr(fn, '/') ? strrchr(fn, '/') + 1 : fn;
        for (int i = 0; i < TS_NIMG; i++)
            if (strcmp(imgs[i].name, base) == 0) {
                char *end;
                long v = strtol(top, &end, 10);
                if (*end == 0 && end != top) {
                    imgs[i].top1 = (int)v;
                } else {
                    imgs[i].top1 = -1;
                    snprintf(imgs[i].top1_label, sizeof imgs[i].top1_label, "%s", top);
                }
            }
    }
    fclose(f);
    for (int i = 0; i < TS_NIMG; i++)
        if (imgs[i].top1 == -2) {
            fprintf(stderr, "no golden answer for %s\n", imgs[i].name);
            return -1;
        }
    return TS_NIMG;
}

int ts_top1_ok(const timg *img, int index, const char *label)
{
    if (img->top1 >= 0) return index == img->top1;
    return label && strcmp(label, img->top1_label) == 0;
}

static int read_port(const char *log)
{
    size_t n;
    unsigned char *p = ts_read_file(log, &n);
    if (!p) return 0;
    char *s = realloc(p, n + 1);
    if (!s) {
        free(p);
        return 0;
    }
    s[n] = 0;
    int port = 0;
    char *h = strstr(s, "listening on http://127.0.0.1:");
    if (h) port = atoi(h + strlen("listening on http://127.0.0.1:"));
    free(s);
    return port;
}

int ts_start(tserver *s, int wait_ready, const char *const *extra)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/convoyd-test-XXXXXX");
    if (!mkdtemp(s->dir)) return -1;
    char model[PATH_MAX], link_path[400];
    if (!realpath("models/fashion-mnist.cvy", model)) {
        fprintf(stderr, "models/fashion-mnist.cvy is missing\n");
        return -1;
    }
    snprintf(link_path, sizeof link_path, "%s/fashion-mnist.cvy", s->dir);
    if (symlink(model, link_path) != 0) return -1;
    snprintf(s->log, sizeof s->log, "%s.log", s->dir);
    char bin[400];
    snprintf(bin, sizeof bin, "%s/convoyd", ts_build_dir());
    const char *argv[64];
    int a = 0;
    argv[a++] = bin;
    argv[a++] = "--models";
    argv[a++] = s->dir;
    argv[a++] = "--listen";
    argv[a++] = "127.0.0.1:0";
    argv[a++] = "--log-level";
    argv[a++] = "info";
    for (int i = 0; extra && extra[i] && a < 62; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    long t0 = ts_now_ms();
    while (ts_now_ms() - t0 < 10000) {
        s->port = read_port(s->log);
        if (s->port) break;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "convoyd exited during startup (see %s)\n", s->log);
            return -1;
        }
        ts_sleep_ms(10);
    }
    if (!s->port) {
        ts_stop(s, SIGKILL, 1000);
        return -1;
    }
    if (!wait_ready) return 0;
    while (ts_now_ms() - t0 < 20000) {
        tresp r = ts_http(s, "GET", "/readyz", NULL, NULL, 0, NULL);
        long st = r.status;
        ts_resp_free(&r);
        if (st == 200) return 0;
        ts_sleep_ms(20);
    }
    fprintf(stderr, "convoyd did not become ready (see %s)\n", s->log);
    ts_stop(s, SIGKILL, 1000);
    return -1;
}

int ts_stop(tserver *s, int sig, int timeout_ms)
{
    if (s->pid <= 0) return -1;
    kill(s->pid, sig);
    long t0 = ts_now_ms();
    int st = 0;
    for (;;) {
        pid_t w = waitpid(s->pid, &st, WNOHANG);
        if (w == s->pid) break;
        if (ts_now_ms() - t0 > timeout_ms) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            s->pid = 0;
            return -1;
        }
        ts_sleep_ms(5);
    }
    s->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void ts_cleanup(tserver *s)
{
    if (s->pid > 0) ts_stop(s, SIGKILL, 2000);
    if (*s->dir) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", s->dir);
        if (!getenv("CONVOY_KEEP_LOGS")) unlink(s->log);
    }
}

typedef struct sink {
    char *p;
    size_t len;
    char retry[32];
    long ihcl;
} sink;

static size_t on_data(char *ptr, size_t size, size_t nm, void *ud)
{
    sink *k = ud;
    size_t n = size * nm;
    char *np = realloc(k->p, k->len + n + 1);
    if (!np) return 0;
    k->p = np;
    memcpy(k->p + k->len, ptr, n);
    k->len += n;
    k->p[k->len] = 0;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nm, void *ud)
{
    sink *k = ud;
    size_t n = size * nm;
    if (n > 32 && strncasecmp(ptr, "Inference-Header-Content-Length:", 32) == 0)
        k->ihcl = atol(ptr + 32);
    if (n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
        size_t l = n - 12 < sizeof k->retry - 1 ? n - 12 : sizeof k->retry - 1;
        memcpy(k->retry, ptr + 12, l);
        k->retry[l] = 0;
        char *c = k->retry;
        while (*c == ' ')
            memmove(c, c + 1, strlen(c));
        for (char *e = k->retry; *e; e++)
            if (*e == '\r' || *e == '\n') *e = 0;
    }
    return n;
}

tresp ts_http(const tserver *s, const char *method, const char *path, const char *ctype,
              const void *body, size_t len, const char *const *headers)
{
    tresp r;
    memset(&r, 0, sizeof r);
    CURL *c = curl_easy_init();
    if (!c) {
        r.curl_code = -1;
        return r;
    }
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    sink k = {0};
    k.ihcl = -1;
    struct curl_slist *hl = NULL;
    char ct[256];
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        hl = curl_slist_append(hl, ct);
    } else if (body) {
        hl = curl_slist_append(hl, "Content-Type:");
    }
    hl = curl_slist_append(hl, "Expect:");
    for (int i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &k);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    long t0 = ts_now_ms();
    r.curl_code = (int)curl_easy_perform(c);
    r.seconds = (double)(ts_now_ms() - t0) / 1e3;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    r.body = k.p;
    r.len = k.len;
    memcpy(r.retry_after, k.retry, sizeof r.retry_after);
    r.infer_header_len = k.ihcl;
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return r;
}

void ts_resp_free(tresp *r)
{
    free(r->body);
    r->body = NULL;
}
