/*
 * convoy.c - the `convoy` command-line tool: inspect, classify, run, bench, eval and convert.
 *
 * Every command prints its help with --help and exits 0 on success; on failure it prints one
 * line "convoy: ..." (or "convoy CMD: ...") on stderr and exits 1 (runtime error) or 2 (usage
 * error). Options may come before or after the positional arguments; "--" ends the options.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "convoy.h"
#include "idx.h"
#include "npy.h"

#define EXIT_USAGE             2
#define MAX_CHUNK              64         /* largest batch run at once by classify/run */
#define MAX_BATCH              4096       /* largest --batch accepted */
#define MAX_THREADS            1024       /* largest --threads accepted */
#define MAX_IMAGE_BYTES        (1L << 30) /* largest image file classify reads */
#define MAX_IMAGE_PIXELS       (1L << 28) /* largest decoded image classify accepts */
#define DEFAULT_BENCH_MAX_RUNS 100000     /* bench stops after this many timed runs */

/* Threads from the global --threads option (0: all cores); commands may override it. */
static int g_threads = 0;

/* ---- messages ---------------------------------------------------------------------------- */

/* Prints "convoy: <message>" on stderr; returns 1 (the runtime-error exit status). */
static int errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("convoy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* Prints "convoy CMD: <message> (see 'convoy CMD --help')" on stderr; returns EXIT_USAGE. */
static int usagef(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usagef(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "convoy %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'convoy %s --help')\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

/* ---- argument parsing -------------------------------------------------------------------- */

/* If argv[*i] is option `name` ("--x V" or "--x=V"), stores its value in *val (advancing *i
 * past a separate value) and returns 1; returns -1 when the value is missing, 0 when argv[*i]
 * is another argument. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

/* Parses a whole decimal integer in [lo, hi]. Returns 0 or -1. */
static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Parses a whole finite number in [lo, hi]. Returns 0 or -1. */
static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Options every command understands besides its own. */
typedef struct common_opts {
    int threads;
} common_opts;

/* Shared loop of the command parsers: handles --threads and collects positional arguments
 * into pos (capacity argc). `own` handles the command's options: it returns 1 when it
 * consumed argv[*i], 0 when the option is not its own, or an exit status + 10 on error. */
typedef int (*own_opt_fn)(void *ctx, int argc, char **argv, int *i);
static int parse_args(const char *cmd, int argc, char **argv, own_opt_fn own, void *ctx,
                      common_opts *co, const char **pos, int *npos)
{
    int only_pos = 0;
    *npos = 0;
    co->threads = g_threads;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        int r = opt_value(argc, argv, &i, "--threads", &val);
        if (r < 0) return usagef(cmd, "option --threads needs a value");
        if (r > 0) {
            if (parse_int(val, 0, MAX_THREADS, &co->threads))
                return usagef(cmd, "--threads must be an integer in 0..%d, not '%s'", MAX_THREADS,
                              val);
            continue;
        }
        r = own ? own(ctx, argc, argv, &i) : 0;
        if (r >= 10) return r - 10;
        if (r == 0) return usagef(cmd, "unknown option '%s'", a);
    }
    return 0;
}

/* 1 when the arguments ask for help (--help or -h before any "--"). */
static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    }
    return 0;
}

/* ---- shared helpers ---------------------------------------------------------------------- */

/* An engine with one loaded model. */
typedef struct session {
    cvy_engine *eng;
    cvy_model *m;
} session;

/* Starts an engine with `threads` threads and loads the model at path. Prints one error
 * line and returns 1 on failure (s is then empty), 0 on success. Free with close_model. */
static int open_model(const char *path, int threads, session *s)
{
    cvy_error err = {{0}};
    s->eng = NULL;
    s->m = NULL;
    if (access(path, R_OK) != 0) return errorf("cannot open model '%s': %s", path, strerror(errno));
    cvy_engine_params ep = cvy_engine_default_params();
    ep.threads = threads;
    if (cvy_engine_create(&ep, &s->eng, &err) != CVY_OK)
        return errorf("cannot start the engine: %s", err.msg);
    if (cvy_model_load_file(s->eng, path, &s->m, &err) != CVY_OK) {
        cvy_engine_destroy(s->eng);
        s->eng = NULL;
        if (strstr(err.msg, path)) /* the engine's message already names the file */
            return errorf("cannot load model %s", err.msg);
        return errorf("cannot load model '%s': %s", path, err.msg);
    }
    return 0;
}

static void close_model(session *s)
{
    cvy_model_free(s->m);
    cvy_engine_destroy(s->eng);
    s->m = NULL;
    s->eng = NULL;
}

/* Creates a context for batches of up to max_batch images; prints an error on failure. */
static int open_context(const session *s, int max_batch, cvy_context **ctx)
{
    cvy_error err = {{0}};
    if (cvy_context_create(s->m, max_batch, ctx, &err) != CVY_OK)
        return errorf("cannot create a run context for batch %d: %s", max_batch, err.msg);
    return 0;
}

/* Reads a whole file of at most `limit` bytes into a malloc'ed buffer. Returns 0, or 1 after
 * printing an error naming the file. */
static int read_file(const char *path, long limit, unsigned char **buf, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return errorf("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (!b) {
            fclose(f);
            return errorf("%s: out of memory", path);
        }
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) break;
        if ((long)cap >= limit) {
            free(b);
            fclose(f);
            return errorf("%s: file is larger than %ld bytes", path, limit);
        }
        unsigned char *nb = realloc(b, cap * 2);
        if (!nb) free(b);
        b = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return errorf("%s: read error", path);
    }
    *buf = b;
    *size = n;
    return 0;
}

/* Writes s as a JSON string literal (quotes included) with the required escapes. NULL is
 * written as null. */
