/*
 * v2.h - the KServe Open Inference Protocol v2 over REST.
 *
 *   GET  /v2                          {"name", "version", "extensions"}
 *   GET  /v2/health/live              200 {"live": true}
 *   GET  /v2/health/ready             200/503 {"ready": bool}
 *   GET  /v2/models/{m}[/versions/v]  {"name", "versions", "platform", "inputs", "outputs"}
 *   GET  /v2/models/{m}/ready         200/503 {"name", "ready"}
 *   POST /v2/models/{m}/infer         one input: FP32 [N,C,H,W] (flat or nested data), or
 *                                     BYTES [N] of base64-encoded images. Output "output" FP32
 *                                     [N, classes]: the model's raw output rows.
 * Errors: {"error": "message"}. The request "id" is echoed; "parameters": {"timeout": us}
 * sets a deadline.
 *
 * Extensions (Triton's, so tritonclient works): binary tensor data - with the header
 * Inference-Header-Content-Length the body is that many bytes of JSON followed by the raw
 * data of an input that gives parameters.binary_data_size (FP32 little-endian, or BYTES as
 * 4-byte little-endian length + bytes per element); "binary_data_output": true (request
 * parameters) or outputs[].parameters.binary_data answers the same way. Classification -
 * outputs[].parameters.classification = K answers BYTES [N, K] "score:index:label" strings.
 */
#ifndef SRV_V2_H
#define SRV_V2_H

#include "http.h"

void srv_v2_handle(srv_req *r);

#endif
