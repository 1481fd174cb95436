/* The admin listener's handler. This subset: liveness and help; the
 * stats endpoints come with the shared-memory statistics. */
#include <string.h>

#include "common/proc.h"
#include "worker/worker.h"

struct admin_endpoint {
    const char *path;
    const char *help;
    void (*handle)(struct worker *w, int *status, struct buf *body, const char **ctype);
};

static void admin_ready(struct worker *w, int *status, struct buf *body, const char **ctype)
{
    *status = w->draining ? 503 : 200;
    *ctype = "text/plain";
    buf_printf(body, "%s\n", w->draining ? "DRAINING" : "LIVE");
}

static void admin_server_info(struct worker *w, int *status, struct buf *body, const char **ctype)
{
    *status = 200;
    *ctype = "application/json";
    buf_printf(body,
               "{\"version\":\"%s\",\"state\":\"%s\",\"command_line_options\":"
               "{\"concurrency\":%u,\"base_id\":%u}}\n",
               LEGATE_VERSION, w->draining ? "DRAINING" : "LIVE", w->ctx->concurrency,
               w->ctx->base_id);
}

static void admin_help(struct worker *w, int *status, struct buf *body, const char **ctype);

static const struct admin_endpoint endpoints[] = {
    {"/ready", "print server state, return 200 if LIVE, otherwise 503", admin_ready},
    {"/server_info", "print server version/status information", admin_server_info},
    {"/help", "print out list of admin commands", admin_help},
};

static void admin_help(struct worker *w, int *status, struct buf *body, const char **ctype)
{
    (void)w;
    *status = 200;
    *ctype = "text/plain";
    buf_printf(body, "admin commands are:\n");
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++)
        buf_printf(body, "  %s: %s\n", endpoints[i].path, endpoints[i].help);
}

void admin_handle(struct worker *w, const char *method, const char *path, int *status,
                  struct buf *body, const char **content_type)
{
    size_t plen = strcspn(path, "?");
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
        if (strlen(endpoints[i].path) != plen || memcmp(endpoints[i].path, path, plen) != 0)
            continue;
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
            *status = 405;
            *content_type = "text/plain";
            buf_printf(body, "%s accepts GET only\n", endpoints[i].path);
            return;
        }
        endpoints[i].handle(w, status, body, content_type);
        return;
    }
    *status = 404;
    *content_type = "text/plain";
    buf_printf(body, "no admin endpoint %.*s; see /help\n", (int)plen, path);
}
