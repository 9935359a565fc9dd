/*
 * batcher.c - see batcher.h.
 */
#include "batcher.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DROP_MAX 64 /* jobs dropped (expired, abandoned) per gathering at most */

typedef struct seg {
    srv_job *job;
    int first, count;
} seg;

struct srv_batcher {
    const cvy_model *model;
    cvy_context *ctx;
    int max_batch, max_delay_us, max_queue;
    size_t in_size, out_size; /* floats per image */
    float *out;               /* max_batch * out_size */
    seg *segs;                /* max_batch slices of the batch being gathered */
    srv_job **drop;           /* DROP_MAX jobs dropped by one gathering */
    srv_metrics_model *mm;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_job *head, *tail; /* jobs with images not yet dispatched */
    long queued;          /* images not yet dispatched */
    int stopping;
    pthread_t thread;
    /* watchdog (srv_batcher_watchdog): passes and drops so far, the count seen at the last
     * check, and the list of live batchers */
    atomic_ullong progress;
    unsigned long long progress_seen;
    srv_batcher *wd_next;
};

static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static srv_batcher *wd_head;

int64_t srv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One slice of a job in the batch being formed. */

static void finish(srv_job *j, srv_job_status st)
{
    j->status = st;
    j->t_end_ns = srv_now_ns();
    j->done(j);
}

/* Unlinks job j (whose predecessor is prev, or NULL at the head). Lock held. */
static void unlink_job(srv_batcher *b, srv_job *prev, srv_job *j)
{
    if (prev)
        prev->qnext = j->qnext;
    else
        b->head = j->qnext;
    if (b->tail == j) b->tail = prev;
    j->qnext = NULL;
}

