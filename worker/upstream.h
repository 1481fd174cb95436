/* The upstream side of a proxied HTTP/1.1 request: one connection to one host,
 * taken from (and returned to) that host's pool. The stream that owns it is
 * told what happens through callbacks; it never touches the socket. */
#ifndef LEGATE_WORKER_UPSTREAM_H
#define LEGATE_WORKER_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "worker/http1.h"
#include "worker/worker.h"

enum upstream_failure {
    UPSTREAM_CONNECT_FAILED,  /* connect() refused or failed */
    UPSTREAM_CONNECT_TIMEOUT, /* cluster connect_timeout passed */
    UPSTREAM_RESET,           /* closed or reset before the response completed */
    UPSTREAM_PROTOCOL_ERROR,  /* the response did not parse */
};

struct upstream_callbacks {
    void (*on_head)(void *owner, const struct h1_head *head);
    void (*on_body)(void *owner, const char *data, size_t len);
    void (*on_complete)(void *owner);
    /* After this the connection is gone; the owner must drop its pointer. */
    void (*on_failure)(void *owner, enum upstream_failure why);
    /* The request bytes queued for the upstream fell below the low watermark. */
    void (*on_drained)(void *owner);
    /* Everything one read brought has been delivered: head and body pieces
     * are not flushed one by one, but once here (one write downstream, one
     * TCP segment for a small response, instead of one per piece). */
    void (*on_read_end)(void *owner);
};

struct upstream;

/* Reuse an idle pooled connection to `h`, or start connecting a new one. */
struct upstream *upstream_open(struct worker *w, struct host *h,
                               const struct upstream_callbacks *cb, void *owner);
/* Where the owner writes the request (head and framed body); then call upstream_flush. */
struct buf *upstream_out(struct upstream *u);
void upstream_flush(struct upstream *u);
/* The queued request bytes went above the high watermark and have not yet
 * fallen below the low one (on_drained reports the fall). */
bool upstream_over_watermark(const struct upstream *u);
/* The request was HEAD: the response has no body whatever it says. */
void upstream_expect_head_response(struct upstream *u, bool is_head);
/* Stop or resume reading the response (downstream back-pressure). */
void upstream_pause(struct upstream *u, bool paused);
/* The owner is done: reuse it if `reusable` and the exchange was complete,
 * close it otherwise. Either way the owner drops its pointer. */
void upstream_release(struct upstream *u, bool reusable);
/* Close every idle pooled connection to `h` (a host leaving the table). */
void upstream_close_idle_of(struct host *h);

#endif
