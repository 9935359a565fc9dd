/*
 * deploy_notify.c - build/test_deploy: convoyd speaks systemd's notify protocol.
 *
 * The test plays systemd: it binds a datagram socket, points NOTIFY_SOCKET at it (and sets
 * WATCHDOG_USEC) and reads what convoyd sends.
 *
 *   daemon:   the real build/convoyd: READY=1 with STATUS= once the model is loaded, WATCHDOG=1
 *             pings at about WATCHDOG_USEC/4 (also while it classifies), RELOADING=1 then
 *             READY=1 around a SIGHUP rescan, STOPPING=1 on SIGTERM and exit status 0.
 *   stall:    in-process (registry + batcher + notify): while a batch thread is held inside a
 *             job's completion callback with another job queued, no WATCHDOG=1 is sent and
 *             STATUS= says "stalled"; once it moves on, the pings come back.
 *   disabled: without NOTIFY_SOCKET the daemon still runs, and WATCHDOG_PID naming another
 *             process turns the watchdog off.
 *
 * Every wait is bounded; everything is on loopback or a Unix socket in a temporary directory.
 */
#include "server_util.h"

#include "../server/batcher.h"
#include "../server/config.h"
#include "../server/log.h"
#include "../server/notify.h"
#include "../server/registry.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- a tiny notify-socket server ------------------------------------------------------------ */

#define MAXMSG 4096

typedef struct nmsg {
    long t_ms; /* arrival, ts_now_ms() */
    char text[512];
} nmsg;

typedef struct nsock {
    int fd;
    char dir[64];
    char path[128];
    nmsg *msgs;
    int n;
} nsock;

