/*
 * config.c - table-driven configuration (see config.h).
 */
#include "config.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OPT_INT, OPT_LONG, OPT_STR, OPT_LEVEL, OPT_FLAG } opt_type;

typedef struct opt {
    const char *name; /* CLI "--name", file key, env CONVOY_NAME (dashes -> underscores) */
    opt_type type;
    size_t offset;
    size_t size; /* strings: buffer size */
    const char *def;
    long min, max;
    const char *help;
} opt;

#define F(field) offsetof(srv_config, field), sizeof(((srv_config *)0)->field)

static const opt options[] = {
    {"config", OPT_STR, F(config), "", 0, 0, "JSON config file"},
    {"models", OPT_STR, F(models), "models", 0, 0, "model directory (<name>.cvy files)"},
    {"listen", OPT_STR, F(listen), "127.0.0.1:8080", 0, 0, "HOST:PORT to listen on"},
    {"default-model", OPT_STR, F(default_model), "", 0, 0, "model for requests naming none"},
    {"threads", OPT_INT, F(threads), "0", 0, 1024, "engine threads (0 = all CPUs)"},
    {"http-threads", OPT_INT, F(http_threads), "2", 1, 256, "HTTP thread pool size"},
    {"max-batch", OPT_INT, F(max_batch), "16", 1, 4096, "images per forward pass"},
    {"max-delay-us", OPT_INT, F(max_delay_us), "0", 0, 10000000, "wait for a fuller batch (us)"},
    {"max-queue", OPT_INT, F(max_queue), "1024", 1, 10000000, "queued images per model before 503"},
    {"max-body", OPT_LONG, F(max_body), "16777216", 1, 1L << 40, "request body limit (bytes)"},
    {"max-pixels", OPT_LONG, F(max_pixels), "16777216", 1, 1L << 40, "pixels per image limit"},
    {"max-images", OPT_INT, F(max_images), "256", 1, 1000000, "images per request limit"},
    {"max-connections", OPT_INT, F(max_connections), "1024", 1, 1000000,
     "open connections (503 beyond)"},
    {"timeout-ms", OPT_INT, F(timeout_ms), "30000", 0, 86400000, "default deadline (0 = none)"},
    {"drain-ms", OPT_INT, F(drain_ms), "10000", 0, 3600000, "max wait for requests on SIGTERM"},
    {"top-k", OPT_INT, F(top_k), "5", 1, 1000000, "default predictions per image"},
    {"max-header", OPT_INT, F(max_header), "8192", 1024, 1048576,
     "request line + headers limit (bytes, 431)"},
    {"idle-timeout-s", OPT_INT, F(idle_timeout_s), "30", 1, 86400,
     "close a connection silent this long"},
    {"request-timeout-s", OPT_INT, F(request_timeout_s), "60", 0, 86400,
     "receive each request within this (0 = no limit)"},
    {"watch", OPT_INT, F(watch), "1", 0, 1, "reload models when their files change (inotify)"},
    {"watch-debounce-ms", OPT_INT, F(watch_debounce_ms), "200", 0, 60000,
     "quiet time after a file event before loading"},
    {"unload-grace-ms", OPT_INT, F(unload_grace_ms), "5000", -1, 86400000,
     "unload a deleted model file after this (-1 = only by API)"},
    {"admin-token", OPT_STR, F(admin_token), "", 0, 0,
     "bearer token for /v2/repository (none = loopback only)"},
    {"log-level", OPT_LEVEL, F(log_level), "info", 0, 0, "debug, info, warn or error"},
    {"print-config", OPT_FLAG, F(print_config), "0", 0, 1, "print the settings and exit"},
};
#define NOPT (sizeof options / sizeof options[0])

