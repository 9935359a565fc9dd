/*
 * unit_zoo.c - the ONNX importer on real architectures and on bad input.
 *
 * zoo: every reduced-width model under tests/data/zoo/ (written by tools/export_models.py)
 * converts, runs its reference batch, and matches torch: top-1 identical on every image and
 * max|diff| <= 1e-4 * max|ref|.
 * errors: malformed files, unsupported operators and attribute values, dynamic sizes fail
 * with a message naming the node, operator and attribute - never a crash.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convoy.h"
#include "../tools/npy.h"
#include "onnx.pb-c.h"

#define ZOO "tests/data/zoo/"

static const char *const MODELS[] = {
    "resnet18",           "resnet50",        "mobilenet_v2",
    "mobilenet_v3_small", "squeezenet1_1",   "vgg11",
    "densenet121",        "efficientnet_b0", "googlenet",
    "shufflenet_v2_x1_0", "tutorial_cnn",    "patterns_opset9",
    "patterns_opset17",   "patterns_1d",
};
#define N_MODELS (int)(sizeof MODELS / sizeof MODELS[0])

static cvy_engine *new_engine(void)
{
    cvy_engine *e;
    cvy_error err;
    cvy_engine_params ep = cvy_engine_default_params();
    ep.threads = 2;
    ck_assert_msg(cvy_engine_create(&ep, &e, &err) == CVY_OK, "%s", err.msg);
    return e;
}

START_TEST(zoo_model_matches_torch)
{
    const char *name = MODELS[_i];
    char path[256];
    cvy_error err = {{0}};
    npy_array in = {0}, ref = {0};
    snprintf(path, sizeof path, ZOO "%s_input.npy", name);
    ck_assert_msg(npy_read(path, &in, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, ZOO "%s_ref.npy", name);
    ck_assert_msg(npy_read(path, &ref, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, ZOO "%s.onnx", name);
    cvy_engine *e = new_engine();
    cvy_model *m;
    ck_assert_msg(cvy_model_load_onnx(e, path, NULL, &m, &err) == CVY_OK, "%s: %s", name, err.msg);
    int n = (int)in.dims[0];
    size_t osz = cvy_model_output_size(m);
    ck_assert_uint_eq(cvy_model_input_size(m) * (size_t)n, in.count);
    ck_assert_uint_eq(osz * (size_t)n, ref.count);
    cvy_context *ctx;
    ck_assert_msg(cvy_context_create(m, n, &ctx, &err) == CVY_OK, "%s", err.msg);
    float *out = malloc(ref.count * sizeof *out);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(cvy_context_run(ctx, n, in.data, out, &err) == CVY_OK, "%s", err.msg);
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < ref.count; i++) {
        maxref = fmax(maxref, fabs(ref.data[i]));
        maxdiff = fmax(maxdiff, fabs((double)out[i] - ref.data[i]));
    }
    for (int b = 0; b < n; b++) {
        size_t bo = 0, br = 0;
        for (size_t k = 1; k < osz; k++) {
            if (out[b * osz + k] > out[b * osz + bo]) bo = k;
            if (ref.data[b * osz + k] > ref.data[b * osz + br]) br = k;
        }
        ck_assert_msg(bo == br, "%s image %d: top-1 %zu, torch %zu", name, b, bo, br);
    }
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "%s: max|diff| %g > 1e-4 * max|ref| %g", name, maxdiff,
                  maxref);
    free(out);
    cvy_context_destroy(ctx);
    cvy_model_free(m);
    cvy_engine_destroy(e);
    npy_free(&in);
    npy_free(&ref);
}
END_TEST

/* DenseNet's and GoogLeNet's concats (DenseNet's nested past six inputs by the importer)
 * are planned as views: every feature map is written into its slice, nothing is copied. The
 * goldens above prove the results at batch 2. */
START_TEST(concats_are_views)
{
    static const char *names[] = {"densenet121", "googlenet", "squeezenet1_1"};
    for (int k = 0; k < 3; k++) {
        char path[256];
        cvy_error err = {{0}};
        snprintf(path, sizeof path, ZOO "%s.onnx", names[k]);
        cvy_engine *e = new_engine();
        cvy_model *m;
        ck_assert_msg(cvy_model_load_onnx(e, path, NULL, &m, &err) == CVY_OK, "%s", err.msg);
        for (int l = 0; l < cvy_model_layer_count(m); l++) {
            cvy_layer_info li;
            ck_assert_int_eq(cvy_model_layer(m, l, &li), CVY_OK);
            ck_assert_msg(strcmp(li.op, "Concat") != 0, "%s: layer %d (%s) copies", names[k], l,
                          li.name);
        }
        cvy_model_free(m);
        cvy_engine_destroy(e);
    }
}
END_TEST