static void json_string(FILE *out, const char *s)
{
    if (!s) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* Writes a number as JSON (null when not finite). */
static void json_number(FILE *out, double v, const char *fmt)
{
    if (isfinite(v))
        fprintf(out, fmt, v);
    else
        fputs("null", out);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Flushes stdout and reports a failed write (e.g. a full disk); returns status or 1. */
static int finish_stdout(int status)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return status ? status : errorf("error writing to stdout: %s", strerror(errno));
    return status;
}

static const char *color_name(cvy_color c)
{
    switch (c) {
    case CVY_COLOR_GRAY: return "gray";
    case CVY_COLOR_RGB: return "RGB";
    case CVY_COLOR_BGR: return "BGR";
    }
    return "?";
}

/* Channels an image must be decoded to for model m (1 gray, 3 colour). */
static int model_channels(const cvy_model *m)
{
    return cvy_model_preproc(m)->color == CVY_COLOR_GRAY ? 1 : 3;
}

/* ---- inspect ----------------------------------------------------------------------------- */

static const char HELP_INSPECT[] =
    "usage: convoy inspect [--threads N] MODEL\n"
    "\n"
    "Prints what the model file holds: file size, hash (the model version), input shape,\n"
    "preprocessing, output size and kind, labels, then one row per planned layer (after\n"
    "fusion: name, operator, kernel algorithm, output dims, parameters, MFLOPs per image)\n"
    "and the totals.\n"
    "\n"
    "options:\n"
    "  --threads N   engine threads (0 = all cores); the kernel choice may depend on it\n"
    "  -h, --help    show this help\n";

/* Prints the preprocessing spec on one line. */
static void print_preproc(const cvy_preproc *p)
{
    int c = p->color == CVY_COLOR_GRAY ? 1 : 3;
    printf("%s %dx%d, ", color_name(p->color), p->width, p->height);
    if (p->resize == CVY_RESIZE_SHORTER_CROP)
        printf("shorter side to %d then center crop",
               p->resize_shorter ? p->resize_shorter
                                 : (p->width < p->height ? p->width : p->height));
    else
        printf("stretch");
    printf(", value = (pixel * %g - mean) / std, mean [", (double)p->scale);
    for (int i = 0; i < c; i++) printf(i ? ", %g" : "%g", (double)p->mean[i]);
    printf("], std [");
    for (int i = 0; i < c; i++) printf(i ? ", %g" : "%g", (double)p->std[i]);
    printf("]\n");
}

/* Formats the dims of a layer output as "64x14x14" into buf. */
static void format_dims(const cvy_layer_info *li, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int d = 0; d < li->ndim && d < 4 && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, d ? "x%d" : "%d", li->dims[d]);
    if (li->ndim == 0) snprintf(buf, cap, "scalar");
}

/* `convoy inspect MODEL`: prints the model summary and the per-layer table. */
static int cmd_inspect(int argc, char **argv)
{
    const char **pos = calloc((size_t)argc, sizeof *pos);
    int npos = 0;
    common_opts co;
    if (!pos) return errorf("out of memory");
    int rc = parse_args("inspect", argc, argv, NULL, NULL, &co, pos, &npos);
    if (!rc && npos != 1)
        rc = usagef("inspect", npos ? "expects exactly one MODEL" : "missing MODEL");
    const char *path = npos ? pos[0] : NULL;
    free(pos);
    if (rc) return rc;

    session s;
    if (open_model(path, co.threads, &s)) return 1;
    const cvy_model *m = s.m;
    int c, h, w;
    cvy_model_input_shape(m, &c, &h, &w);
    printf("model:        %s\n", path);
    printf("file size:    %zu bytes\n", cvy_model_file_size(m));
    printf("hash:         %s\n", cvy_model_hash(m));
    printf("input:        %d x %d x %d (C x H x W), %zu floats per image\n", c, h, w,
           cvy_model_input_size(m));
    printf("preprocess:   ");
    print_preproc(cvy_model_preproc(m));
    printf("output:       %zu floats per image, %s\n", cvy_model_output_size(m),
           cvy_model_output_is_probability(m) ? "probabilities (softmax)" : "logits");
    int nl = cvy_model_label_count(m);
    printf("labels:       %d", nl);
    for (int i = 0; i < nl && i < 20; i++) {
        fputs(i ? ", " : ": ", stdout);
        const char *l = cvy_model_label(m, i);
        fputs(l ? l : "?", stdout);
    }
    printf("%s\n", nl > 20 ? ", ..." : "");
    printf("engine:       %s, %d threads\n", cvy_engine_isa(s.eng), cvy_engine_threads(s.eng));

    int nlayers = cvy_model_layer_count(m);
    int wname = 4, wop = 2, walgo = 4;
    cvy_layer_info li;
    for (int i = 0; i < nlayers; i++) {
        if (cvy_model_layer(m, i, &li) != CVY_OK) continue;
        int a = li.name ? (int)strlen(li.name) : 1, b = li.op ? (int)strlen(li.op) : 1;
        int d = li.algo ? (int)strlen(li.algo) : 1;
        wname = a > wname ? (a > 40 ? 40 : a) : wname;
        wop = b > wop ? b : wop;
        walgo = d > walgo ? d : walgo;
    }
    printf("\nlayers: %d\n", nlayers);
    printf("%4s  %-*s  %-*s  %-*s  %-14s  %10s  %10s\n", "#", wname, "name", wop, "op", walgo,
           "algo", "output", "params", "MFLOPs");
    int rc2 = 0;
    for (int i = 0; i < nlayers; i++) {
        if (cvy_model_layer(m, i, &li) != CVY_OK) {
            rc2 = errorf("layer %d of %d cannot be queried", i, nlayers);
            break;
        }
        char dims[64];
        format_dims(&li, dims, sizeof dims);
        printf("%4d  %-*.*s  %-*s  %-*s  %-14s  %10zu  %10.3f\n", i, wname, wname,
               li.name ? li.name : "-", wop, li.op ? li.op : "-", walgo, li.algo ? li.algo : "-",
               dims, li.params, li.flops / 1e6);
    }
    double flops = cvy_model_flops(m);
    printf("\ntotal:        %zu params, %.0f FLOPs per image (%.3f MFLOPs)\n",
           cvy_model_param_count(m), flops, flops / 1e6);
    close_model(&s);
    return finish_stdout(rc2);
}

