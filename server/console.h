/*
 * console.h - the web console: GET / serves one self-contained page (server/console.html,
 * compiled into the binary by server/console.mk) and GET /stats a small JSON summary of what
 * the daemon is doing, which the page polls.
 *
 * /stats: {"uptime_s", "requests_total", "requests_per_s", "mean_batch_size",
 *          "latency_ms": {"p50", "p99"}, "queue_depth", "models": [{name, version, state,
 *          queue_depth, last_error}]}
 * requests_* count inference requests (POST .../classify and /v2/.../infer, any status);
 * requests_per_s is over the last 5 whole seconds; latency and mean batch size come from the
 * last 1024 successful inference requests of the last 60 s (null when there were none).
 */
#ifndef SRV_CONSOLE_H
#define SRV_CONSOLE_H

#include "http.h"

/* Answers R_CONSOLE and R_STATS, on an HTTP thread. */
void srv_console_handle(srv_req *r);

/* Records one answered request (called once per request from the response path with its
 * latency in ms). Cheap: one short mutex section for inference requests, nothing otherwise.
 * Thread-safe. */
void srv_console_observe(const srv_req *r, double ms);

#endif