/* ---- small models built in memory -------------------------------------------------------- */

/* A one-node model: input x (1, 2, H, W) -> op -> y, with weight W for Conv. Attributes are
 * given as (name, ints or string). H < 0 makes H/W dynamic. */
typedef struct attr_spec {
    const char *name;
    int64_t ints[4];
    int n_ints;
    const char *s;
} attr_spec;

static const char *g_external; /* when set, Conv's W lives in this external data file */

static char *write_model(const char *op, const attr_spec *attrs, int n_attrs, int h, int opset,
                         const char *path)
{
    Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    Onnx__NodeProto node = ONNX__NODE_PROTO__INIT;
    Onnx__ValueInfoProto vin = ONNX__VALUE_INFO_PROTO__INIT, vout = ONNX__VALUE_INFO_PROTO__INIT;
    Onnx__TypeProto ty = ONNX__TYPE_PROTO__INIT;
    Onnx__TypeProto__Tensor tt = ONNX__TYPE_PROTO__TENSOR__INIT;
    Onnx__TensorShapeProto sh = ONNX__TENSOR_SHAPE_PROTO__INIT;
    Onnx__TensorShapeProto__Dimension d[4];
    Onnx__TensorShapeProto__Dimension *dp[4];
    Onnx__TensorProto w = ONNX__TENSOR_PROTO__INIT;
    Onnx__TensorProto *wp = &w;
    Onnx__AttributeProto at[4], *atp[4];
    int64_t dims[4] = {1, 2, h, h}, wdims[4] = {2, 2, 3, 3};
    float wdata[36];
    for (int i = 0; i < 36; i++) wdata[i] = (float)(i % 5) - 2.0f;
    for (int i = 0; i < 4; i++) {
        onnx__tensor_shape_proto__dimension__init(&d[i]);
        if (dims[i] > 0) {
            d[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d[i].dim_value = dims[i];
        } else {
            d[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d[i].dim_param = i == 2 ? "height" : "width";
        }
        dp[i] = &d[i];
    }
    sh.n_dim = 4;
    sh.dim = dp;
    tt.has_elem_type = 1;
    tt.elem_type = 1;
    tt.shape = &sh;
    ty.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    ty.tensor_type = &tt;
    vin.name = "x";
    vin.type = &ty;
    vout.name = "y";
    Onnx__ValueInfoProto *vinp = &vin, *voutp = &vout;
    w.name = "W";
    w.n_dims = 4;
    w.dims = wdims;
    w.has_data_type = 1;
    w.data_type = 1;
    Onnx__StringStringEntryProto loc = ONNX__STRING_STRING_ENTRY_PROTO__INIT, *locp = &loc;
    if (g_external) {
        loc.key = "location";
        loc.value = (char *)g_external;
        w.n_external_data = 1;
        w.external_data = &locp;
        w.has_data_location = 1;
        w.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    } else {
        w.n_float_data = 36;
        w.float_data = wdata;
    }
    char *ins[2] = {"x", "W"}, *outs[1] = {"y"};
    node.name = "the_node";
    node.op_type = (char *)op;
    node.n_input = strcmp(op, "Conv") ? 1 : 2;
    node.input = ins;
    node.n_output = 1;
    node.output = outs;
    for (int i = 0; i < n_attrs; i++) {
        onnx__attribute_proto__init(&at[i]);
        at[i].name = (char *)attrs[i].name;
        if (attrs[i].s) {
            at[i].has_type = 1;
            at[i].type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
            at[i].has_s = 1;
            at[i].s.data = (uint8_t *)attrs[i].s;
            at[i].s.len = strlen(attrs[i].s);
        } else {
            at[i].has_type = 1;
            at[i].type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
            at[i].n_ints = (size_t)attrs[i].n_ints;
            at[i].ints = (int64_t *)attrs[i].ints;
        }
        atp[i] = &at[i];
    }
    node.n_attribute = (size_t)n_attrs;
    node.attribute = atp;
    Onnx__NodeProto *np = &node;
    g.n_node = 1;
    g.node = &np;
    g.name = "g";
    g.n_input = 1;
    g.input = &vinp;
    g.n_output = 1;
    g.output = &voutp;
    g.n_initializer = strcmp(op, "Conv") ? 0 : 1;
    g.initializer = &wp;
    os.has_version = 1;
    os.version = opset;
    Onnx__OperatorSetIdProto *osp = &os;
    mp.has_ir_version = 1;
    mp.ir_version = 7;
    mp.n_opset_import = 1;
    mp.opset_import = &osp;
    mp.graph = &g;
    size_t n = onnx__model_proto__get_packed_size(&mp);
    uint8_t *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    onnx__model_proto__pack(&mp, buf);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
    free(buf);
    return (char *)path;
}

static cvy_status convert(const char *path, const cvy_onnx_options *o, cvy_error *err)
{
    uint8_t *b = NULL;
    size_t n = 0;
    cvy_status s = cvy_onnx_convert(path, o, &b, &n, err);
    if (s == CVY_OK) {
        cvy_engine *e = new_engine();
        cvy_model *m;
        s = cvy_model_load_memory(e, b, n, &m, err);
        cvy_model_free(m);
        cvy_engine_destroy(e);
    } else {
        ck_assert_ptr_null(b);
    }
    free(b);
    return s;
}

static char tmp_path[64];

static const char *tmp_file(void)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/convoy_zoo_%d.onnx", (int)getpid());
    return tmp_path;
}

START_TEST(conv_with_defaults_converts)
{
    cvy_error err = {{0}};
    attr_spec a[1] = {{"pads", {1, 1, 1, 1}, 4, NULL}};
    write_model("Conv", a, 1, 8, 13, tmp_file());
    ck_assert_msg(convert(tmp_path, NULL, &err) == CVY_OK, "%s", err.msg);
    unlink(tmp_path);
}
END_TEST

START_TEST(unsupported_op_is_named)
{
    cvy_error err = {{0}};
    write_model("Abs", NULL, 0, 8, 13, tmp_file());
    ck_assert_int_eq(convert(tmp_path, NULL, &err), CVY_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "the_node") && strstr(err.msg, "Abs"), "%s", err.msg);
    unlink(tmp_path);
}
END_TEST