/* Stores text s into option o. Returns 0 or -1 with a message naming the option. */
static int opt_set(srv_config *cfg, const opt *o, const char *s, const char *source)
{
    char *p = (char *)cfg + o->offset;
    switch (o->type) {
    case OPT_STR:
        if (strlen(s) >= o->size) {
            fprintf(stderr, "convoyd: option %s (%s): value too long (max %zu bytes)\n", o->name,
                    source, o->size - 1);
            return -1;
        }
        memcpy(p, s, strlen(s) + 1);
        return 0;
    case OPT_LEVEL: {
        int l = srv_log_parse_level(s);
        if (l < 0) {
            fprintf(stderr,
                    "convoyd: option %s (%s): '%s' is not one of debug, info, warn, error\n",
                    o->name, source, s);
            return -1;
        }
        *(int *)p = l;
        return 0;
    }
    case OPT_INT:
    case OPT_LONG:
    case OPT_FLAG: {
        if (o->type == OPT_FLAG && (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0)) {
            s = "1";
        } else if (o->type == OPT_FLAG && (strcmp(s, "false") == 0 || strcmp(s, "no") == 0)) {
            s = "0";
        }
        errno = 0;
        char *end;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || !*s || isspace((unsigned char)*s)) {
            fprintf(stderr, "convoyd: option %s (%s): '%s' is not an integer\n", o->name, source,
                    s);
            return -1;
        }
        if (v < o->min || v > o->max) {
            fprintf(stderr, "convoyd: option %s (%s): %ld is out of range [%ld, %ld]\n", o->name,
                    source, v, o->min, o->max);
            return -1;
        }
        if (o->type == OPT_LONG)
            *(long *)p = v;
        else
            *(int *)p = (int)v;
        return 0;
    }
    }
    return -1;
}

static const opt *opt_find(const char *name)
{
    for (size_t i = 0; i < NOPT; i++) {
        const char *a = options[i].name, *b = name;
        while (*a && (*a == *b || (*a == '-' && *b == '_'))) {
            a++;
            b++;
        }
        if (!*a && !*b) return &options[i];
    }
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: convoyd [options]\n");
    for (size_t i = 0; i < NOPT; i++) {
        const opt *o = &options[i];
        fprintf(f, "  --%-16s %s (default: %s)\n", o->name, o->help,
                o->type == OPT_FLAG ? "off" : (*o->def ? o->def : "none"));
    }
    fprintf(f, "Every option is also read from the JSON config file (same key) and from\n"
               "CONVOY_<NAME> (upper case, '-' -> '_'); CLI > env > file > defaults.\n");
}

static int load_file(srv_config *cfg, const char *path)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        fprintf(stderr, "convoyd: option config: cannot read %s: %s (line %d)\n", path, je.text,
                je.line);
        return -1;
    }
    if (!json_is_object(root)) {
        fprintf(stderr, "convoyd: option config: %s is not a JSON object\n", path);
        json_decref(root);
        return -1;
    }
    const char *key;
    json_t *val;
    char src[600];
    snprintf(src, sizeof src, "file %s", path);
    json_object_foreach(root, key, val)
    {
        const opt *o = opt_find(key);
        if (!o || strcmp(o->name, "config") == 0 || o->type == OPT_FLAG) {
            fprintf(stderr, "convoyd: %s: unknown option '%s'\n", src, key);
            json_decref(root);
            return -1;
        }
        char buf[64];
        const char *s;
        if (json_is_string(val)) {
            s = json_string_value(val);
        } else if (json_is_integer(val)) {
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(val));
            s = buf;
        } else {
            fprintf(stderr, "convoyd: option %s (%s): expected a string or an integer\n", o->name,
                    src);
            json_decref(root);
            return -1;
        }
        if (opt_set(cfg, o, s, src) < 0) {
            json_decref(root);
            return -1;
        }
    }
    json_decref(root);
    return 0;
}

static void env_name(const opt *o, char *buf, size_t n)
{
    size_t j = (size_t)snprintf(buf, n, "CONVOY_");
    for (const char *c = o->name; *c && j + 1 < n; c++)
        buf[j++] = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
    buf[j] = 0;
}