static void *batch_main(void *arg)
{
    srv_batcher *b = arg;
    pthread_setname_np(pthread_self(), "convoyd-batch");
    seg *segs = b->segs;
    srv_job **drop = b->drop;
    int drop_st[DROP_MAX];
    for (;;) {
        pthread_mutex_lock(&b->mu);
        while (!b->head && !b->stopping)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->stopping) {
            /* Complete everything still queued, outside the lock one by one. */
            while (b->head) {
                srv_job *j = b->head;
                unlink_job(b, NULL, j);
                b->queued -= j->n - j->next_image;
                pthread_mutex_unlock(&b->mu);
                finish(j, SRV_JOB_SHUTDOWN);
                pthread_mutex_lock(&b->mu);
            }
            pthread_mutex_unlock(&b->mu);
            break;
        }
        if (b->max_delay_us > 0 && b->queued < b->max_batch) {
            int64_t until = b->head->t_enqueue_ns + (int64_t)b->max_delay_us * 1000;
            while (!b->stopping && b->queued < b->max_batch && b->head) {
                int64_t now = srv_now_ns();
                if (now >= until) break;
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (until - now);
                ts.tv_sec = t / 1000000000;
                ts.tv_nsec = t % 1000000000;
                pthread_cond_timedwait(&b->cv, &b->mu, &ts);
            }
            if (b->stopping || !b->head) {
                pthread_mutex_unlock(&b->mu);
                continue;
            }
        }
        /* Gather up to max_batch images from the head; drop expired or abandoned jobs. */
        int64_t now = srv_now_ns();
        int nseg = 0, nimg = 0, ndrop = 0;
        srv_job *prev = NULL, *j = b->head;
        while (j && nimg < b->max_batch && ndrop < DROP_MAX) {
            srv_job *nx = j->qnext;
            if (j->next_image == 0) {
                int st = -1;
                if (j->deadline_ns && now > j->deadline_ns)
                    st = SRV_JOB_TIMEOUT;
                else if (j->alive && !j->alive(j))
                    st = SRV_JOB_CANCELLED;
                if (st >= 0) {
                    unlink_job(b, prev, j);
                    b->queued -= j->n;
                    drop[ndrop] = j;
                    drop_st[ndrop++] = st;
                    j = nx;
                    continue;
                }
                j->t_start_ns = now;
            }
            int take = j->n - j->next_image;
            if (take > b->max_batch - nimg) take = b->max_batch - nimg;
            segs[nseg].job = j;
            segs[nseg].first = j->next_image;
            segs[nseg].count = take;
            nseg++;
            nimg += take;
            j->next_image += take;
            b->queued -= take;
            if (j->next_image == j->n) {
                unlink_job(b, prev, j);
            } else {
                prev = j;
            }
            j = nx;
        }
        pthread_mutex_unlock(&b->mu);

        for (int i = 0; i < ndrop; i++) {
            atomic_fetch_add(drop_st[i] == SRV_JOB_TIMEOUT ? &b->mm->timeouts : &b->mm->cancelled,
                             1);
            finish(drop[i], (srv_job_status)drop_st[i]);
        }
        if (ndrop) atomic_fetch_add(&b->progress, 1);
        if (nimg == 0) continue;

        /* Run. A single slice runs straight from and into the job's own buffers. */
        cvy_error err;
        cvy_status st;
        int64_t t0 = srv_now_ns();
        if (nseg == 1) {
            srv_job *sj = segs[0].job;
            st = cvy_context_run(b->ctx, nimg, sj->input + (size_t)segs[0].first * b->in_size,
                                 sj->output + (size_t)segs[0].first * b->out_size, &err);
        } else {
            float *in = cvy_context_input(b->ctx);
            size_t off = 0;
            for (int i = 0; i < nseg; i++) {
                size_t cnt = (size_t)segs[i].count * b->in_size;
                memcpy(in + off, segs[i].job->input + (size_t)segs[i].first * b->in_size,
                       cnt * sizeof(float));
                off += cnt;
            }
            st = cvy_context_run(b->ctx, nimg, NULL, b->out, &err);
            if (st == CVY_OK) {
                off = 0;
                for (int i = 0; i < nseg; i++) {
                    size_t cnt = (size_t)segs[i].count * b->out_size;
                    memcpy(segs[i].job->output + (size_t)segs[i].first * b->out_size, b->out + off,
                           cnt * sizeof(float));
                    off += cnt;
                }
            }
        }
        int64_t t1 = srv_now_ns();
        srv_hist_observe(&b->mm->inference_s, (double)(t1 - t0) / 1e9);
        srv_hist_observe(&b->mm->batch_size, nimg);
        atomic_fetch_add(&b->mm->batches, 1);
        atomic_fetch_add(&b->mm->images, (unsigned long long)nimg);
        if (st != CVY_OK)
            srv_log(SRV_LOG_ERROR, "batch of %d failed: %s: %s", nimg, cvy_status_str(st), err.msg);

        for (int i = 0; i < nseg; i++) {
            srv_job *sj = segs[i].job;
            sj->infer_ns += t1 - t0;
            if (nimg > sj->batch_size) sj->batch_size = nimg;
            if (st != CVY_OK && sj->status == SRV_JOB_OK) {
                sj->status = SRV_JOB_ERROR;
                snprintf(sj->errmsg, sizeof sj->errmsg, "inference failed: %.120s", err.msg);
            }
            sj->images_done += segs[i].count;
            if (sj->images_done == sj->n) finish(sj, sj->status);
        }
        atomic_fetch_add(&b->progress, 1);
    }
    return NULL;
}

/* Frees the buffers, the context and b itself (the thread, mutex and condition variable are
 * the caller's). */
static void free_parts(srv_batcher *b)
{
    free(b->out);
    free(b->segs);
    free(b->drop);
    cvy_context_destroy(b->ctx);
    free(b);
}

