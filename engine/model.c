/* model.c - loading a .cvy model (read, validate, plan) and the read-only model queries. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "util.h"

#define MAX_MODEL_BYTES (4ull << 30)

/* Builds the model from a validated buffer. Takes nothing from buf after returning. */
static cvy_status load_buffer(cvy_engine *e, const uint8_t *buf, size_t size, cvy_model **out,
                              cvy_error *err)
{
    fmt_model fm;
    cvy_status s = fmt_parse(buf, size, &fm, err);
    if (s != CVY_OK) return s;
    cvy_model *m = calloc(1, sizeof *m);
    if (!m) {
        fmt_model_clear(&fm);
        return cvy_fail(err, CVY_ERR_NOMEM, "out of memory");
    }
    m->eng = e;
    m->pre = fm.preproc;
    const fmt_tensor *in = &fm.tensors[fm.input];
    int want_c = fm.preproc.color == CVY_COLOR_GRAY ? 1 : 3;
    /* images need 1 or 3 channels; other channel counts serve raw-tensor models */
    int c_ok = (in->dims[0] != 1 && in->dims[0] != 3) || (int)in->dims[0] == want_c;
    /* non-image models (ONNX imports) may take 1 or 2 dims per item: no image checks then */
    int image = in->ndim == 3;
    if (in->kind != FMT_ACTIVATION || in->ndim < 1 || in->ndim > 3 ||
        (image && (!c_ok || (int)in->dims[1] != fm.preproc.height ||
                   (int)in->dims[2] != fm.preproc.width))) {
        s = cvy_fail(err, CVY_ERR_FORMAT,
                     "graph input dims do not match PREPROC (%d channels, %dx%d)", want_c,
                     fm.preproc.height, fm.preproc.width);
    }
    if (s == CVY_OK)
        s = plan_build(&fm, e->kern, e->isa != CVY_ISA_REF, e->winograd, &m->plan, err);
    if (s == CVY_OK) {
        m->in_c = (int)in->dims[0];
        m->in_h = in->ndim > 1 ? (int)in->dims[1] : 1;
        m->in_w = in->ndim > 2 ? (int)in->dims[2] : 1;
        m->in_size = (size_t)m->in_c * m->in_h * m->in_w;
        m->out_size = m->plan.values[m->plan.output].size;
        m->output_prob = fm.output_kind == 1;
        if (fm.n_labels > 0 && (size_t)fm.n_labels != m->out_size)
            s = cvy_fail(err, CVY_ERR_FORMAT, "LABELS: %d labels for %zu outputs", fm.n_labels,
                         m->out_size);
        if (s == CVY_OK && fm.n_golden &&
            (fm.golden_in_size != m->in_size || fm.golden_out_size != m->out_size))
            s = cvy_fail(err, CVY_ERR_FORMAT,
                         "GOLDEN: images of %u -> %u floats, the model takes %zu -> %zu",
                         fm.golden_in_size, fm.golden_out_size, m->in_size, m->out_size);
    }
    if (s != CVY_OK) {
        fmt_model_clear(&fm);
        cvy_model_free(m);
        return s;
    }
    /* take the labels and golden data over from the parse result */
    m->labels = fm.labels;
    m->n_labels = fm.n_labels;
    fm.labels = NULL;
    fm.n_labels = 0;
    m->n_golden = (int)fm.n_golden;
    m->golden_rtol = fm.golden_rtol;
    m->golden_atol = fm.golden_atol;
    m->golden_in = fm.golden_in;
    m->golden_out = fm.golden_out;
    fm.golden_in = fm.golden_out = NULL;
    fmt_model_clear(&fm);
    snprintf(m->hash, sizeof m->hash, "%016llx", (unsigned long long)cvy_hash64(buf, size));
    m->file_size = size;
    *out = m;
    return CVY_OK;
}

cvy_status cvy_model_load_memory(cvy_engine *e, const void *data, size_t size, cvy_model **out,
                                 cvy_error *err)
{
    if (!e || !out || (!data && size))
        return cvy_fail(err, CVY_ERR_ARG, "model: NULL engine, data or out");
    *out = NULL;
    /* an aligned private copy: weights are read as floats */
    uint8_t *copy = cvy_alloc_aligned(size);
    if (!copy) return cvy_fail(err, CVY_ERR_NOMEM, "out of memory for a %zu-byte model", size);
    if (size) memcpy(copy, data, size);
    cvy_status s = load_buffer(e, copy, size, out, err);
    cvy_free_aligned(copy);
    return s;
}

