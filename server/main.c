/*
 * main.c - convoyd: configuration, startup, signals, drain.
 *
 * Signals: the handlers set flags and write a byte to a self-pipe. The main thread blocks
 * SIGTERM/SIGINT/SIGHUP while our threads are created (so they inherit the mask), then
 * unblocks them and waits on the pipe: threads started before main (OpenBLAS's, in a library
 * constructor) may still take a signal, and the pipe wakes the main thread whichever thread
 * ran the handler (sigsuspend would sleep on). SIGHUP rescans the model directory. SIGTERM/SIGINT drain: /readyz turns 503,
 * the listen socket closes, requests already accepted finish (answers close their
 * connections), and after at most drain-ms the batchers stop (anything still queued gets
 * 503) and the process exits 0. A second SIGTERM/SIGINT skips the rest of the wait.
 */
#include "config.h"
#include "http.h"
#include "log.h"
#include "notify.h"
#include "registry.h"
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_term, got_hup;
static int sig_pipe[2] = {-1, -1}; /* the handler writes, the main thread polls */

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_term++;
    if (sig_pipe[1] >= 0) {
        ssize_t n = write(sig_pipe[1], "s", 1); /* full pipe: a wake-up is pending anyway */
        (void)n;
    }
    errno = saved;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    srv_config cfg;
    int rc = srv_config_load(&cfg, argc, argv);
    if (rc != 0) return rc > 0 ? 0 : 2;
    srv_log_level = cfg.log_level;
    DIR *dir = opendir(cfg.models);
    if (!dir) {
        fprintf(stderr, "convoyd: option models: cannot read directory %s: %s\n", cfg.models,
                strerror(errno));
        return 2;
    }
    closedir(dir);
    signal(SIGPIPE, SIG_IGN);
    /* Waiting connections cost a descriptor each, not a thread: allow as many as we may. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        fprintf(stderr, "convoyd: cannot create a pipe: %s\n", strerror(errno));
        return 1;
    }
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigset_t waitmask = old;
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGHUP);

    cvy_engine_params ep = cvy_engine_default_params();
    ep.threads = cfg.threads;
    cvy_engine *eng = NULL;
    cvy_error err;
    if (cvy_engine_create(&ep, &eng, &err) != CVY_OK) {
        srv_log(SRV_LOG_ERROR, "cannot start the engine: %s", err.msg);
        return 1;
    }
    srv_registry *reg = srv_registry_create(eng, &cfg);
    if (!reg) {
        srv_log(SRV_LOG_ERROR, "out of memory");
        cvy_engine_destroy(eng);
        return 1;
    }
    srv_app app;
    memset(&app, 0, sizeof app);
    app.cfg = &cfg;
    app.reg = reg;
    char msg[512];
    if (srv_http_start(&app, msg, sizeof msg) < 0) {
        srv_log(SRV_LOG_ERROR, "%s", msg);
        fprintf(stderr, "convoyd: %s\n", msg);
        srv_registry_destroy(reg);
        cvy_engine_destroy(eng);
        return 1;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", cfg.listen);
    *strrchr(host, ':') = 0;
    srv_log(SRV_LOG_NOTICE,
            "convoyd listening on http://%s:%d (engine %s, %d threads; max-batch %d, "
            "max-delay-us %d, max-queue %d)",
            host, app.port, cvy_engine_isa(eng), cvy_engine_threads(eng), cfg.max_batch,
            cfg.max_delay_us, cfg.max_queue);

    srv_notify_start(reg); /* STATUS= and watchdog pings, also while the models load */
    /* hot reload: watch before the first scan so no change is missed */
    srv_watch *watch = NULL;
    if (cfg.watch && !(watch = srv_watch_start(reg, &cfg, msg, sizeof msg)))
        srv_log(SRV_LOG_WARN, "%s (changes load on SIGHUP only)", msg);
    int failures = srv_registry_scan(reg);
    if (failures < 0) {
        srv_log(SRV_LOG_ERROR, "option models: cannot read %s", cfg.models);
    } else {
        char why[512];
        if (srv_registry_ready(reg, why, sizeof why)) {
            srv_log(SRV_LOG_NOTICE, "ready");
        } else {
            srv_log(SRV_LOG_WARN, "not ready: %s", why);
        }
        srv_notify_ready(reg);
    }

    pthread_sigmask(SIG_SETMASK, &waitmask, NULL);
    while (!got_term) {
        struct pollfd pfd = {.fd = sig_pipe[0], .events = POLLIN};
        if (poll(&pfd, 1, -1) > 0) {
            char buf[64];
            while (read(sig_pipe[0], buf, sizeof buf) > 0) {
            }
        }
        if (got_hup && !got_term) {
            got_hup = 0;
            srv_log(SRV_LOG_INFO, "SIGHUP: rescanning %s", cfg.models);
            srv_notify_reloading();
            srv_registry_scan(reg);
            srv_notify_ready(reg);
        }
    }

    /* Drain. */
    int64_t t0 = srv_now_ns();
    srv_watch_stop(watch); /* no reloads while draining */
    atomic_store(&app.draining, 1);
    srv_notify_stopping(atomic_load(&app.active));
    srv_http_quiesce(&app);
    srv_log(SRV_LOG_NOTICE, "draining: %ld requests in flight, waiting up to %d ms",
            atomic_load(&app.active), cfg.drain_ms);
    int64_t limit = t0 + (int64_t)cfg.drain_ms * 1000000;
    while (atomic_load(&app.active) > 0 && srv_now_ns() < limit && got_term < 2)
        sleep_ms(5);
    long left = atomic_load(&app.active);
    srv_registry_stop(reg); /* anything still queued is answered 503 and resumed */
    /* Let resumed connections send their answers. */
    int64_t limit2 = srv_now_ns() + 1000000000;
    while (atomic_load(&app.active) > 0 && srv_now_ns() < limit2 && got_term < 3)
        sleep_ms(5);
    srv_notify_stop();
    srv_http_stop(&app);
    srv_registry_destroy(reg);
    cvy_engine_destroy(eng);
    srv_log(SRV_LOG_NOTICE, "stopped after %.1f ms%s", (double)(srv_now_ns() - t0) / 1e6,
            left ? " (drain time ran out)" : "");
    return 0;
}
