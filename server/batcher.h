/*
 * batcher.h - dynamic batching: one queue and one batch thread per model version.
 *
 * HTTP threads submit jobs (a request's n preprocessed images). The batch thread takes up to
 * max_batch images from the head of the queue - from several jobs - whenever the engine is
 * free, runs them in one forward pass and copies each image's output row back to its job.
 * With max_delay_us > 0 it waits up to that long (from the oldest job's arrival) for a fuller
 * batch; with 0 a lone image runs at once.
 *
 * Splitting: a job with more images than max_batch (or than the room left in a batch) is
 * split in arrival order: its first images fill the current batch, the rest go to the next
 * batch(es), before any later job. The job completes - its done callback runs - when every
 * image has been run. Timings report the largest batch it ran in.
 *
 * Back-pressure: submit refuses a job when the images waiting plus n exceed max_queue. A job
 * whose deadline passes before any of its images runs, or whose alive callback reports a
 * departed client, is dropped without disturbing the batch (status TIMEOUT / CANCELLED).
 *
 * The done callback runs on the batch thread (or on the destroying thread) and must be quick;
 * after it returns the batcher never touches the job again.
 */
#ifndef SRV_BATCHER_H
#define SRV_BATCHER_H

#include "convoy.h"
#include "metrics.h"

#include <stdint.h>

typedef enum srv_job_status {
    SRV_JOB_OK = 0,
    SRV_JOB_TIMEOUT = 1,   /* deadline passed before it ran */
    SRV_JOB_CANCELLED = 2, /* client went away while queued */
    SRV_JOB_ERROR = 3,     /* the engine failed; message in errmsg */
    SRV_JOB_SHUTDOWN = 4,  /* the batcher stopped before it ran */
} srv_job_status;

typedef struct srv_job srv_job;
struct srv_job {
    /* set by the submitter */
    int n;               /* images */
    const float *input;  /* n * input_size floats */
    float *output;       /* n * output_size floats */
    int64_t deadline_ns; /* CLOCK_MONOTONIC; 0 = none */
    void (*done)(srv_job *job);
    int (*alive)(srv_job *job); /* optional: 0 when the client has gone */
    void *user;
    /* results, valid in done() */
    srv_job_status status;
    char errmsg[160];
    int64_t t_enqueue_ns, t_start_ns, t_end_ns;
    int64_t infer_ns; /* sum of the forward passes it took part in */
    int batch_size;   /* largest batch it ran in */
    /* private */
    int next_image, images_done;
    srv_job *qnext;
};

typedef struct srv_batcher srv_batcher;

/* Creates the batcher and its thread, with one context of max_batch for model m (which must
 * outlive the batcher). Returns 0, or -1 with a message in err. */
int srv_batcher_create(const cvy_model *m, int max_batch, int max_delay_us, int max_queue,
                       srv_metrics_model *mm, srv_batcher **out, char *err, size_t errn);

enum { SRV_SUBMIT_OK = 0, SRV_SUBMIT_FULL = -1, SRV_SUBMIT_STOPPED = -2 };

/* Queues job (n >= 1). Returns SRV_SUBMIT_OK (done will be called exactly once),
 * SRV_SUBMIT_FULL or SRV_SUBMIT_STOPPED (done will not be called). Thread-safe. */
int srv_batcher_submit(srv_batcher *b, srv_job *job);

/* Images waiting (not yet dispatched to a forward pass). */
long srv_batcher_depth(srv_batcher *b);

/* Stops the thread: jobs still queued complete with SRV_JOB_SHUTDOWN after the pass running
 * now ends; later submits return SRV_SUBMIT_STOPPED. Idempotent; call from one thread. */
void srv_batcher_stop(srv_batcher *b);

/* Stops (if needed) and frees everything. No submit may follow. NULL is a no-op. */
void srv_batcher_destroy(srv_batcher *b);

/* Watchdog check over every live batcher: returns how many have images waiting but finished
 * no forward pass (and dropped no job) since the previous call, and sets *queued (if not
 * NULL) to the images waiting in all of them. Call from one thread only. */
int srv_batcher_watchdog(long *queued);

int64_t srv_now_ns(void);

#endif