START_TEST(bad_attribute_is_named)
{
    cvy_error err = {{0}};
    attr_spec a[1] = {{"auto_pad", {0}, 0, "SAME_SIDEWAYS"}};
    write_model("Conv", a, 1, 8, 13, tmp_file());
    ck_assert_int_eq(convert(tmp_path, NULL, &err), CVY_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "the_node") && strstr(err.msg, "Conv") &&
                      strstr(err.msg, "auto_pad"),
                  "%s", err.msg);
    attr_spec b[1] = {{"kernel_shape", {3, 3, 3}, 3, NULL}};
    write_model("Conv", b, 1, 8, 13, tmp_file());
    ck_assert_int_eq(convert(tmp_path, NULL, &err), CVY_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "kernel_shape"), "%s", err.msg);
    attr_spec c[1] = {{"frobnicate", {1}, 1, NULL}};
    write_model("Relu", c, 1, 8, 13, tmp_file());
    ck_assert_int_eq(convert(tmp_path, NULL, &err), CVY_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "frobnicate") && strstr(err.msg, "Relu"), "%s", err.msg);
    unlink(tmp_path);
}
END_TEST

START_TEST(dynamic_size_needs_a_size)
{
    cvy_error err = {{0}};
    write_model("Relu", NULL, 0, -1, 13, tmp_file());
    ck_assert_int_eq(convert(tmp_path, NULL, &err), CVY_ERR_SHAPE);
    ck_assert_msg(strstr(err.msg, "height") && strstr(err.msg, "--size"), "%s", err.msg);
    cvy_onnx_options o = cvy_onnx_default_options();
    o.height = 12;
    o.width = 20;
    o.color = CVY_COLOR_GRAY; /* 2 channels: no image colour check */
    ck_assert_msg(convert(tmp_path, &o, &err) == CVY_OK, "%s", err.msg);
    write_model("Relu", NULL, 0, 8, 13, tmp_file());
    ck_assert_int_eq(convert(tmp_path, &o, &err), CVY_ERR_SHAPE); /* fixed 8x8 != 12x20 */
    unlink(tmp_path);
}
END_TEST

START_TEST(malformed_files_fail_cleanly)
{
    cvy_error err = {{0}};
    ck_assert_int_eq(convert("/nonexistent/model.onnx", NULL, &err), CVY_ERR_IO);
    FILE *f = fopen(tmp_file(), "wb");
    ck_assert_ptr_nonnull(f);
    fputs("this is not a protobuf \xff\xff\xff\xff", f);
    fclose(f);
    ck_assert_int_ne(convert(tmp_path, NULL, &err), CVY_OK);
    /* every truncation of a real model: an error, never a crash */
    FILE *r = fopen(ZOO "squeezenet1_1.onnx", "rb");
    ck_assert_ptr_nonnull(r);
    static uint8_t buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf, r);
    fclose(r);
    ck_assert_uint_gt(n, 1000);
    for (size_t cut = 0; cut < n; cut += n / 23 + 1) {
        f = fopen(tmp_path, "wb");
        ck_assert_uint_eq(fwrite(buf, 1, cut, f), cut);
        fclose(f);
        ck_assert_int_ne(convert(tmp_path, NULL, &err), CVY_OK);
    }
    unlink(tmp_path);
}
END_TEST