cvy_status cvy_model_load_file(cvy_engine *e, const char *path, cvy_model **out, cvy_error *err)
{
    if (!e || !path || !out) return cvy_fail(err, CVY_ERR_ARG, "model: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cvy_fail(err, CVY_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cvy_fail(err, CVY_ERR_IO, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > MAX_MODEL_BYTES) {
        close(fd);
        return cvy_fail(err, CVY_ERR_IO, "%s: %lld bytes is larger than the 4 GiB limit", path,
                        (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = cvy_alloc_aligned(size);
    if (!buf) {
        close(fd);
        return cvy_fail(err, CVY_ERR_NOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    size_t got = 0;
    int rerr = 0;
    while (got < size) { /* the file may shrink under us: stop at EOF and let parsing judge */
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rerr = errno;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    cvy_status s = rerr ? cvy_fail(err, CVY_ERR_IO, "read failed: %s", strerror(rerr))
                        : load_buffer(e, buf, got, out, err);
    cvy_free_aligned(buf);
    if (s != CVY_OK && err) {
        char tmp[sizeof err->msg];
        snprintf(tmp, sizeof tmp, "%.200s: %.300s", path, err->msg);
        memcpy(err->msg, tmp, sizeof tmp);
    }
    return s;
}

void cvy_model_free(cvy_model *m)
{
    if (!m) return;
    plan_free(&m->plan);
    for (int i = 0; i < m->n_labels; i++) free(m->labels[i]);
    free(m->labels);
    free(m->golden_in);
    free(m->golden_out);
    free(m);
}

cvy_status cvy_model_self_test(const cvy_model *m, int *images, cvy_error *err)
{
    if (images) *images = 0;
    if (!m) return cvy_fail(err, CVY_ERR_ARG, "self-test: NULL model");
    if (m->n_golden == 0) return CVY_OK;
    cvy_context *c = NULL;
    float *out = malloc((size_t)m->n_golden * m->out_size * sizeof(float));
    cvy_status s = out ? cvy_context_create(m, m->n_golden, &c, err)
                       : cvy_fail(err, CVY_ERR_NOMEM, "self-test: out of memory");
    if (s == CVY_OK) s = cvy_context_run(c, m->n_golden, m->golden_in, out, err);
    for (size_t i = 0; s == CVY_OK && i < (size_t)m->n_golden * m->out_size; i++) {
        double want = m->golden_out[i], got = out[i];
        if (!(fabs(got - want) <= m->golden_atol + m->golden_rtol * fabs(want)))
            s = cvy_fail(err, CVY_ERR_MISMATCH,
                         "self-test: image %zu output %zu is %.9g, the file says %.9g "
                         "(rtol %g, atol %g)",
                         i / m->out_size, i % m->out_size, got, want, m->golden_rtol,
                         m->golden_atol);
    }
    cvy_context_destroy(c);
    free(out);
    if (s == CVY_OK && images) *images = m->n_golden;
    return s;
}

void cvy_model_input_shape(const cvy_model *m, int *c, int *h, int *w)
{
    if (c) *c = m->in_c;
    if (h) *h = m->in_h;
    if (w) *w = m->in_w;
}

size_t cvy_model_input_size(const cvy_model *m) { return m->in_size; }
size_t cvy_model_output_size(const cvy_model *m) { return m->out_size; }
int cvy_model_output_is_probability(const cvy_model *m) { return m->output_prob; }
const cvy_preproc *cvy_model_preproc(const cvy_model *m) { return &m->pre; }
int cvy_model_label_count(const cvy_model *m) { return m->n_labels; }
const char *cvy_model_hash(const cvy_model *m) { return m->hash; }
size_t cvy_model_param_count(const cvy_model *m) { return m->plan.params; }
double cvy_model_flops(const cvy_model *m) { return m->plan.flops; }
size_t cvy_model_file_size(const cvy_model *m) { return m->file_size; }
int cvy_model_layer_count(const cvy_model *m) { return m->plan.n_steps; }

const char *cvy_model_label(const cvy_model *m, int i)
{
    return (i >= 0 && i < m->n_labels) ? m->labels[i] : NULL;
}

cvy_status cvy_model_layer(const cvy_model *m, int i, cvy_layer_info *out)
{
    if (i < 0 || i >= m->plan.n_steps || !out) return CVY_ERR_ARG;
    const step *s = &m->plan.steps[i];
    const value *v = &m->plan.values[s->out];
    out->name = s->name;
    out->op = s->op;
    out->algo = s->algo;
    out->ndim = v->ndim;
    for (int d = 0; d < 4; d++) out->dims[d] = d < v->ndim ? v->dims[d] : 0;
    out->params = s->params;
    out->flops = s->flops;
    return CVY_OK;
}

int cvy_model_topk(const cvy_model *m, const float *row, int k, cvy_prediction *out)
{
    int n = (int)m->out_size;
    if (k > n) k = n;
    if (k <= 0) return 0;
    float mx = -INFINITY;
    double sum = 1.0;
    if (!m->output_prob) { /* scores are softmax(logits) */
        for (int i = 0; i < n; i++)
            if (row[i] > mx) mx = row[i];
        sum = 0.0;
        for (int i = 0; i < n; i++) sum += exp((double)row[i] - mx);
    }
    /* insertion into a sorted top-k list: k is small */
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        float v = row[i];
        if (v != v) v = -INFINITY; /* NaN ranks last */
        if (cnt == k && !(v > row[out[k - 1].index])) continue;
        int pos = cnt < k ? cnt++ : k - 1;
        while (pos > 0 && v > row[out[pos - 1].index]) {
            out[pos] = out[pos - 1];
            pos--;
        }
        out[pos].index = i;
    }
    for (int j = 0; j < cnt; j++) {
        float v = row[out[j].index];
        out[j].score = m->output_prob ? v : (float)(exp((double)v - mx) / sum);
        out[j].label = cvy_model_label(m, out[j].index);
    }
    return cnt;
}
