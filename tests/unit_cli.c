/*
 * unit_cli.c - runs the `convoy` binary as a subprocess: help and error behaviour of every
 * command, then real outcomes on the Fashion-MNIST model against torch's results:
 * classify --json top-1 equals fashion_golden.txt, run matches fashion_batch16_out.npy within
 * 1e-4, eval on the t10k set reaches >= 0.910 and lies within 0.001 of torch's accuracy.
 *
 * The binary is $CONVOY_BUILD/convoy (default build/convoy); paths are relative to the repo
 * root, the current directory of `make test`.
 */
#include <check.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "../tools/npy.h"

#define MODEL       "models/fashion-mnist.cvy"
#define DATA        "tests/data/"
#define T10K_IMAGES "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
#define T10K_LABELS "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"

static const char *const COMMANDS[] = {"inspect", "classify", "run", "bench", "eval"};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

/* ---- subprocess helper ------------------------------------------------------------------- */

typedef struct proc {
    int status; /* exit status, or 128 + signal */
    char *out, *err;
} proc;

static const char *convoy_bin(void)
{
    static char path[512];
    const char *b = getenv("CONVOY_BUILD");
    snprintf(path, sizeof path, "%s/convoy", b && *b ? b : "build");
    return path;
}

/* Reads all of f (rewound) into a NUL-terminated malloc'ed string. */
static char *slurp(FILE *f)
{
    rewind(f);
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t r;
    while ((r = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) s = realloc(s, cap *= 2);
    }
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Runs convoy with the NULL-terminated args; captures stdout and stderr. */
static proc run_convoy(const char *const *args)
{
    const char *bin = convoy_bin();
    ck_assert_msg(access(bin, X_OK) == 0, "%s is not built", bin);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    FILE *fo = tmpfile(), *fe = tmpfile();
    ck_assert_ptr_nonnull(fo);
    ck_assert_ptr_nonnull(fe);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fileno(fo), 1);
        dup2(fileno(fe), 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    proc p;
    p.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    p.out = slurp(fo);
    p.err = slurp(fe);
    return p;
}

static void proc_free(proc *p)
{
    free(p->out);
    free(p->err);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Asserts a failure: non-zero exit, exactly one line on stderr, containing `want`. */
static void expect_failure(proc *p, const char *want, const char *what)
{
    ck_assert_msg(p->status != 0 && p->status < 128, "%s: exit status %d", what, p->status);
    ck_assert_msg(count_lines(p->err) == 1, "%s: stderr is not one line: '%s'", what, p->err);
    ck_assert_msg(strstr(p->err, want) != NULL, "%s: stderr '%s' lacks '%s'", what, p->err, want);
}

static void require_file(const char *path)
{
    ck_assert_msg(access(path, R_OK) == 0,
                  "%s is missing (made by `make model` / tools/train_fashion.py)", path);
}

/* ---- help and errors --------------------------------------------------------------------- */

START_TEST(help_everywhere)
{
    proc p = run_convoy((const char *[]){"--help", NULL});
    ck_assert_int_eq(p.status, 0);
    ck_assert_ptr_nonnull(strstr(p.out, "usage: convoy"));
    for (size_t i = 0; i < N_COMMANDS; i++) ck_assert_ptr_nonnull(strstr(p.out, COMMANDS[i]));
    ck_assert_str_eq(p.err, "");
    proc_free(&p);

    for (size_t i = 0; i < N_COMMANDS; i++) {
        char want[64];
        snprintf(want, sizeof want, "usage: convoy %s", COMMANDS[i]);
        const char *forms[3][4] = {
            {COMMANDS[i], "--help", NULL}, {COMMANDS[i], "-h", NULL}, {"help", COMMANDS[i], NULL}};
        for (int f = 0; f < 3; f++) {
            p = run_convoy(forms[f]);
            ck_assert_msg(p.status == 0, "%s %s: exit %d", forms[f][0], forms[f][1], p.status);
            ck_assert_msg(strncmp(p.out, want, strlen(want)) == 0, "%s: '%s'", want, p.out);
            ck_assert_str_eq(p.err, "");
            proc_free(&p);
        }
    }
    /* --help wins over other arguments */
    p = run_convoy((const char *[]){"classify", "--top", "3", "x.cvy", "--help", NULL});
    ck_assert_int_eq(p.status, 0);
    proc_free(&p);
}
END_TEST

START_TEST(usage_errors)
{
    proc p = run_convoy((const char *[]){NULL});
    expect_failure(&p, "missing command", "no arguments");
    proc_free(&p);
    p = run_convoy((const char *[]){"frobnicate", NULL});
    expect_failure(&p, "unknown command 'frobnicate'", "unknown command");
    proc_free(&p);
    p = run_convoy((const char *[]){"--bogus", NULL});
    expect_failure(&p, "--bogus", "unknown global option");
    proc_free(&p);
    p = run_convoy((const char *[]){"inspect", NULL});
    expect_failure(&p, "missing MODEL", "inspect without model");
    proc_free(&p);
    p = run_convoy((const char *[]){"classify", "--top", "0", "m.cvy", "a.png", NULL});
    expect_failure(&p, "--top", "classify --top 0");
    proc_free(&p);
    p = run_convoy((const char *[]){"classify", "m.cvy", NULL});
    expect_failure(&p, "missing IMAGE", "classify without images");
    proc_free(&p);
    p = run_convoy((const char *[]){"run", "m.cvy", "--input", "a.npy", NULL});
    expect_failure(&p, "--output", "run without --output");
    proc_free(&p);
    p = run_convoy((const char *[]){"bench", "--seconds", "-1", "m.cvy", NULL});
    expect_failure(&p, "--seconds", "bench --seconds -1");
    proc_free(&p);
    p = run_convoy((const char *[]){"bench", "--frob", "m.cvy", NULL});
    expect_failure(&p, "unknown option '--frob'", "bench --frob");
    proc_free(&p);
    p = run_convoy((const char *[]){"eval", "--batch", "x", "m", "i", "l", NULL});
    expect_failure(&p, "--batch", "eval --batch x");
    proc_free(&p);
    p = run_convoy((const char *[]){"--threads", "-3", "inspect", "m.cvy", NULL});
    expect_failure(&p, "--threads", "--threads -3");
    proc_free(&p);
}
END_TEST

START_TEST(missing_model)
{
    const char *m = "/nonexistent/model.cvy";
    const char *cmds[][10] = {
        {"inspect", m, NULL},
        {"classify", m, "tests/data/fashion_00.png", NULL},
        {"run", m, "--input", "in.npy", "--output", "/tmp/convoy-never.npy", NULL},
        {"bench", "--seconds", "0.1", m, NULL},
        {"eval", m, T10K_IMAGES, T10K_LABELS, NULL},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        proc p = run_convoy(cmds[i]);
        expect_failure(&p, m, cmds[i][0]);
        ck_assert_str_eq(p.out, "");
        proc_free(&p);
    }
    /* a file that is not a model */
    proc p = run_convoy((const char *[]){"inspect", "Makefile", NULL});
    expect_failure(&p, "Makefile", "inspect Makefile");
    proc_free(&p);
}
END_TEST

/* ---- real outcomes on the Fashion-MNIST model -------------------------------------------- */

typedef struct golden {
    char name[64];
    int label, top;
    double prob;
} golden;

/* Reads fashion_golden.txt: lines "fashion_00.png LABEL TOP PROB" (torch's top-1). */
static int read_golden(golden *g, int cap)
{
    require_file(DATA "fashion_golden.txt");
    FILE *f = fopen(DATA "fashion_golden.txt", "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[strspn(line, " \t\r\n")] == '\0') continue;
        ck_assert_int_lt(n, cap);
        ck_assert_msg(
            sscanf(line, "%63s %d %d %lf", g[n].name, &g[n].label, &g[n].top, &g[n].prob) == 4,
            "fashion_golden.txt: line '%s' is not 'NAME LABEL TOP PROB'", line);
        n++;
    }
    fclose(f);
    return n;
}

START_TEST(classify_matches_torch)
{
    require_file(MODEL);
    golden g[64];
    int ng = read_golden(g, 64);
    ck_assert_int_eq(ng, 16);
    glob_t gl;
    ck_assert_int_eq(glob(DATA "fashion_*.png", 0, NULL, &gl), 0);
    ck_assert_uint_eq(gl.gl_pathc, 16);

    const char *args[40] = {"classify", "--json", "--top", "3", MODEL};
    int na = 5;
    for (size_t i = 0; i < gl.gl_pathc; i++) args[na++] = gl.gl_pathv[i];
    args[na] = NULL;
    proc p = run_convoy(args);
    ck_assert_msg(p.status == 0, "classify failed: %s", p.err);
    ck_assert_str_eq(p.err, "");

    json_error_t jerr;
    json_t *root = json_loads(p.out, 0, &jerr);
    ck_assert_msg(root != NULL, "not JSON (%s): %s", jerr.text, p.out);
    ck_assert(json_is_object(root));
    ck_assert_int_eq(json_object_size(root), 1);
    json_t *results = json_object_get(root, "results");
    ck_assert(json_is_array(results));
    ck_assert_uint_eq(json_array_size(results), gl.gl_pathc);
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        const char *base = strrchr(gl.gl_pathv[i], '/') + 1;
        const golden *want = NULL;
        for (int k = 0; k < ng; k++)
            if (strcmp(g[k].name, base) == 0) want = &g[k];
        ck_assert_msg(want != NULL, "%s is not in fashion_golden.txt", base);

        json_t *r = json_array_get(results, i);
        ck_assert(json_is_object(r));
        ck_assert_int_eq(json_object_size(r), 1);
        json_t *preds = json_object_get(r, "predictions");
        ck_assert(json_is_array(preds));
        ck_assert_uint_eq(json_array_size(preds), 3);
        double prev = 2.0;
        for (size_t k = 0; k < 3; k++) {
            json_t *pr = json_array_get(preds, k);
            ck_assert(json_is_object(pr));
            ck_assert_int_eq(json_object_size(pr), 3);
            ck_assert(json_is_string(json_object_get(pr, "label")));
            ck_assert(json_is_integer(json_object_get(pr, "index")));
            ck_assert(json_is_number(json_object_get(pr, "score")));
            double score = json_number_value(json_object_get(pr, "score"));
            ck_assert(score <= prev && score >= 0.0);
            prev = score;
        }
        json_t *best = json_array_get(preds, 0);
        int idx = (int)json_integer_value(json_object_get(best, "index"));
        double score = json_number_value(json_object_get(best, "score"));
        ck_assert_msg(idx == want->top, "%s: convoy top-1 %d, torch %d", base, idx, want->top);
        ck_assert_msg(fabs(score - want->prob) <= 1e-4, "%s: convoy p=%.6f, torch %.6f", base,
                      score, want->prob);
    }
    json_decref(root);
    proc_free(&p);

    /* text output: the file, then K = 5 lines "  label  index  score" */
    p = run_convoy((const char *[]){"classify", MODEL, gl.gl_pathv[0], gl.gl_pathv[1], NULL});
    ck_assert_msg(p.status == 0, "classify failed: %s", p.err);
    ck_assert_int_eq(count_lines(p.out), 12);
    ck_assert(strncmp(p.out, gl.gl_pathv[0], strlen(gl.gl_pathv[0])) == 0);
    char *second = strchr(p.out, '\n') + 1;
    ck_assert(strncmp(second, "  ", 2) == 0);
    proc_free(&p);
    globfree(&gl);
}
END_TEST

START_TEST(classify_bad_image)
{
    require_file(MODEL);
    proc p =
        run_convoy((const char *[]){"classify", MODEL, DATA "fashion_00.png", "Makefile", NULL});
    expect_failure(&p, "Makefile", "classify Makefile");
    ck_assert_str_eq(p.out, ""); /* nothing half-printed */
    proc_free(&p);
    p = run_convoy((const char *[]){"classify", "--json", MODEL, "/nonexistent/a.png", NULL});
    expect_failure(&p, "/nonexistent/a.png", "classify missing file");
    proc_free(&p);
}
END_TEST

/* Runs `convoy [--threads T] run` on the batch into dir/name and reads the result. */
static void run_batch(const char *dir, const char *threads, npy_array *out)
{
    char path[256];
    snprintf(path, sizeof path, "%s/out-%s.npy", dir, threads);
    proc p = run_convoy((const char *[]){"--threads", threads, "run", MODEL, "--input",
                                         DATA "fashion_batch16.npy", "--output", path, NULL});
    ck_assert_msg(p.status == 0, "run failed: %s", p.err);
    proc_free(&p);
    cvy_error err = {{0}};
    ck_assert_msg(npy_read(path, out, &err) == 0, "%s", err.msg);
    unlink(path);
}

START_TEST(run_matches_torch)
{
    require_file(MODEL);
    require_file(DATA "fashion_batch16.npy");
    require_file(DATA "fashion_batch16_out.npy");
    char dir[] = "/tmp/convoy-cli-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    npy_array want, got1, got2;
    cvy_error err = {{0}};
    ck_assert_msg(npy_read(DATA "fashion_batch16_out.npy", &want, &err) == 0, "%s", err.msg);
    run_batch(dir, "1", &got1);
    run_batch(dir, "2", &got2);
    ck_assert_int_eq(got1.ndim, 2);
    ck_assert_int_eq(want.ndim, 2);
    ck_assert_uint_eq(got1.dims[0], want.dims[0]);
    ck_assert_uint_eq(got1.dims[1], want.dims[1]);
    double maxdiff = 0;
    for (size_t i = 0; i < want.count; i++)
        maxdiff = fmax(maxdiff, fabs((double)got1.data[i] - (double)want.data[i]));
    ck_assert_msg(maxdiff <= 1e-4, "max |convoy - torch| = %g", maxdiff);
    /* the header promises outputs independent of the thread count */
    ck_assert_mem_eq(got1.data, got2.data, got1.count * sizeof(float));
    npy_free(&want);
    npy_free(&got1);
    npy_free(&got2);

    /* a batch of the wrong shape */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad.npy", dir);
    static float zeros[2 * 3 * 28 * 28];
    size_t dims[4] = {2, 3, 28, 28};
    ck_assert_int_eq(npy_write(bad, zeros, 4, dims, &err), 0);
    char outp[300];
    snprintf(outp, sizeof outp, "%s/never.npy", dir);
    proc p = run_convoy((const char *[]){"run", MODEL, "--input", bad, "--output", outp, NULL});
    expect_failure(&p, "shape", "run with a 3-channel batch");
    ck_assert_int_ne(access(outp, F_OK), 0);
    proc_free(&p);
    unlink(bad);
    rmdir(dir);
}
END_TEST

START_TEST(eval_matches_torch)
{
    require_file(MODEL);
    require_file(T10K_IMAGES);
    require_file(T10K_LABELS);
    require_file(DATA "fashion_torch_accuracy.txt");
    FILE *f = fopen(DATA "fashion_torch_accuracy.txt", "r");
    double torch_acc = -1;
    ck_assert_int_eq(fscanf(f, "%lf", &torch_acc), 1);
    fclose(f);

    proc p = run_convoy((const char *[]){"eval", MODEL, T10K_IMAGES, T10K_LABELS, NULL});
    ck_assert_msg(p.status == 0, "eval failed: %s", p.err);
    ck_assert_str_eq(p.err, ""); /* no progress bar when stderr is not a terminal */
    double acc = -1;
    int correct = -1, total = -1;
    ck_assert_msg(sscanf(p.out, "accuracy: %lf (%d/%d)", &acc, &correct, &total) == 3,
                  "unexpected output '%s'", p.out);
    ck_assert_int_eq(total, 10000);
    ck_assert(fabs(acc - (double)correct / total) < 6e-5);
    ck_assert_msg(acc >= 0.910, "accuracy %.4f < 0.910", acc);
    ck_assert_msg(fabs(acc - torch_acc) <= 0.001 + 1e-9, "accuracy %.4f, torch %.4f", acc,
                  torch_acc);
    proc_free(&p);
}
END_TEST

START_TEST(bench_json_and_inspect)
{
    require_file(MODEL);
    proc p = run_convoy((const char *[]){"bench", "--json", "--batch", "2", "--seconds", "0.3",
                                         "--warmup", "1", "--threads", "1", MODEL, NULL});
    ck_assert_msg(p.status == 0, "bench failed: %s", p.err);
    json_error_t jerr;
    json_t *o = json_loads(p.out, 0, &jerr);
    ck_assert_msg(o != NULL, "not JSON: %s", p.out);
    ck_assert_int_eq(json_object_size(o), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "batch")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "threads")), 1);
    double med = json_number_value(json_object_get(o, "median_ms"));
    double p90 = json_number_value(json_object_get(o, "p90_ms"));
    double ips = json_number_value(json_object_get(o, "images_per_s"));
    ck_assert(med > 0 && p90 >= med);
    ck_assert_msg(fabs(ips - 2.0 / (med / 1e3)) <= 0.01 * ips + 0.01, "images/s %g vs %g", ips,
                  2.0 / (med / 1e3));
    json_decref(o);
    proc_free(&p);

    /* --profile: one entry per plan step, named as inspect names them */
    p = run_convoy((const char *[]){"bench", "--json", "--profile", "--seconds", "0.2", "--threads",
                                    "1", MODEL, NULL});
    ck_assert_msg(p.status == 0, "bench --profile failed: %s", p.err);
    o = json_loads(p.out, 0, &jerr);
    ck_assert_msg(o != NULL, "not JSON: %s", p.out);
    json_t *layers = json_object_get(o, "layers");
    size_t nl = json_array_size(layers); /* 5 where each pool is fused into its conv */
    ck_assert_msg(nl == 5 || nl == 7, "%zu layers", nl);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_array_get(layers, nl == 5 ? 1 : 2), "name")),
        "conv2");
    for (size_t l = 0; l < nl; l++)
        ck_assert(json_number_value(json_object_get(json_array_get(layers, l), "ms")) >= 0);
    json_decref(o);
    proc_free(&p);

    p = run_convoy((const char *[]){"inspect", MODEL, NULL});
    ck_assert_msg(p.status == 0, "inspect failed: %s", p.err);
    const char *h = strstr(p.out, "hash:");
    ck_assert_ptr_nonnull(h);
    h += 5 + strspn(h + 5, " ");
    ck_assert_uint_eq(strspn(h, "0123456789abcdef"), 16);
    ck_assert_ptr_nonnull(strstr(p.out, "1 x 28 x 28"));
    ck_assert_ptr_nonnull(strstr(p.out, "layers:"));
    ck_assert_ptr_nonnull(strstr(p.out, "total:"));
    proc_free(&p);
}
END_TEST

Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("usage");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, help_everywhere);
    tcase_add_test(tc, usage_errors);
    tcase_add_test(tc, missing_model);
    suite_add_tcase(s, tc);
    tc = tcase_create("fashion");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, classify_matches_torch);
    tcase_add_test(tc, classify_bad_image);
    tcase_add_test(tc, run_matches_torch);
    tcase_add_test(tc, eval_matches_torch);
    tcase_add_test(tc, bench_json_and_inspect);
    suite_add_tcase(s, tc);
    return s;
}