/* ---- classify ---------------------------------------------------------------------------- */

static const char HELP_CLASSIFY[] =
    "usage: convoy classify [--top K] [--json] [--threads N] MODEL IMAGE...\n"
    "\n"
    "Decodes each image (JPEG, PNG, BMP, GIF, TGA, PNM, ...), applies the model's\n"
    "preprocessing, runs the images as batches of up to 64 and prints for each image its\n"
    "file name followed by the K best classes as \"  label  index  score\".\n"
    "\n"
    "options:\n"
    "  --top K       classes per image (default 5)\n"
    "  --json        print one JSON object instead:\n"
    "                {\"results\": [{\"predictions\": [{\"label\": \"...\", \"index\": 0,\n"
    "                 \"score\": 0.9}, ...]}, ...]} with results in argument order\n"
    "  --threads N   engine threads (0 = all cores)\n"
    "  -h, --help    show this help\n";

typedef struct classify_opts {
    int top, json;
} classify_opts;

/* Option handlers for parse_args: see own_opt_fn. */
static int classify_opt(void *ctx, int argc, char **argv, int *i)
{
    classify_opts *o = ctx;
    const char *val;
    if (strcmp(argv[*i], "--json") == 0) {
        o->json = 1;
        return 1;
    }
    int r = opt_value(argc, argv, i, "--top", &val);
    if (r < 0) return 10 + usagef("classify", "option --top needs a value");
    if (r > 0 && parse_int(val, 1, 1000000, &o->top))
        return 10 + usagef("classify", "--top must be a positive integer, not '%s'", val);
    return r;
}

/* Decodes and preprocesses image `path` into in (cvy_model_input_size floats). Returns 0,
 * or 1 after printing an error naming the file. */
static int load_image(const cvy_model *m, const char *path, float *in)
{
    unsigned char *data = NULL;
    size_t size = 0;
    if (read_file(path, MAX_IMAGE_BYTES, &data, &size)) return 1;
    cvy_image img;
    cvy_error err = {{0}};
    cvy_status st = cvy_image_decode(data, size, model_channels(m), MAX_IMAGE_PIXELS, &img, &err);
    free(data);
    if (st != CVY_OK) return errorf("%s: %s", path, err.msg);
    st = cvy_image_preprocess(m, &img, in, &err);
    cvy_image_release(&img);
    if (st != CVY_OK) return errorf("%s: %s", path, err.msg);
    return 0;
}

/* Prints the stored predictions of n images as text or JSON. */
static void print_predictions(const char **files, int n, const cvy_prediction *preds,
                              const int *counts, int top, int json)
{
    if (json) fputs("{\"results\": [", stdout);
    for (int i = 0; i < n; i++) {
        const cvy_prediction *p = preds + (size_t)i * top;
        if (json) {
            fputs(i ? ", {\"predictions\": [" : "{\"predictions\": [", stdout);
            for (int k = 0; k < counts[i]; k++) {
                fputs(k ? ", {\"label\": " : "{\"label\": ", stdout);
                json_string(stdout, p[k].label);
                printf(", \"index\": %d, \"score\": ", p[k].index);
                json_number(stdout, p[k].score, "%.6g");
                fputc('}', stdout);
            }
            fputs("]}", stdout);
        } else {
            printf("%s\n", files[i]);
            for (int k = 0; k < counts[i]; k++) {
                if (p[k].label)
                    printf("  %s  %d  %.4f\n", p[k].label, p[k].index, (double)p[k].score);
                else
                    printf("  -  %d  %.4f\n", p[k].index, (double)p[k].score);
            }
        }
    }
    if (json) fputs("]}\n", stdout);
}

/* `convoy classify`: decodes and preprocesses the images chunk by chunk into one context,
 * keeps the top-K of each and prints everything at the end, so a bad image leaves stdout
 * empty. */
static int cmd_classify(int argc, char **argv)
{
    const char **pos = calloc((size_t)argc, sizeof *pos);
    int npos = 0;
    common_opts co;
    classify_opts o = {5, 0};
    if (!pos) return errorf("out of memory");
    int rc = parse_args("classify", argc, argv, classify_opt, &o, &co, pos, &npos);
    if (!rc && npos < 2)
        rc = usagef("classify", npos ? "missing IMAGE" : "missing MODEL and IMAGE");
    if (rc) {
        free(pos);
        return rc;
    }
    const char **files = pos + 1;
    int n = npos - 1;

    session s;
    if (open_model(pos[0], co.threads, &s)) {
        free(pos);
        return 1;
    }
    int chunk = n < MAX_CHUNK ? n : MAX_CHUNK;
    size_t insz = cvy_model_input_size(s.m), osz = cvy_model_output_size(s.m);
    cvy_context *ctx = NULL;
    float *out = malloc((size_t)chunk * osz * sizeof *out);
    cvy_prediction *preds = calloc((size_t)n * (size_t)o.top, sizeof *preds);
    int *counts = calloc((size_t)n, sizeof *counts);
    if (!out || !preds || !counts)
        rc = errorf("out of memory");
    else
        rc = open_context(&s, chunk, &ctx);

    for (int base = 0; !rc && base < n; base += chunk) {
        int cnt = n - base < chunk ? n - base : chunk;
        float *in = cvy_context_input(ctx);
        for (int i = 0; !rc && i < cnt; i++)
            rc = load_image(s.m, files[base + i], in + (size_t)i * insz);
        if (rc) break;
        cvy_error err = {{0}};
        if (cvy_context_run(ctx, cnt, NULL, out, &err) != CVY_OK) {
            rc = errorf("run failed: %s", err.msg);
            break;
        }
        for (int i = 0; i < cnt; i++)
            counts[base + i] = cvy_model_topk(s.m, out + (size_t)i * osz, o.top,
                                              preds + (size_t)(base + i) * o.top);
    }
    if (!rc) print_predictions(files, n, preds, counts, o.top, o.json);
    cvy_context_destroy(ctx);
    close_model(&s);
    free(counts);
    free(preds);
    free(out);
    free(pos);
    return finish_stdout(rc);
}

