/*
 * admin.h - model control, as Triton's repository extension:
 *   POST /v2/repository/index                  [{name, version, state, reason}]
 *   POST /v2/repository/models/{name}/load     load or reload <models>/<name>.cvy now
 *   POST /v2/repository/models/{name}/unload   stop serving it (until an explicit load)
 * Allowed only with "Authorization: Bearer <admin-token>" when admin-token is set (401 without
 * credentials, 403 with wrong ones); without a token only from a loopback peer whose request
 * carries no proxy header (Forwarded, X-Forwarded-For, X-Real-IP), else 403.
 */
#ifndef SRV_ADMIN_H
#define SRV_ADMIN_H

#include "http.h"

/* Answers one of R_V2_REPO_INDEX, R_V2_REPO_LOAD, R_V2_REPO_UNLOAD on an HTTP thread. */
void srv_admin_handle(srv_req *r);

#endif
