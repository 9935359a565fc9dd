/*
 * registry.h - the models being served, by name, loaded from the model directory.
 *
 * Each model file <dir>/<name>.cvy becomes an entry. An entry points at its current version
 * (srv_model): the loaded cvy_model, its batcher and its metrics slot. Versions are
 * reference-counted: the registry holds one reference, and every request that uses a
 * version holds one from srv_registry_acquire until srv_model_release. A rescan (SIGHUP)
 * loads new files and reloads changed ones (same name, different content hash); the new
 * version replaces the old atomically, the old one is freed - its batcher drained - when its
 * last request releases it. A failed reload keeps the old version and records the error.
 *
 * Hot reload (see watch.h for the inotify side): a load reads the file once into memory,
 * validates it (header and section checksums, a warm-up forward pass through a fresh context,
 * the golden self-test the file may carry), then swaps it in under the registry lock. Loads,
 * reloads and unloads of all models are serialized by one lock; requests never wait for it.
 */
#ifndef SRV_REGISTRY_H
#define SRV_REGISTRY_H

#include "batcher.h"
#include "config.h"
#include "convoy.h"
#include "metrics.h"

#include <jansson.h>
#include <stdatomic.h>

typedef struct srv_model {
    atomic_int refs;
    char name[128];
    char hash[17];
    cvy_model *m;
    srv_batcher *b;
    srv_metrics_model *mm;
    double loaded_at; /* Unix time */
} srv_model;

typedef struct srv_registry srv_registry;

srv_registry *srv_registry_create(cvy_engine *eng, const srv_config *cfg);

/* Reads the model directory: loads new files, reloads changed ones. Returns the number of
 * models that failed to load (0 = all fine), or -1 when the directory cannot be read.
 * Models unloaded explicitly (srv_registry_unload with forget = 0) stay unloaded. */
int srv_registry_scan(srv_registry *r);

/* How srv_registry_load treats the file. */
enum {
    SRV_LOAD_SCAN = 0,     /* skip unchanged files (same inode, size, mtime) and unloaded models */
    SRV_LOAD_WATCH = 1,    /* as SCAN, and a file shorter than its header says is INCOMPLETE */
    SRV_LOAD_EXPLICIT = 2, /* always read the file; loads an unloaded model again */
};
/* Results of srv_registry_load. */
enum {
    SRV_LOADED = 0,     /* a new version serves */
    SRV_UNCHANGED = 1,  /* nothing to do (same file or same content hash) */
    SRV_INCOMPLETE = 2, /* WATCH: still being written; nothing recorded */
    SRV_FAILED = 3,     /* the old version (if any) keeps serving; last_error set, counted */
    SRV_MISSING = 4,    /* no file <dir>/<name>.cvy */
    SRV_SKIPPED = 5,    /* unloaded explicitly; only SRV_LOAD_EXPLICIT loads it again */
};
/* Loads or reloads the model `name` from <dir>/<name>.cvy. msg (may be NULL) receives a
 * human-readable outcome. Thread-safe; blocks while another load or unload runs. */
int srv_registry_load(srv_registry *r, const char *name, int mode, char *msg, size_t msgn);

/* Stops serving model `name`: its version is released (freed after its last request). With
 * forget the entry disappears (file deleted), else it stays listed as "unloaded" until an
 * explicit load. Returns 0, or -1 when the model is unknown. */
int srv_registry_unload(srv_registry *r, const char *name, int forget);

/* Triton repository index: [{name, version, state, reason}] for every model file and entry;
 * ready_only lists only models that serve. Caller owns the result. */
json_t *srv_registry_index(srv_registry *r, int ready_only);

/* 1 when name may name a model file: [A-Za-z0-9._-]+, no leading '.', no "..", < 128 bytes. */
int srv_model_name_ok(const char *name);

/* The file that holds model `name` in dir: <name>.cvy, else <name>.onnx (returns 1 then, 0
 * for .cvy), written to path. */
int srv_model_path(const char *dir, const char *name, char *path, size_t n);

/* If file (a directory entry) belongs to a model - <name>.cvy (1), <name>.onnx (2) or the
 * sidecar <name>.json (3) - writes the name and returns the kind; else 0. */
int srv_model_file_name(const char *file, char *name, size_t n);

enum { SRV_ACQ_OK = 0, SRV_ACQ_UNKNOWN = 1, SRV_ACQ_AMBIGUOUS = 2, SRV_ACQ_NOT_READY = 3 };

/* Returns a referenced current version of model `name` (NULL or "" = the default model: the
 * configured one, else the only one loaded), or NULL with *why set. Thread-safe. */
srv_model *srv_registry_acquire(srv_registry *r, const char *name, int *why);
void srv_model_release(srv_model *m);

/* JSON description of one model (NULL if unknown), or of all when name is NULL (an array).
 * Caller owns the result. */
json_t *srv_registry_describe(srv_registry *r, const char *name);

/* 1 once the first scan finished and every model that should serve has a serving version (at
 * least one; a reload in progress does not count against it; a model that failed with no
 * version to fall back on does); else 0 and a reason. */
int srv_registry_ready(srv_registry *r, char *why, size_t n);

/* Images waiting for model `name`, or -1 (signature matches srv_metrics_depth_fn). */
long srv_registry_depth(const char *name, void *registry);

/* Stops every current batcher: queued jobs complete with SRV_JOB_SHUTDOWN. */
void srv_registry_stop(srv_registry *r);

/* Releases every version. Call when no request is running any more. */
void srv_registry_destroy(srv_registry *r);

#endif