/* ---- run --------------------------------------------------------------------------------- */

static const char HELP_RUN[] =
    "usage: convoy run [--threads N] MODEL --input IN.npy --output OUT.npy\n"
    "\n"
    "Runs already preprocessed input through the model. IN.npy must hold float32 ('<f4',\n"
    "C order) of shape [N, C, H, W] matching the model input; OUT.npy receives the raw\n"
    "model output as float32 [N, output_size]. Images run in batches of up to 64.\n"
    "\n"
    "options:\n"
    "  --input FILE    input .npy (required)\n"
    "  --output FILE   output .npy (required; overwritten)\n"
    "  --threads N     engine threads (0 = all cores)\n"
    "  -h, --help      show this help\n";

typedef struct run_opts {
    const char *input, *output;
} run_opts;

static int run_opt(void *ctx, int argc, char **argv, int *i)
{
    run_opts *o = ctx;
    int r = opt_value(argc, argv, i, "--input", &o->input);
    if (r == 0) r = opt_value(argc, argv, i, "--output", &o->output);
    if (r < 0) return 10 + usagef("run", "option %s needs a value", argv[*i]);
    return r;
}

/* `convoy run`: raw float32 batch in, raw output out, in chunks of MAX_CHUNK images. */
static int cmd_run(int argc, char **argv)
{
    const char **pos = calloc((size_t)argc, sizeof *pos);
    int npos = 0;
    common_opts co;
    run_opts o = {NULL, NULL};
    if (!pos) return errorf("out of memory");
    int rc = parse_args("run", argc, argv, run_opt, &o, &co, pos, &npos);
    if (!rc && npos != 1) rc = usagef("run", npos ? "expects exactly one MODEL" : "missing MODEL");
    if (!rc && (!o.input || !o.output)) rc = usagef("run", "--input and --output are required");
    const char *model = npos ? pos[0] : NULL;
    free(pos);
    if (rc) return rc;

    session s;
    if (open_model(model, co.threads, &s)) return 1;
    npy_array a = {0};
    cvy_error err = {{0}};
    int c, h, w;
    cvy_model_input_shape(s.m, &c, &h, &w);
    if (npy_read(o.input, &a, &err)) {
        close_model(&s);
        return errorf("%s", err.msg);
    }
    if (a.ndim != 4 || a.dims[1] != (size_t)c || a.dims[2] != (size_t)h || a.dims[3] != (size_t)w) {
        char shape[96] = "(";
        size_t n = 1;
        for (int i = 0; i < a.ndim; i++)
            n += (size_t)snprintf(shape + n, sizeof shape - n, i ? ", %zu" : "%zu", a.dims[i]);
        snprintf(shape + n, sizeof shape - n, ")");
        npy_free(&a);
        close_model(&s);
        return errorf("%s: input has shape %s, the model needs (N, %d, %d, %d)", o.input, shape, c,
                      h, w);
    }
    size_t total = a.dims[0];
    size_t insz = cvy_model_input_size(s.m), osz = cvy_model_output_size(s.m);
    int chunk = total < MAX_CHUNK ? (int)total : MAX_CHUNK;
    float *out = malloc((total ? total : 1) * osz * sizeof *out);
    cvy_context *ctx = NULL;
    if (!out)
        rc = errorf("out of memory for %zu outputs", total);
    else if (total)
        rc = open_context(&s, chunk, &ctx);
    for (size_t base = 0; !rc && base < total; base += (size_t)chunk) {
        int cnt = total - base < (size_t)chunk ? (int)(total - base) : chunk;
        if (cvy_context_run(ctx, cnt, a.data + base * insz, out + base * osz, &err) != CVY_OK)
            rc = errorf("run failed at image %zu: %s", base, err.msg);
    }
    if (!rc) {
        size_t dims[2] = {total, osz};
        if (npy_write(o.output, out, 2, dims, &err)) rc = errorf("%s", err.msg);
    }
    cvy_context_destroy(ctx);
    free(out);
    npy_free(&a);
    close_model(&s);
    return rc;
}

/* ---- bench ------------------------------------------------------------------------------- */

static const char HELP_BENCH[] =
    "usage: convoy bench [--batch N] [--threads T] [--seconds S] [--warmup W] [--json]\n"
    "                    [--profile] MODEL\n"
    "\n"
    "Times cvy_context_run on random input (fixed seed): W warm-up runs, then timed runs\n"
    "for S seconds (at most --max-runs runs). Reports the median and 90th percentile latency\n"
    "per batch and images per second (batch / median).\n"
    "\n"
    "options:\n"
    "  --batch N      images per run (default 1)\n"
    "  --threads T    engine threads (default: all cores)\n"
    "  --seconds S    timed duration (default 3)\n"
    "  --warmup W     untimed runs first (default 5)\n"
    "  --max-runs M   upper bound on timed runs (default 100000)\n"
    "  --json         print {\"batch\": N, \"threads\": T, \"median_ms\": x, \"p90_ms\": y,\n"
    "                 \"images_per_s\": z} (with --profile also \"layers\": [{\"name\", \"op\",\n"
    "                 \"algo\", \"ms\"}, ...])\n"
    "  --profile      also report the mean time of every plan step over the timed runs\n"
    "  -h, --help     show this help\n";