START_TEST(external_data_is_read_or_named)
{
    cvy_error err = {{0}};
    g_external = "convoy_zoo_missing.bin";
    write_model("Conv", NULL, 0, 8, 13, tmp_file());
    ck_assert_int_eq(convert(tmp_path, NULL, &err), CVY_ERR_IO);
    ck_assert_msg(strstr(err.msg, "'W'") && strstr(err.msg, "convoy_zoo_missing.bin"), "%s",
                  err.msg);
    /* present: the weights come from the file */
    char bin[96];
    snprintf(bin, sizeof bin, "/tmp/convoy_zoo_%d.bin", (int)getpid());
    g_external = bin + 5;
    float wdata[36];
    for (int i = 0; i < 36; i++) wdata[i] = 0.25f * (float)i;
    FILE *f = fopen(bin, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(wdata, sizeof(float), 36, f), 36);
    fclose(f);
    write_model("Conv", NULL, 0, 8, 13, tmp_file());
    ck_assert_msg(convert(tmp_path, NULL, &err) == CVY_OK, "%s", err.msg);
    /* too short */
    f = fopen(bin, "wb");
    ck_assert_uint_eq(fwrite(wdata, sizeof(float), 30, f), 30);
    fclose(f);
    ck_assert_int_eq(convert(tmp_path, NULL, &err), CVY_ERR_IO);
    g_external = NULL;
    unlink(bin);
    unlink(tmp_path);
}
END_TEST

START_TEST(opset_out_of_range_is_refused)
{
    cvy_error err = {{0}};
    write_model("Relu", NULL, 0, 8, 19, tmp_file());
    ck_assert_int_eq(convert(tmp_path, NULL, &err), CVY_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "opset 19"), "%s", err.msg);
    unlink(tmp_path);
}
END_TEST

/* Exit status of `convoy convert ARGS` (output silenced). */
static int convert_cli(const char *args)
{
    const char *b = getenv("CONVOY_BUILD");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/convoy convert %s >/dev/null 2>&1", b && *b ? b : "build", args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(convert_command)
{
    char out[64], args[512];
    snprintf(out, sizeof out, "/tmp/convoy_zoo_%d.cvy", (int)getpid());
    snprintf(args, sizeof args,
             ZOO "squeezenet1_1.onnx %s --size 64x64 --color bgr "
                 "--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --scale 0.0039215 "
                 "--resize shorter-side-crop",
             out);
    ck_assert_int_eq(convert_cli(args), 0);
    cvy_engine *e = new_engine();
    cvy_model *m;
    cvy_error err;
    ck_assert_msg(cvy_model_load_file(e, out, &m, &err) == CVY_OK, "%s", err.msg);
    const cvy_preproc *pp = cvy_model_preproc(m);
    ck_assert_int_eq(pp->color, CVY_COLOR_BGR);
    ck_assert_int_eq(pp->resize, CVY_RESIZE_SHORTER_CROP);
    ck_assert(fabsf(pp->std[2] - 0.225f) < 1e-7f && fabsf(pp->mean[0] - 0.485f) < 1e-7f);
    cvy_model_free(m);
    cvy_engine_destroy(e);
    unlink(out);
    ck_assert_int_eq(convert_cli("--help"), 0);
    snprintf(args, sizeof args, ZOO "squeezenet1_1.onnx %s --size 64", out);
    ck_assert_int_eq(convert_cli(args), 2);
    snprintf(args, sizeof args, ZOO "squeezenet1_1.onnx %s --color cmyk", out);
    ck_assert_int_eq(convert_cli(args), 2);
    snprintf(args, sizeof args, ZOO "squeezenet1_1.onnx %s --size 32x32", out);
    ck_assert_int_eq(convert_cli(args), 1); /* fixed 64x64 */
    ck_assert_int_eq(convert_cli("/nonexistent.onnx /tmp/x.cvy"), 1);
    ck_assert_int_ne(access(out, F_OK), 0); /* nothing written on failure */
}
END_TEST

Suite *zoo_suite(void)
{
    Suite *s = suite_create("zoo");
    TCase *tc = tcase_create("zoo");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, zoo_model_matches_torch, 0, N_MODELS);
    tcase_add_test(tc, concats_are_views);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("onnx-errors");
    tcase_set_timeout(te, 60);
    tcase_add_test(te, conv_with_defaults_converts);
    tcase_add_test(te, unsupported_op_is_named);
    tcase_add_test(te, bad_attribute_is_named);
    tcase_add_test(te, dynamic_size_needs_a_size);
    tcase_add_test(te, malformed_files_fail_cleanly);
    tcase_add_test(te, opset_out_of_range_is_refused);
    tcase_add_test(te, external_data_is_read_or_named);
    tcase_add_test(te, convert_command);
    suite_add_tcase(s, te);
    return s;
}
