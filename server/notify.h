/*
 * notify.h - every sd_notify(3) message convoyd sends to systemd, in one place.
 *
 * With NOTIFY_SOCKET unset (not under systemd Type=notify) every call is a cheap no-op.
 *
 *   READY=1      once the first scan of the model directory has finished (STATUS= says whether
 *                every model loaded), and again after each SIGHUP rescan;
 *   RELOADING=1  when a SIGHUP rescan starts (with MONOTONIC_USEC=);
 *   STOPPING=1   when the drain starts;
 *   STATUS=      models loaded and images queued, refreshed by the notify thread when it changes;
 *   WATCHDOG=1   when the service has WatchdogSec= (WATCHDOG_USEC, see sd_watchdog_enabled),
 *                every WATCHDOG_USEC/4, but only while every batcher makes progress: one whose
 *                images have been waiting since the previous check with no forward pass
 *                finished in between is stalled, and no ping is sent until it moves again, so
 *                systemd restarts a daemon whose batch threads hang. WatchdogSec must exceed
 *                the longest forward pass plus max-delay-us.
 *
 * The notify thread starts in srv_notify_start and must be joined with srv_notify_stop before
 * the registry is destroyed.
 */
#ifndef SRV_NOTIFY_H
#define SRV_NOTIFY_H

#include "registry.h"

#include <stdint.h>

/* Starts the notify thread (only when NOTIFY_SOCKET is set) for STATUS= updates and, when the
 * watchdog is enabled, WATCHDOG=1 pings. Returns 0, or -1 if the thread cannot start (logged;
 * the daemon runs on without it). */
int srv_notify_start(srv_registry *r);

/* READY=1 with a STATUS= line from srv_registry_ready (why is its reason when not ready). */
void srv_notify_ready(srv_registry *r);

/* RELOADING=1 (a SIGHUP rescan begins). Follow with srv_notify_ready. */
void srv_notify_reloading(void);

/* STOPPING=1 and a STATUS= line; the thread keeps pinging the watchdog during the drain. */
void srv_notify_stopping(long in_flight);

/* Joins the notify thread. Idempotent; call before srv_registry_destroy. */
void srv_notify_stop(void);

/* Interval between watchdog checks and pings for a WATCHDOG_USEC of usec (exposed for tests). */
uint64_t srv_notify_watchdog_interval_us(uint64_t usec);

#endif
