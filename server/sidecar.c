/* sidecar.c - reading <name>.json, the labels and preprocessing of an ONNX model (jansson). */
#include "sidecar.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Reads one number or an array of one or three numbers into v[3]. */
static int three(json_t *j, float v[3])
{
    if (json_is_number(j)) {
        v[0] = v[1] = v[2] = (float)json_number_value(j);
    } else if (json_is_array(j) && (json_array_size(j) == 1 || json_array_size(j) == 3)) {
        for (size_t i = 0; i < 3; i++) {
            json_t *e = json_array_get(j, json_array_size(j) == 1 ? 0 : i);
            if (!json_is_number(e)) return -1;
            v[i] = (float)json_number_value(e);
        }
    } else {
        return -1;
    }
    return isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]) ? 0 : -1;
}

int srv_sidecar_read(const char *json_path, const char *dir, cvy_onnx_options *o,
                     char *labels_buf, size_t labels_len, char *err, size_t err_len)
{
    *o = cvy_onnx_default_options();
    json_error_t je;
    json_t *root = json_load_file(json_path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        FILE *f = fopen(json_path, "r");
        if (!f && errno == ENOENT) return 0; /* no sidecar: defaults */
        if (f) fclose(f);
        snprintf(err, err_len, "%s: line %d: %s", json_path, je.line, je.text);
        return -1;
    }
    int rc = -1;
    const char *key;
    json_t *v;
    if (!json_is_object(root)) {
        snprintf(err, err_len, "%s: not a JSON object", json_path);
        goto out;
    }
    json_object_foreach(root, key, v) {
        const char *s = json_string_value(v);
        int bad = 0;
        if (!strcmp(key, "labels")) {
            bad = !s || !*s || s[0] == '.' || strchr(s, '/') ||
                  snprintf(labels_buf, labels_len, "%s/%s", dir, s) >= (int)labels_len;
            if (!bad) o->labels_path = labels_buf;
        } else if (!strcmp(key, "size")) {
            char tail;
            bad = !s || sscanf(s, "%dx%d%c", &o->height, &o->width, &tail) != 2 ||
                  o->height < 1 || o->width < 1 || o->height > 16384 || o->width > 16384;
        } else if (!strcmp(key, "color")) {
            o->color = !s ? -2 : !strcmp(s, "rgb") ? CVY_COLOR_RGB : !strcmp(s, "bgr") ? CVY_COLOR_BGR
                       : !strcmp(s, "gray") ? CVY_COLOR_GRAY : -2;
            bad = o->color == -2;
        } else if (!strcmp(key, "mean")) {
            bad = three(v, o->mean) != 0;
        } else if (!strcmp(key, "std")) {
            bad = three(v, o->std) != 0 || o->std[0] == 0 || o->std[1] == 0 || o->std[2] == 0;
        } else if (!strcmp(key, "scale")) {
            o->scale = (float)json_number_value(v);
            bad = !json_is_number(v) || o->scale == 0 || !isfinite(o->scale);
        } else if (!strcmp(key, "resize")) {
            bad = !s || (strcmp(s, "stretch") && strcmp(s, "shorter-side-crop"));
            if (!bad) o->resize = s[0] == 's' && s[1] == 't' ? CVY_RESIZE_STRETCH
                                                                : CVY_RESIZE_SHORTER_CROP;
        } else if (!strcmp(key, "resize_shorter")) {
            bad = !json_is_integer(v) || json_integer_value(v) < 0 ||
                  json_integer_value(v) > 65536;
            if (!bad) o->resize_shorter = (int)json_integer_value(v);
        } else {
            snprintf(err, err_len, "%s: unknown field \"%s\"", json_path, key);
            goto out;
        }
        if (bad) {
            snprintf(err, err_len, "%s: invalid value for \"%s\"", json_path, key);
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}