int srv_batcher_create(const cvy_model *m, int max_batch, int max_delay_us, int max_queue,
                       srv_metrics_model *mm, srv_batcher **out, char *err, size_t errn)
{
    srv_batcher *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errn, "out of memory");
        return -1;
    }
    b->model = m;
    b->max_batch = max_batch;
    b->max_delay_us = max_delay_us;
    b->max_queue = max_queue;
    b->in_size = cvy_model_input_size(m);
    b->out_size = cvy_model_output_size(m);
    b->mm = mm;
    cvy_error e;
    cvy_status st = cvy_context_create(m, max_batch, &b->ctx, &e);
    if (st != CVY_OK) {
        snprintf(err, errn, "context for batch %d: %s", max_batch, e.msg);
        free_parts(b);
        return -1;
    }
    /* everything the batch thread needs, so that it never allocates */
    b->out = malloc(sizeof(float) * b->out_size * (size_t)max_batch);
    b->segs = malloc(sizeof(seg) * (size_t)max_batch);
    b->drop = malloc(sizeof(srv_job *) * DROP_MAX);
    if (!b->out || !b->segs || !b->drop) {
        snprintf(err, errn, "out of memory");
        free_parts(b);
        return -1;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&b->thread, NULL, batch_main, b);
    if (rc != 0) {
        snprintf(err, errn, "cannot start batch thread: %s", strerror(rc));
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        free_parts(b);
        return -1;
    }
    pthread_mutex_lock(&wd_mu);
    b->wd_next = wd_head;
    wd_head = b;
    pthread_mutex_unlock(&wd_mu);
    *out = b;
    return 0;
}

int srv_batcher_submit(srv_batcher *b, srv_job *job)
{
    job->status = SRV_JOB_OK;
    job->errmsg[0] = 0;
    job->next_image = job->images_done = 0;
    job->infer_ns = 0;
    job->batch_size = 0;
    job->qnext = NULL;
    pthread_mutex_lock(&b->mu);
    if (b->stopping) {
        pthread_mutex_unlock(&b->mu);
        return SRV_SUBMIT_STOPPED;
    }
    if (b->queued + job->n > b->max_queue) {
        pthread_mutex_unlock(&b->mu);
        atomic_fetch_add(&b->mm->rejected, 1);
        return SRV_SUBMIT_FULL;
    }
    job->t_enqueue_ns = srv_now_ns();
    job->t_start_ns = job->t_enqueue_ns;
    if (b->tail)
        b->tail->qnext = job;
    else
        b->head = job;
    b->tail = job;
    b->queued += job->n;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return SRV_SUBMIT_OK;
}

long srv_batcher_depth(srv_batcher *b)
{
    pthread_mutex_lock(&b->mu);
    long q = b->queued;
    pthread_mutex_unlock(&b->mu);
    return q;
}

void srv_batcher_stop(srv_batcher *b)
{
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    int was = b->stopping;
    b->stopping = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (!was) pthread_join(b->thread, NULL);
}

void srv_batcher_destroy(srv_batcher *b)
{
    if (!b) return;
    pthread_mutex_lock(&wd_mu);
    for (srv_batcher **pp = &wd_head; *pp; pp = &(*pp)->wd_next)
        if (*pp == b) {
            *pp = b->wd_next;
            break;
        }
    pthread_mutex_unlock(&wd_mu);
    srv_batcher_stop(b);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free_parts(b);
}

int srv_batcher_watchdog(long *queued)
{
    int stalled = 0;
    long total = 0;
    pthread_mutex_lock(&wd_mu);
    for (srv_batcher *b = wd_head; b; b = b->wd_next) {
        unsigned long long p = atomic_load(&b->progress);
        pthread_mutex_lock(&b->mu);
        long q = b->queued;
        int stopping = b->stopping;
        pthread_mutex_unlock(&b->mu);
        if (q > 0 && !stopping && p == b->progress_seen) stalled++;
        b->progress_seen = p;
        total += q;
    }
    pthread_mutex_unlock(&wd_mu);
    if (queued) *queued = total;
    return stalled;
}