typedef struct bench_opts {
    int batch, warmup, max_runs, json, profile;
    double seconds;
} bench_opts;

static int bench_opt(void *ctx, int argc, char **argv, int *i)
{
    bench_opts *o = ctx;
    const char *val, *name = argv[*i];
    int r;
    if (strcmp(name, "--json") == 0) {
        o->json = 1;
        return 1;
    }
    if (strcmp(name, "--profile") == 0) {
        o->profile = 1;
        return 1;
    }
    if ((r = opt_value(argc, argv, i, "--batch", &val)) != 0) {
        if (r > 0 && parse_int(val, 1, MAX_BATCH, &o->batch))
            return 10 +
                   usagef("bench", "--batch must be an integer in 1..%d, not '%s'", MAX_BATCH, val);
    } else if ((r = opt_value(argc, argv, i, "--warmup", &val)) != 0) {
        if (r > 0 && parse_int(val, 0, 1000000, &o->warmup))
            return 10 + usagef("bench", "--warmup must be an integer >= 0, not '%s'", val);
    } else if ((r = opt_value(argc, argv, i, "--max-runs", &val)) != 0) {
        if (r > 0 && parse_int(val, 1, 100000000, &o->max_runs))
            return 10 + usagef("bench", "--max-runs must be a positive integer, not '%s'", val);
    } else if ((r = opt_value(argc, argv, i, "--seconds", &val)) != 0) {
        if (r > 0 && (parse_double(val, 0.0, 86400.0, &o->seconds) || o->seconds <= 0))
            return 10 + usagef("bench", "--seconds must be a number > 0, not '%s'", val);
    }
    if (r < 0) return 10 + usagef("bench", "option %s needs a value", name);
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* GFLOP/s of a layer doing `flops` per image for `batch` images in `ms` (0 when unmeasured). */
static double layer_gflops(double flops, int batch, double ms)
{
    return ms > 0 ? flops * batch / (ms * 1e6) : 0.0;
}

/* The per-layer part of `bench --profile`: mean ms of each plan step over `runs` runs, with
 * its share of the summed step time and its arithmetic rate, one table row per step. */
static void bench_profile_table(const session *s, const double *sum, int runs, int batch)
{
    int n = cvy_model_layer_count(s->m);
    double total = 0;
    for (int l = 0; l < n; l++) total += sum[l];
    printf("\nprofile (mean per run over %d runs):\n", runs);
    printf("%4s  %-40s %-26s %-14s %10s %6s %8s\n", "#", "name", "op", "algo", "ms", "%",
           "GFLOP/s");
    for (int l = 0; l < n; l++) {
        cvy_layer_info li;
        if (cvy_model_layer(s->m, l, &li) != CVY_OK) continue;
        printf("%4d  %-40.40s %-26.26s %-14.14s %10.4f %5.1f%% %8.1f\n", l, li.name, li.op, li.algo,
               sum[l] / runs, total > 0 ? 100.0 * sum[l] / total : 0.0,
               layer_gflops(li.flops, batch, sum[l] / runs));
    }
    printf("%4s  %-40s %-26s %-14s %10.4f %5.1f%% %8.1f\n", "", "total", "", "", total / runs,
           100.0, layer_gflops(cvy_model_flops(s->m), batch, total / runs));
}

/* The same as JSON members: , "layers": [{"name", "op", "algo", "ms", "gflops"}, ...]. */
static void bench_profile_json(const session *s, const double *sum, int runs, int batch)
{
    int n = cvy_model_layer_count(s->m);
    fputs(", \"layers\": [", stdout);
    for (int l = 0; l < n; l++) {
        cvy_layer_info li;
        if (cvy_model_layer(s->m, l, &li) != CVY_OK) continue;
        fputs(l ? ", {\"name\": " : "{\"name\": ", stdout);
        json_string(stdout, li.name);
        fputs(", \"op\": ", stdout);
        json_string(stdout, li.op);
        fputs(", \"algo\": ", stdout);
        json_string(stdout, li.algo);
        fputs(", \"ms\": ", stdout);
        json_number(stdout, sum[l] / runs, "%.4f");
        fputs(", \"gflops\": ", stdout);
        json_number(stdout, layer_gflops(li.flops, batch, sum[l] / runs), "%.2f");
        fputs("}", stdout);
    }
    fputs("]", stdout);
}

/* `convoy bench`: latency of one batch size; median and p90 (nearest rank) over the timed
 * runs, throughput = batch / median. */
static int cmd_bench(int argc, char **argv)
{
    const char **pos = calloc((size_t)argc, sizeof *pos);
    int npos = 0;
    common_opts co;
    bench_opts o = {1, 5, DEFAULT_BENCH_MAX_RUNS, 0, 0, 3.0};
    if (!pos) return errorf("out of memory");
    int rc = parse_args("bench", argc, argv, bench_opt, &o, &co, pos, &npos);
    if (!rc && npos != 1)
        rc = usagef("bench", npos ? "expects exactly one MODEL" : "missing MODEL");
    const char *model = npos ? pos[0] : NULL;
    free(pos);
    if (rc) return rc;

    session s;
    if (open_model(model, co.threads, &s)) return 1;
    cvy_context *ctx = NULL;
    size_t osz = cvy_model_output_size(s.m), insz = cvy_model_input_size(s.m);
    float *out = malloc((size_t)o.batch * osz * sizeof *out);
    double *lat = malloc((size_t)o.max_runs * sizeof *lat);
    int nlayers = cvy_model_layer_count(s.m);
    double *layer_sum = calloc((size_t)nlayers + 1, sizeof *layer_sum);
    if (!out || !lat || !layer_sum)
        rc = errorf("out of memory");
    else
        rc = open_context(&s, o.batch, &ctx);
    if (!rc && o.profile) cvy_context_set_profiling(ctx, 1);

    int runs = 0;
    double elapsed = 0;
    if (!rc) {
        /* random input in [-1, 1): xorshift32 with a fixed seed */
        float *in = cvy_context_input(ctx);
        uint32_t x = 0x2545f491u;
        for (size_t i = 0; i < (size_t)o.batch * insz; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            in[i] = (float)((double)(x >> 8) / (double)(1u << 23) - 1.0);
        }
        cvy_error err = {{0}};
        for (int i = 0; !rc && i < o.warmup; i++)
            if (cvy_context_run(ctx, o.batch, NULL, out, &err) != CVY_OK)
                rc = errorf("run failed: %s", err.msg);
        double start = now_seconds(), t = start;
        while (!rc && runs < o.max_runs && (runs == 0 || t - start < o.seconds)) {
            if (cvy_context_run(ctx, o.batch, NULL, out, &err) != CVY_OK) {
                rc = errorf("run failed: %s", err.msg);
                break;
            }
            double t2 = now_seconds();
            lat[runs++] = (t2 - t) * 1e3;
            t = t2;
            const double *ms = cvy_context_layer_ms(ctx);
            for (int l = 0; ms && l < nlayers; l++) layer_sum[l] += ms[l];
        }
        elapsed = t - start;
    }
    if (!rc) {
        qsort(lat, (size_t)runs, sizeof *lat, cmp_double);
        double median = runs % 2 ? lat[runs / 2] : 0.5 * (lat[runs / 2 - 1] + lat[runs / 2]);
        int k90 = (int)ceil(0.9 * runs) - 1;
        double p90 = lat[k90 < 0 ? 0 : k90];
        double ips = median > 0 ? o.batch / (median * 1e-3) : 0;
        int threads = cvy_engine_threads(s.eng);
        if (o.json) {
            printf("{\"batch\": %d, \"threads\": %d, \"median_ms\": ", o.batch, threads);
            json_number(stdout, median, "%.4f");
            fputs(", \"p90_ms\": ", stdout);
            json_number(stdout, p90, "%.4f");
            fputs(", \"images_per_s\": ", stdout);
            json_number(stdout, ips, "%.2f");
            if (o.profile) bench_profile_json(&s, layer_sum, runs, o.batch);
            fputs("}\n", stdout);
        } else {
            printf("model:     %s (%s)\n", model, cvy_model_hash(s.m));
            printf("engine:    %s, %d threads\n", cvy_engine_isa(s.eng), threads);
            printf("batch:     %d\n", o.batch);
            printf("runs:      %d in %.2f s (after %d warm-up)\n", runs, elapsed, o.warmup);
            printf("median:    %.4f ms\n", median);
            printf("p90:       %.4f ms\n", p90);
            printf("images/s:  %.2f\n", ips);
            if (o.profile) bench_profile_table(&s, layer_sum, runs, o.batch);
        }
    }
    cvy_context_destroy(ctx);
    free(layer_sum);
    free(lat);
    free(out);
    close_model(&s);
    return finish_stdout(rc);
}

/* ---- eval -------------------------------------------------------------------------------- */

static const char HELP_EVAL[] =
    "usage: convoy eval [--batch N] [--threads T] MODEL IMAGES.idx[.gz] LABELS.idx[.gz]\n"
    "\n"
    "Top-1 accuracy over an IDX data set (MNIST / Fashion-MNIST format, plain or gzip).\n"
    "Each gray image goes through the model's preprocessing. Prints\n"
    "\"accuracy: 0.9123 (9123/10000)\"; a progress bar is drawn on stderr when it is a\n"
    "terminal.\n"
    "\n"
    "options:\n"
    "  --batch N     images per run (default 64)\n"
    "  --threads T   engine threads (0 = all cores)\n"
    "  -h, --help    show this help\n";

static int eval_opt(void *ctx, int argc, char **argv, int *i)
{
    int *batch = ctx;
    const char *val;
    int r = opt_value(argc, argv, i, "--batch", &val);
    if (r < 0) return 10 + usagef("eval", "option --batch needs a value");
    if (r > 0 && parse_int(val, 1, MAX_BATCH, batch))
        return 10 + usagef("eval", "--batch must be an integer in 1..%d, not '%s'", MAX_BATCH, val);
    return r;
}

/* Draws "[####      ] done/total" on stderr (a terminal). */
static void progress(int done, int total)
{
    int width = 40, fill = total ? (int)((long long)done * width / total) : width;
    fprintf(stderr, "\r[%.*s%*s] %d/%d", fill, "########################################",
            width - fill, "", done, total);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* `convoy eval`: top-1 accuracy over an IDX image/label pair. */
static int cmd_eval(int argc, char **argv)
{
    const char **pos = calloc((size_t)argc, sizeof *pos);
    int npos = 0, batch = 64;
    common_opts co;
    if (!pos) return errorf("out of memory");
    int rc = parse_args("eval", argc, argv, eval_opt, &batch, &co, pos, &npos);
    if (!rc && npos != 3)
        rc = usagef("eval", "expects MODEL IMAGES LABELS, got %d argument%s", npos,
                    npos == 1 ? "" : "s");
    const char *model = rc ? NULL : pos[0], *ipath = rc ? NULL : pos[1];
    const char *lpath = rc ? NULL : pos[2];
    free(pos);
    if (rc) return rc;

    idx_images im = {0};
    idx_labels lb = {0};
    cvy_error err = {{0}};
    if (idx_read_images(ipath, &im, &err) || idx_read_labels(lpath, &lb, &err))
        rc = errorf("%s", err.msg);
    else if (im.count != lb.count)
        rc = errorf("%s has %d images but %s has %d labels", ipath, im.count, lpath, lb.count);
    else if (im.count == 0)
        rc = errorf("%s: no images", ipath);
    session s = {NULL, NULL};
    if (!rc) rc = open_model(model, co.threads, &s);
    if (rc) {
        idx_images_free(&im);
        idx_labels_free(&lb);
        return rc;
    }

    if (batch > im.count) batch = im.count;
    cvy_context *ctx = NULL;
    size_t insz = cvy_model_input_size(s.m), osz = cvy_model_output_size(s.m);
    size_t img_bytes = (size_t)im.rows * (size_t)im.cols;
    float *out = malloc((size_t)batch * osz * sizeof *out);
    if (!out)
        rc = errorf("out of memory");
    else
        rc = open_context(&s, batch, &ctx);
    int tty = isatty(STDERR_FILENO), correct = 0;
    for (int base = 0; !rc && base < im.count; base += batch) {
        int cnt = im.count - base < batch ? im.count - base : batch;
        float *in = cvy_context_input(ctx);
        for (int i = 0; !rc && i < cnt; i++) {
            cvy_image img = {im.cols, im.rows, 1, im.pixels + (size_t)(base + i) * img_bytes};
            if (cvy_image_preprocess(s.m, &img, in + (size_t)i * insz, &err) != CVY_OK)
                rc = errorf("%s: image %d: %s", ipath, base + i, err.msg);
        }
        if (!rc && cvy_context_run(ctx, cnt, NULL, out, &err) != CVY_OK)
            rc = errorf("run failed: %s", err.msg);
        for (int i = 0; !rc && i < cnt; i++) {
            cvy_prediction p;
            if (cvy_model_topk(s.m, out + (size_t)i * osz, 1, &p) == 1 &&
                p.index == lb.labels[base + i])
                correct++;
        }
        if (!rc && tty &&
            ((base + cnt) * 100LL / im.count != base * 100LL / im.count || base + cnt == im.count))
            progress(base + cnt, im.count);
    }
    if (!rc) printf("accuracy: %.4f (%d/%d)\n", (double)correct / im.count, correct, im.count);
    cvy_context_destroy(ctx);
    free(out);
    close_model(&s);
    idx_images_free(&im);
    idx_labels_free(&lb);
    return finish_stdout(rc);
}

/* ---- main -------------------------------------------------------------------------------- */

/* ---- convert ----------------------------------------------------------------------------- */

static const char HELP_CONVERT[] =
    "usage: convoy convert MODEL.onnx OUT.cvy [options]\n"
    "\n"
    "Converts an ONNX model (opsets 7 to 17, as exported by PyTorch and others) into a\n"
    "self-contained .cvy: weights from the initializers, shape arithmetic folded for the\n"
    "fixed input size, batch-norm and activations fused when loaded. The result is checked\n"
    "by loading it before it is written. Unsupported operators or attributes are reported\n"
    "with the node, operator and attribute.\n"
    "\n"
    "options:\n"
    "  --labels FILE     class labels, one per line (count must equal the outputs)\n"
    "  --size HxW        input height x width (required when the model's H/W are dynamic)\n"
    "  --color MODE      rgb, bgr or gray (default: rgb for 3 channels, gray for 1)\n"
    "  --mean a,b,c      per-channel mean subtracted after scaling (default 0,0,0)\n"
    "  --std a,b,c       per-channel divisor (default 1,1,1)\n"
    "  --scale S         pixel scale applied first (default 1/255 = 0.00392157)\n"
    "  --resize MODE     stretch (default) or shorter-side-crop\n"
    "  -h, --help        show this help\n";

/* `convoy convert`: ONNX in, .cvy out (validated by loading it). */
static int cmd_convert(int argc, char **argv)
{
    cvy_onnx_options o = cvy_onnx_default_options();
    const char *pos[2] = {NULL, NULL};
    int npos = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL,
                   *names[] = {"--labels", "--size",  "--color", "--mean",
                               "--std",    "--scale", "--resize"};
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (npos == 2) return usagef("convert", "expects MODEL.onnx and OUT.cvy only");
            pos[npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        int k = 0, r = 0;
        for (; k < 7 && r == 0; k++) r = opt_value(argc, argv, &i, names[k], &val);
        if (r < 0) return usagef("convert", "option %s needs a value", a);
        if (r == 0) {
            r = opt_value(argc, argv, &i, "--threads", &val); /* accepted, unused */
            if (r < 0) return usagef("convert", "option --threads needs a value");
            if (r == 0) return usagef("convert", "unknown option '%s'", a);
            continue;
        }
        const char *opt = names[k - 1];
        char tail = 0;
        double d;
        if (k == 1) {
            o.labels_path = val;
        } else if (k == 2) {
            if (sscanf(val, "%dx%d%c", &o.height, &o.width, &tail) != 2 || o.height < 1 ||
                o.width < 1 || o.height > 16384 || o.width > 16384)
                return usagef("convert", "--size must be HxW (1..16384), not '%s'", val);
        } else if (k == 3) {
            o.color = !strcmp(val, "rgb")    ? CVY_COLOR_RGB
                      : !strcmp(val, "bgr")  ? CVY_COLOR_BGR
                      : !strcmp(val, "gray") ? CVY_COLOR_GRAY
                                             : -2;
            if (o.color == -2)
                return usagef("convert", "--color must be rgb, bgr or gray, not '%s'", val);
        } else if (k == 4 || k == 5) {
            float *v = k == 4 ? o.mean : o.std;
            int n = sscanf(val, "%f,%f,%f%c", &v[0], &v[1], &v[2], &tail);
            if (n == 1) v[1] = v[2] = v[0];
            if ((n != 1 && n != 3) || !isfinite(v[0]) || !isfinite(v[1]) || !isfinite(v[2]) ||
                (k == 5 && (v[0] == 0 || v[1] == 0 || v[2] == 0)))
                return usagef("convert", "%s must be one or three %snumbers a,b,c, not '%s'", opt,
                              k == 5 ? "non-zero " : "", val);
        } else if (k == 6) {
            if (parse_double(val, -1e6, 1e6, &d) || d == 0)
                return usagef("convert", "--scale must be a non-zero number, not '%s'", val);
            o.scale = (float)d;
        } else {
            if (!strcmp(val, "stretch"))
                o.resize = CVY_RESIZE_STRETCH;
            else if (!strcmp(val, "shorter-side-crop"))
                o.resize = CVY_RESIZE_SHORTER_CROP;
            else
                return usagef("convert",
                              "--resize must be stretch or shorter-side-crop, not "
                              "'%s'",
                              val);
        }
    }
    if (npos != 2) return usagef("convert", "expects MODEL.onnx and OUT.cvy");
    cvy_error err = {{0}};
    uint8_t *buf = NULL;
    size_t size = 0;
    if (cvy_onnx_convert(pos[0], &o, &buf, &size, &err) != CVY_OK)
        return errorf("cannot convert %s", err.msg);
    cvy_engine_params ep = cvy_engine_default_params();
    ep.threads = 1;
    cvy_engine *eng = NULL;
    cvy_model *m = NULL;
    int rc = 0;
    if (cvy_engine_create(&ep, &eng, &err) != CVY_OK)
        rc = errorf("cannot start the engine: %s", err.msg);
    else if (cvy_model_load_memory(eng, buf, size, &m, &err) != CVY_OK)
        rc = errorf("the converted model does not load: %s", err.msg);
    FILE *f = rc ? NULL : fopen(pos[1], "wb");
    if (!rc && !f) rc = errorf("cannot write '%s': %s", pos[1], strerror(errno));
    if (f && (fwrite(buf, 1, size, f) != size) + (fclose(f) != 0))
        rc = errorf("cannot write '%s': %s", pos[1], strerror(errno));
    if (!rc) {
        int c, h, w;
        cvy_model_input_shape(m, &c, &h, &w);
        printf("%s: %zu bytes, input %dx%dx%d, %zu outputs, %d layers, %zu parameters\n", pos[1],
               size, c, h, w, cvy_model_output_size(m), cvy_model_layer_count(m),
               cvy_model_param_count(m));
        rc = finish_stdout(0);
    }
    cvy_model_free(m);
    cvy_engine_destroy(eng);
    free(buf);
    return rc;
}

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"inspect", cmd_inspect, HELP_INSPECT, "show a model's input, preprocessing and layers"},
    {"classify", cmd_classify, HELP_CLASSIFY, "classify image files"},
    {"run", cmd_run, HELP_RUN, "run a preprocessed .npy batch, write the raw output .npy"},
    {"bench", cmd_bench, HELP_BENCH, "measure latency and throughput"},
    {"eval", cmd_eval, HELP_EVAL, "top-1 accuracy on an IDX (MNIST-format) data set"},
    {"convert", cmd_convert, HELP_CONVERT, "convert an ONNX model into a .cvy file"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

/* Prints the top-level help to f. */
static void main_help(FILE *f)
{
    fputs("usage: convoy [--threads N] COMMAND [OPTIONS] ARGS...\n"
          "\n"
          "convoy runs CNN models stored as .cvy files on the CPU.\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fputs("  help CMD   show the help of a command\n"
          "\n"
          "global options:\n"
          "  --threads N   engine threads for every command (0 = all cores, the default)\n"
          "  -h, --help    show this help\n"
          "\n"
          "Run 'convoy COMMAND --help' for a command's options. Environment: CONVOY_ISA=\n"
          "ref|avx2|avx512 caps the instruction set.\n",
          f);
}

/* The command called name, or NULL. */
static const command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0) return &COMMANDS[i];
    return NULL;
}

