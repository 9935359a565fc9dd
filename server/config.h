/*
 * config.h - the daemon's settings.
 *
 * One table (config.c) drives defaults, the JSON config file (jansson), CONVOY_* environment
 * variables, command-line flags, validation and --print-config. Precedence:
 * CLI > env > file > defaults. An invalid value refuses to start with a message naming the
 * option and where it came from.
 */
#ifndef SRV_CONFIG_H
#define SRV_CONFIG_H

#include <stdio.h>

typedef struct srv_config {
    char config[512];        /* --config FILE (JSON); empty = none */
    char models[512];        /* model directory */
    char listen[256];        /* HOST:PORT; port 0 = any free port */
    char default_model[128]; /* model used when a request names none; empty = only one loaded */
    int threads;             /* engine threads; 0 = online CPUs */
    int http_threads;        /* libmicrohttpd thread pool size */
    int max_batch;           /* images per forward pass */
    int max_delay_us;        /* wait for a fuller batch; 0 = run what has queued at once */
    int max_queue;           /* images waiting per model before 503 */
    long max_body;           /* bytes per request body before 413 */
    long max_pixels;         /* pixels per image (from the header) before 413 */
    int max_images;          /* images per request before 413 */
    int max_connections;     /* concurrent connections */
    int timeout_ms;          /* default request deadline; 0 = none */
    int drain_ms;            /* bounded wait for in-flight requests on SIGTERM */
    int top_k;               /* default number of predictions per image */
    int idle_timeout_s;      /* close a connection after this long without a byte */
    int request_timeout_s;   /* a request must arrive whole within this (0 = no limit) */
    int max_header;          /* bytes of request line + headers */
    int watch;               /* inotify on the model directory: reload changed files */
    int watch_debounce_ms;   /* quiet time after a file event before loading it */
    int unload_grace_ms;     /* deleted file: unload after this; -1 = only by API */
    char admin_token[256];   /* bearer token for /v2/repository; empty = loopback only */
    int log_level;           /* SRV_LOG_* */
    int print_config;        /* --print-config: print the effective settings and exit */
} srv_config;

/* Builds the configuration from defaults, file, environment and argv. Returns 0 on success,
 * 1 when the program should exit 0 at once (--help, --print-config after printing), -1 on an
 * error (message already written to stderr). */
int srv_config_load(srv_config *cfg, int argc, char **argv);

/* Writes the effective settings as a JSON object. */
void srv_config_print(const srv_config *cfg, FILE *f);

#endif