int srv_config_load(srv_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPT; i++)
        if (opt_set(cfg, &options[i], options[i].def, "default") < 0) return -1;

    /* First pass over argv: syntax, --help and the config file location. */
    const char *cli_config = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "convoyd: unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name) {
            fprintf(stderr, "convoyd: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        memcpy(name, a + 2, len);
        name[len] = 0;
        const opt *o = opt_find(name);
        if (!o) {
            fprintf(stderr, "convoyd: unknown option '--%s' (see --help)\n", name);
            return -1;
        }
        if (o->type != OPT_FLAG && !eq) {
            if (i + 1 >= argc) {
                fprintf(stderr, "convoyd: option %s (command line): missing value\n", o->name);
                return -1;
            }
            i++;
        }
        if (strcmp(o->name, "config") == 0) cli_config = eq ? eq + 1 : argv[i];
    }

    char ename[64];
    env_name(opt_find("config"), ename, sizeof ename);
    const char *file = cli_config ? cli_config : getenv(ename);
    if (file && *file) {
        if (load_file(cfg, file) < 0) return -1;
        if (opt_set(cfg, opt_find("config"), file, "command line") < 0) return -1;
    }

    for (size_t i = 0; i < NOPT; i++) {
        const opt *o = &options[i];
        if (strcmp(o->name, "config") == 0) continue;
        env_name(o, ename, sizeof ename);
        const char *v = getenv(ename);
        char src[80];
        snprintf(src, sizeof src, "environment %s", ename);
        if (v && opt_set(cfg, o, v, src) < 0) return -1;
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i] + 2;
        const char *eq = strchr(a, '=');
        char name[64];
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        memcpy(name, a, len);
        name[len] = 0;
        const opt *o = opt_find(name);
        const char *v;
        if (o->type == OPT_FLAG)
            v = eq ? eq + 1 : "1";
        else
            v = eq ? eq + 1 : argv[++i];
        if (strcmp(o->name, "config") == 0) continue;
        if (opt_set(cfg, o, v, "command line") < 0) return -1;
    }

    /* Cross-option checks. */
    const char *colon = strrchr(cfg->listen, ':');
    char *pend = NULL;
    long port = colon ? strtol(colon + 1, &pend, 10) : -1;
    if (!colon || !colon[1] || *pend || port < 0 || port > 65535) {
        fprintf(stderr, "convoyd: option listen: '%s' is not HOST:PORT (port 0-65535)\n",
                cfg->listen);
        return -1;
    }
    if (!*cfg->models) {
        fprintf(stderr, "convoyd: option models: empty directory name\n");
        return -1;
    }
    if (cfg->print_config) {
        srv_config_print(cfg, stdout);
        return 1;
    }
    return 0;
}

void srv_config_print(const srv_config *cfg, FILE *f)
{
    json_t *o = json_object();
    for (size_t i = 0; i < NOPT; i++) {
        const opt *op = &options[i];
        const char *p = (const char *)cfg + op->offset;
        switch (op->type) {
        case OPT_STR:
            /* never print the secret itself */
            if (strcmp(op->name, "admin-token") == 0 && *p)
                json_object_set_new(o, op->name, json_string("(set)"));
            else
                json_object_set_new(o, op->name, json_string(p));
            break;
        case OPT_LEVEL:
            json_object_set_new(o, op->name, json_string(srv_log_level_name(*(const int *)p)));
            break;
        case OPT_INT:
            json_object_set_new(o, op->name, json_integer(*(const int *)p));
            break;
        case OPT_LONG:
            json_object_set_new(o, op->name, json_integer(*(const long *)p));
            break;
        case OPT_FLAG:
            break;
        }
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fprintf(f, "%s\n", s ? s : "{}");
    free(s);
    json_decref(o);
}
