/*
 * admin.c - see admin.h.
 */
#include "admin.h"
#include "log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* 1 when the connection comes from 127.0.0.0/8 or ::1 (also v4-mapped). */
static int peer_is_loopback(srv_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return 0;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

/* Compares without an early exit on the first differing byte. */
static int token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < lb; i++) d |= (unsigned char)(a[i % (la ? la : 1)] ^ b[i]);
    return d == 0;
}

static void respond_401(srv_req *r, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        srv_respond_error(r, 401, "unauthorized", "%s", msg);
        return;
    }
    srv_respond_buffer(r, 401, "application/json", s, strlen(s), "WWW-Authenticate",
                       "Bearer realm=\"convoyd\"");
}

/* Returns 1 when the request may use the admin endpoints; else answers 401/403 and returns 0. */
static int authorized(srv_req *r)
{
    const char *token = r->app->cfg->admin_token;
    if (*token) {
        const char *h = srv_req_header(r, "Authorization");
        if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
            respond_401(r, "admin endpoint: send Authorization: Bearer <admin token>");
            return 0;
        }
        h += 7;
        while (*h == ' ') h++;
        if (!token_equal(h, token)) {
            srv_log(SRV_LOG_WARN, "req=%llu: %s refused: wrong admin token",
                    (unsigned long long)r->id, r->url);
            srv_respond_error(r, 403, "forbidden", "admin endpoint: wrong token");
            return 0;
        }
        return 1;
    }
    if (!peer_is_loopback(r) || srv_req_header(r, "X-Forwarded-For") ||
        srv_req_header(r, "Forwarded") || srv_req_header(r, "X-Real-IP")) {
        srv_log(SRV_LOG_WARN, "req=%llu: %s refused: not from loopback and no admin token set",
                (unsigned long long)r->id, r->url);
        srv_respond_error(r, 403, "forbidden",
                          "admin endpoint: allowed only from loopback (no admin-token is set)");
        return 0;
    }
    return 1;
}

void srv_admin_handle(srv_req *r)
{
    if (!authorized(r)) return;
    json_t *body = NULL;
    if (r->body && r->len) {
        json_error_t je;
        body = json_loadb(r->body, r->len, 0, &je);
        if (!body || !json_is_object(body)) {
            json_decref(body);
            srv_respond_error(r, 400, "bad_json", "request body: expected a JSON object");
            return;
        }
    }
    if (r->route == R_V2_REPO_INDEX) {
        int ready_only = body && json_is_true(json_object_get(body, "ready"));
        json_decref(body);
        srv_respond_json(r, 200, srv_registry_index(r->app->reg, ready_only));
        return;
    }
    json_decref(body);
    if (!srv_model_name_ok(r->name)) {
        srv_respond_error(r, 400, "bad_model_name",
                          "model name '%.128s': use [A-Za-z0-9._-]+, no leading '.', no '..'",
                          r->name);
        return;
    }
    if (r->route == R_V2_REPO_UNLOAD) {
        if (srv_registry_unload(r->app->reg, r->name, 0) < 0) {
            srv_respond_error(r, 404, "model_not_found", "unknown model '%s'", r->name);
            return;
        }
        srv_log(SRV_LOG_NOTICE, "req=%llu: model %s unloaded by API", (unsigned long long)r->id,
                r->name);
        srv_respond_json(r, 200, json_pack("{s:s,s:s}", "name", r->name, "state", "UNAVAILABLE"));
        return;
    }
    char msg[640];
    int res = srv_registry_load(r->app->reg, r->name, SRV_LOAD_EXPLICIT, msg, sizeof msg);
    srv_log(SRV_LOG_NOTICE, "req=%llu: load by API: %s", (unsigned long long)r->id, msg);
    if (res == SRV_MISSING) {
        srv_respond_error(r, 404, "model_not_found", "no model file %s.cvy in the model directory",
                          r->name);
        return;
    }
    if (res == SRV_FAILED) {
        srv_respond_error(r, 400, "load_failed", "%s", msg);
        return;
    }
    json_t *d = srv_registry_describe(r->app->reg, r->name);
    json_t *v = json_object_get(d, "version");
    srv_respond_json(r, 200,
                     json_pack("{s:s,s:O,s:s,s:s}", "name", r->name, "version", v ? v : json_null(),
                               "state", "READY", "result",
                               res == SRV_LOADED ? "loaded" : "unchanged"));
    json_decref(d);
}
