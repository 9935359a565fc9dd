/*
 * notify.c - systemd notification protocol (see notify.h).
 */
#include "notify.h"
#include "batcher.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running; /* thread started and not yet joined */
    int quit;
    srv_registry *reg;
    uint64_t watchdog_us; /* 0 = no watchdog */
    atomic_int draining;
    char status[256]; /* last STATUS= sent by the thread */
} nt = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* 1 when systemd listens (NOTIFY_SOCKET set); sd_notify is a no-op otherwise anyway, but this
 * also skips building the messages and the thread. */
static int enabled(void)
{
    const char *s = getenv("NOTIFY_SOCKET");
    return s && *s;
}

uint64_t srv_notify_watchdog_interval_us(uint64_t usec)
{
    uint64_t t = usec / 4;
    return t < 1000 ? 1000 : t;
}

/* "N/M models loaded" from the registry's description. */
static void models_summary(srv_registry *r, char *buf, size_t n)
{
    json_t *all = srv_registry_describe(r, NULL);
    size_t total = json_array_size(all), ready = 0, i;
    json_t *m;
    json_array_foreach(all, i, m)
    {
        const char *st = json_string_value(json_object_get(m, "state"));
        if (st && strcmp(st, "ready") == 0) ready++;
    }
    json_decref(all);
    snprintf(buf, n, "%zu/%zu models loaded", ready, total);
}

void srv_notify_ready(srv_registry *r)
{
    if (!enabled()) return;
    char why[300], models[64];
    models_summary(r, models, sizeof models);
    if (srv_registry_ready(r, why, sizeof why))
        sd_notifyf(0, "READY=1\nSTATUS=ready: %s", models);
    else
        sd_notifyf(0, "READY=1\nSTATUS=not ready (%s): %s", models, why);
}

void srv_notify_reloading(void)
{
    if (!enabled()) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading models",
               (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
}

void srv_notify_stopping(long in_flight)
{
    atomic_store(&nt.draining, 1);
    if (!enabled()) return;
    sd_notifyf(0, "STOPPING=1\nSTATUS=draining: %ld requests in flight", in_flight);
}

/* One tick: watchdog check, ping when healthy, STATUS= when it changed. */
static void tick(void)
{
    long queued = 0;
    int stalled = srv_batcher_watchdog(&queued);
    char status[256], models[64];
    models_summary(nt.reg, models, sizeof models);
    if (stalled)
        snprintf(status, sizeof status, "stalled: %d batch thread(s) made no progress; %s, %ld images queued",
                 stalled, models, queued);
    else if (atomic_load(&nt.draining))
        snprintf(status, sizeof status, "draining: %s, %ld images queued", models, queued);
    else
        snprintf(status, sizeof status, "%s, %ld images queued", models, queued);
    int changed = strcmp(status, nt.status) != 0;
    if (changed) snprintf(nt.status, sizeof nt.status, "%s", status);
    if (stalled && changed)
        srv_log(SRV_LOG_ERROR, "watchdog: %d batch thread(s) stalled, withholding WATCHDOG=1",
                stalled);
    if (nt.watchdog_us && !stalled && changed)
        sd_notifyf(0, "WATCHDOG=1\nSTATUS=%s", status);
    else if (nt.watchdog_us && !stalled)
        sd_notify(0, "WATCHDOG=1");
    else if (changed)
        sd_notifyf(0, "STATUS=%s", status);
}

static void *notify_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "convoyd-notify");
    uint64_t iv = nt.watchdog_us ? srv_notify_watchdog_interval_us(nt.watchdog_us) : 1000000;
    pthread_mutex_lock(&nt.mu);
    while (!nt.quit) {
        pthread_mutex_unlock(&nt.mu);
        tick();
        pthread_mutex_lock(&nt.mu);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + iv * 1000;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        while (!nt.quit && pthread_cond_timedwait(&nt.cv, &nt.mu, &ts) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&nt.mu);
    return NULL;
}

int srv_notify_start(srv_registry *r)
{
    if (!enabled() || nt.running) return 0;
    nt.reg = r;
    nt.quit = 0;
    nt.status[0] = 0;
    uint64_t usec = 0;
    nt.watchdog_us = sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&nt.cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&nt.thread, NULL, notify_main, NULL);
    if (rc != 0) {
        srv_log(SRV_LOG_ERROR, "cannot start the systemd notify thread: %s", strerror(rc));
        pthread_cond_destroy(&nt.cv);
        return -1;
    }
    nt.running = 1;
    if (nt.watchdog_us)
        srv_log(SRV_LOG_INFO, "systemd watchdog: %.3f s, checking the batchers every %.3f s",
                (double)nt.watchdog_us / 1e6,
                (double)srv_notify_watchdog_interval_us(nt.watchdog_us) / 1e6);
    return 0;
}

void srv_notify_stop(void)
{
    if (!nt.running) return;
    pthread_mutex_lock(&nt.mu);
    nt.quit = 1;
    pthread_cond_signal(&nt.cv);
    pthread_mutex_unlock(&nt.mu);
    pthread_join(nt.thread, NULL);
    pthread_cond_destroy(&nt.cv);
    nt.running = 0;
}
