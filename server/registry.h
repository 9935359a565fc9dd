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
 * models that failed to load (0 = all fine), or -1 when the directory cannot be read. */
int srv_registry_scan(srv_registry *r);

enum { SRV_ACQ_OK = 0, SRV_ACQ_UNKNOWN = 1, SRV_ACQ_AMBIGUOUS = 2, SRV_ACQ_NOT_READY = 3 };

/* Returns a referenced current version of model `name` (NULL or "" = the default model: the
 * configured one, else the only one loaded), or NULL with *why set. Thread-safe. */
srv_model *srv_registry_acquire(srv_registry *r, const char *name, int *why);
void srv_model_release(srv_model *m);

/* JSON description of one model (NULL if unknown), or of all when name is NULL (an array).
 * Caller owns the result. */
json_t *srv_registry_describe(srv_registry *r, const char *name);

/* 1 when every model is loaded (at least one) and no scan is running; else 0 and a reason. */
int srv_registry_ready(srv_registry *r, char *why, size_t n);

/* Images waiting for model `name`, or -1 (signature matches srv_metrics_depth_fn). */
long srv_registry_depth(const char *name, void *registry);

/* Stops every current batcher: queued jobs complete with SRV_JOB_SHUTDOWN. */
void srv_registry_stop(srv_registry *r);

/* Releases every version. Call when no request is running any more. */
void srv_registry_destroy(srv_registry *r);

#endif