/* Global options, then dispatch to the command (or print help). */
int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *val;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            main_help(stdout);
            return finish_stdout(0);
        }
        int r = opt_value(argc, argv, &i, "--threads", &val);
        if (r < 0 || (r > 0 && parse_int(val, 0, MAX_THREADS, &g_threads))) {
            fprintf(stderr, "convoy: --threads needs an integer in 0..%d\n", MAX_THREADS);
            return EXIT_USAGE;
        }
        if (r == 0) {
            fprintf(stderr, "convoy: unknown option '%s' (see 'convoy --help')\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fputs("convoy: missing command (see 'convoy --help')\n", stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[i], "help") == 0) {
        const command *c = i + 1 < argc ? find_command(argv[i + 1]) : NULL;
        if (i + 1 < argc && !c) {
            fprintf(stderr, "convoy: unknown command '%s' (see 'convoy --help')\n", argv[i + 1]);
            return EXIT_USAGE;
        }
        if (c)
            fputs(c->help, stdout);
        else
            main_help(stdout);
        return finish_stdout(0);
    }
    const command *cmd = find_command(argv[i]);
    if (!cmd) {
        fprintf(stderr, "convoy: unknown command '%s' (see 'convoy --help')\n", argv[i]);
        return EXIT_USAGE;
    }
    if (wants_help(argc - i, argv + i)) {
        fputs(cmd->help, stdout);
        return finish_stdout(0);
    }
    return cmd->fn(argc - i, argv + i);
}