static void ns_open(nsock *ns)
{
    memset(ns, 0, sizeof *ns);
    snprintf(ns->dir, sizeof ns->dir, "/tmp/convoy-notify-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(ns->dir));
    snprintf(ns->path, sizeof ns->path, "%s/notify", ns->dir);
    ns->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(ns->fd, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    ck_assert_uint_lt(strlen(ns->path), sizeof sa.sun_path);
    memcpy(sa.sun_path, ns->path, strlen(ns->path) + 1);
    ck_assert_int_eq(bind(ns->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ns->msgs = calloc(MAXMSG, sizeof(nmsg));
    ck_assert_ptr_nonnull(ns->msgs);
    setenv("NOTIFY_SOCKET", ns->path, 1);
}

static void ns_close(nsock *ns)
{
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    close(ns->fd);
    unlink(ns->path);
    rmdir(ns->dir);
    free(ns->msgs);
}

/* Receives for up to timeout_ms (all of it, or until a message containing `until` arrives when
 * until is not NULL). Returns the index of that message, or -1. */
static int ns_recv(nsock *ns, int timeout_ms, const char *until)
{
    long t_end = ts_now_ms() + timeout_ms;
    for (;;) {
        long left = t_end - ts_now_ms();
        if (left <= 0) return -1;
        struct pollfd p = {ns->fd, POLLIN, 0};
        int rc = poll(&p, 1, (int)left);
        if (rc <= 0) continue;
        char buf[512];
        ssize_t got = recv(ns->fd, buf, sizeof buf - 1, 0);
        if (got < 0) continue;
        buf[got] = 0;
        if (ns->n < MAXMSG) {
            nmsg *m = &ns->msgs[ns->n++];
            m->t_ms = ts_now_ms();
            snprintf(m->text, sizeof m->text, "%s", buf);
            if (until && strstr(m->text, until)) return ns->n - 1;
        }
    }
}

/* 1 when message i has the line `line` ("READY=1") or a line starting with it ("STATUS="). */
static int has_line(const nmsg *m, const char *line)
{
    size_t l = strlen(line);
    for (const char *p = m->text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, line, l) == 0 && (line[l - 1] == '=' || p[l] == '\n' || p[l] == 0))
            return 1;
    return 0;
}

static int count_line(const nsock *ns, int from, const char *line, long t0, long t1)
{
    int c = 0;
    for (int i = from; i < ns->n; i++)
        if (ns->msgs[i].t_ms >= t0 && ns->msgs[i].t_ms < t1 && has_line(&ns->msgs[i], line)) c++;
    return c;
}

static void ns_dump(const nsock *ns)
{
    for (int i = 0; i < ns->n; i++)
        fprintf(stderr, "  notify %4d +%ldms: %s\n", i, ns->msgs[i].t_ms - ns->msgs[0].t_ms,
                ns->msgs[i].text);
}

/* ---- the real daemon ------------------------------------------------------------------------ */

START_TEST(test_daemon_protocol)
{
    nsock ns;
    ns_open(&ns);
    setenv("WATCHDOG_USEC", "400000", 1); /* pings every 100 ms */
    tserver s;
    ck_assert_int_eq(ts_start(&s, 0, NULL), 0);

    /* READY=1 with a STATUS= naming the loaded model count. */
    int ready = ns_recv(&ns, 20000, "READY=1");
    if (ready < 0) ns_dump(&ns);
    ck_assert_int_ge(ready, 0);
    ck_assert(has_line(&ns.msgs[ready], "STATUS="));
    ck_assert_ptr_nonnull(strstr(ns.msgs[ready].text, "STATUS=ready: 1/1 models loaded"));
    tresp r = ts_http(&s, "GET", "/readyz", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    ts_resp_free(&r);

    /* Watchdog pings: ~10 in one second; a STATUS= with the queue depth came along. */
    long t0 = ts_now_ms();
    ns_recv(&ns, 1000, NULL);
    int pings = count_line(&ns, 0, "WATCHDOG=1", t0, t0 + 1000);
    if (pings < 4) ns_dump(&ns);
    ck_assert_int_ge(pings, 4);
    ck_assert_int_le(pings, 30);
    int status_q = 0;
    for (int i = 0; i < ns.n; i++)
        if (strstr(ns.msgs[i].text, "STATUS=1/1 models loaded, 0 images queued")) status_q = 1;
    ck_assert(status_q);

    /* Pings continue while it works. */
    timg imgs[TS_NIMG];
    ck_assert_int_eq(ts_load_images(imgs), TS_NIMG);
    t0 = ts_now_ms();
    int before = ns.n;
    for (int i = 0; i < 40; i++) {
        r = ts_http(&s, "POST", "/classify", "image/png", imgs[i % TS_NIMG].data,
                    imgs[i % TS_NIMG].len, NULL);
        ck_assert_int_eq(r.status, 200);
        ts_resp_free(&r);
        ns_recv(&ns, 10, NULL);
    }
    ns_recv(&ns, 300, NULL);
    long t1 = ts_now_ms();
    ck_assert_int_ge(count_line(&ns, before, "WATCHDOG=1", t0, t1), (int)((t1 - t0) / 100) / 2);

    /* SIGHUP: RELOADING=1 (with MONOTONIC_USEC=), then READY=1 again. */
    before = ns.n;
    kill(s.pid, SIGHUP);
    int rel = ns_recv(&ns, 10000, "RELOADING=1");
    if (rel < 0) ns_dump(&ns);
    ck_assert_int_ge(rel, 0);
    ck_assert(has_line(&ns.msgs[rel], "MONOTONIC_USEC="));
    int again = ns_recv(&ns, 10000, "READY=1");
    ck_assert_int_gt(again, rel);

    /* SIGTERM: STOPPING=1, then a clean exit. */
    kill(s.pid, SIGTERM);
    int stop = ns_recv(&ns, 10000, "STOPPING=1");
    if (stop < 0) ns_dump(&ns);
    ck_assert_int_ge(stop, 0);
    ck_assert_ptr_nonnull(strstr(ns.msgs[stop].text, "STATUS=draining"));
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    /* Order: READY < RELOADING < READY < STOPPING. */
    ck_assert_int_lt(ready, rel);
    ck_assert_int_lt(again, stop);
    ts_cleanup(&s);
    for (int i = 0; i < TS_NIMG; i++)
        free(imgs[i].data);
    ns_close(&ns);
}
END_TEST

START_TEST(test_daemon_without_watchdog)
{
    nsock ns;
    ns_open(&ns);
    setenv("WATCHDOG_USEC", "400000", 1);
    setenv("WATCHDOG_PID", "1", 1); /* someone else's watchdog: convoyd must not ping */
    tserver s;
    ck_assert_int_eq(ts_start(&s, 1, NULL), 0);
    ck_assert_int_ge(ns_recv(&ns, 20000, "READY=1"), 0);
    long t0 = ts_now_ms();
    ns_recv(&ns, 700, NULL);
    ck_assert_int_eq(count_line(&ns, 0, "WATCHDOG=1", 0, t0 + 1000), 0);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);
    ns_close(&ns);

    /* No NOTIFY_SOCKET at all: runs and stops as usual. */
    ck_assert_int_eq(ts_start(&s, 1, NULL), 0);
    ck_assert_int_eq(ts_stop(&s, SIGTERM, 15000), 0);
    ts_cleanup(&s);
}
END_TEST

/* ---- a stalled batch thread withholds the pings ------------------------------------------- */

static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static int hold = 1, held = 0, done2 = 0;

static void done_blocking(srv_job *j)
{
    (void)j;
    pthread_mutex_lock(&hold_mu);
    held = 1;
    pthread_cond_broadcast(&hold_cv);
    while (hold)
        pthread_cond_wait(&hold_cv, &hold_mu);
    pthread_mutex_unlock(&hold_mu);
}

static void done_flag(srv_job *j)
{
    (void)j;
    pthread_mutex_lock(&hold_mu);
    done2 = 1;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_mu);
}

START_TEST(test_watchdog_stall)
{
    nsock ns;
    ns_open(&ns);
    setenv("WATCHDOG_USEC", "200000", 1); /* checks every 50 ms */
    char mdir[] = "/tmp/convoy-wd-XXXXXX", model[PATH_MAX], link_path[300];
    ck_assert_ptr_nonnull(mkdtemp(mdir));
    ck_assert_ptr_nonnull(realpath("models/fashion-mnist.cvy", model));
    snprintf(link_path, sizeof link_path, "%s/fashion-mnist.cvy", mdir);
    ck_assert_int_eq(symlink(model, link_path), 0);

    char *argv[] = {"convoyd", "--models", mdir, "--threads", "1", "--log-level", "error", NULL};
    srv_config cfg;
    ck_assert_int_eq(srv_config_load(&cfg, 7, argv), 0);
    srv_log_level = cfg.log_level;
    cvy_engine_params ep = cvy_engine_default_params();
    ep.threads = 1;
    cvy_engine *eng = NULL;
    cvy_error err;
    ck_assert_int_eq(cvy_engine_create(&ep, &eng, &err), CVY_OK);
    srv_registry *reg = srv_registry_create(eng, &cfg);
    ck_assert_int_eq(srv_notify_start(reg), 0);
    ck_assert_int_eq(srv_registry_scan(reg), 0);
    srv_notify_ready(reg);
    ck_assert_int_ge(ns_recv(&ns, 5000, "READY=1"), 0);
    long t0 = ts_now_ms();
    ns_recv(&ns, 400, NULL);
    ck_assert_int_ge(count_line(&ns, 0, "WATCHDOG=1", t0, t0 + 400), 4);

    int why;
    srv_model *m = srv_registry_acquire(reg, "fashion-mnist", &why);
    ck_assert_ptr_nonnull(m);
    size_t in = cvy_model_input_size(m->m), out = cvy_model_output_size(m->m);
    float *buf_in = calloc(2 * in, sizeof(float)), *buf_out = calloc(2 * out, sizeof(float));
    srv_job j1, j2;
    memset(&j1, 0, sizeof j1);
    memset(&j2, 0, sizeof j2);
    j1.n = j2.n = 1;
    j1.input = buf_in;
    j2.input = buf_in + in;
    j1.output = buf_out;
    j2.output = buf_out + out;
    j1.done = done_blocking;
    j2.done = done_flag;
    ck_assert_int_eq(srv_batcher_submit(m->b, &j1), SRV_SUBMIT_OK);
    pthread_mutex_lock(&hold_mu);
    while (!held)
        pthread_cond_wait(&hold_cv, &hold_mu);
    pthread_mutex_unlock(&hold_mu);
    /* The batch thread is stuck in j1's callback; j2 waits behind it. */
    ck_assert_int_eq(srv_batcher_submit(m->b, &j2), SRV_SUBMIT_OK);
    long ts = ts_now_ms();
    int from = ns.n;
    ns_recv(&ns, 800, NULL);
    int stalled_pings = count_line(&ns, from, "WATCHDOG=1", ts + 120, ts + 800);
    int stalled_status = 0;
    for (int i = from; i < ns.n; i++)
        if (strstr(ns.msgs[i].text, "STATUS=stalled: 1 batch thread")) stalled_status = 1;
    if (stalled_pings || !stalled_status) ns_dump(&ns);
    ck_assert_int_eq(stalled_pings, 0);
    ck_assert(stalled_status);

    /* Release: j2 runs, the pings resume. */
    pthread_mutex_lock(&hold_mu);
    hold = 0;
    pthread_cond_broadcast(&hold_cv);
    while (!done2)
        pthread_cond_wait(&hold_cv, &hold_mu);
    pthread_mutex_unlock(&hold_mu);
    ck_assert_int_eq(j2.status, SRV_JOB_OK);
    int at = ns_recv(&ns, 1000, "WATCHDOG=1");
    ck_assert_int_ge(at, 0);
    srv_model_release(m);

    srv_notify_stopping(0);
    ck_assert_int_ge(ns_recv(&ns, 1000, "STOPPING=1"), 0);
    srv_registry_stop(reg);
    srv_notify_stop();
    srv_registry_destroy(reg);
    cvy_engine_destroy(eng);
    free(buf_in);
    free(buf_out);
    unlink(link_path);
    rmdir(mdir);
    ns_close(&ns);
}
END_TEST

START_TEST(test_watchdog_interval)
{
    ck_assert_uint_eq(srv_notify_watchdog_interval_us(30000000), 7500000);
    ck_assert_uint_eq(srv_notify_watchdog_interval_us(400000), 100000);
    ck_assert_uint_eq(srv_notify_watchdog_interval_us(100), 1000);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("deploy");
    TCase *tc = tcase_create("notify");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_watchdog_interval);
    tcase_add_test(tc, test_daemon_protocol);
    tcase_add_test(tc, test_daemon_without_watchdog);
    tcase_add_test(tc, test_watchdog_stall);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
