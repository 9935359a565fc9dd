/*
 * server_util.h - helpers for the convoyd tests: start the real daemon on a free loopback
 * port with a temporary model directory, talk to it with libcurl, read test data.
 */
#ifndef SERVER_UTIL_H
#define SERVER_UTIL_H

#include <stddef.h>
#include <sys/types.h>

typedef struct tserver {
    pid_t pid;
    int port;
    char dir[256]; /* temporary model directory */
    char log[300]; /* daemon stderr */
} tserver;

/* Starts build/convoyd --models <tmp> --listen 127.0.0.1:0 plus extra args (NULL-ended list),
 * with the Fashion-MNIST model linked into <tmp>. Waits (bounded) for the port and, when
 * wait_ready, for /readyz 200. Returns 0 or -1. */
int ts_start(tserver *s, int wait_ready, const char *const *extra);
/* Sends sig and waits up to timeout_ms for the exit; SIGKILL after. Returns the exit status
 * (0..255) or -1 if it had to be killed / did not exit normally. */
int ts_stop(tserver *s, int sig, int timeout_ms);
void ts_cleanup(tserver *s);

typedef struct tresp {
    long status;
    int curl_code;
    char *body;
    size_t len;
    char retry_after[32];
    long infer_header_len; /* Inference-Header-Content-Length, -1 if absent */
    double seconds;
} tresp;

/* One request. ctype NULL = no Content-Type; headers: NULL-ended extra header lines. */
tresp ts_http(const tserver *s, const char *method, const char *path, const char *ctype,
              const void *body, size_t len, const char *const *headers);
void ts_resp_free(tresp *r);

/* Reads a whole file; NULL on failure. */
unsigned char *ts_read_file(const char *path, size_t *len);
/* Base64 (standard alphabet, padded). Caller frees. */
char *ts_b64(const unsigned char *p, size_t n);

/* Test images: tests/data/fashion_%02d.png and the golden top-1 from fashion_golden.txt. */
#define TS_NIMG 16
typedef struct timg {
    unsigned char *data;
    size_t len;
    char name[64];
    int top1; /* index, or -1 when the golden file gives a label */
    char top1_label[64];
} timg;
int ts_load_images(timg *imgs); /* returns count loaded (TS_NIMG) or -1 */

/* Checks a /classify prediction against the golden answer. */
int ts_top1_ok(const timg *img, int index, const char *label);

/* Reads a little-endian float32 C-order .npy file: returns the data (caller frees) and the
 * element count, or NULL. */
float *ts_read_npy_f32(const char *path, size_t *count);

const char *ts_build_dir(void);
long ts_now_ms(void);
void ts_sleep_ms(int ms);

/* One sample value of /metrics text ("name{labels} value"); -1 if absent. */
double ts_metric(const char *text, const char *series);

/* The atomic deploy: writes n bytes to <dir>/.<name>.cvy.tmp and renames it to
 * <dir>/<name>.cvy in the server's model directory. Returns 0 or -1. */
int ts_deploy(const tserver *s, const char *name, const void *data, size_t n);

/* Makes <dir>/B.cvy (models/fashion-mnist.cvy with one class bias of its last Gemm shifted)
 * and <dir>/stale.cvy (B keeping the original's golden self-test) with tools/cvy_variant.py
 * (Debian's python3 + numpy). Returns 0 or -1. */
int ts_make_variants(const char *dir);

#endif
