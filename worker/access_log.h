/* Access-log formatting with Envoy's command operators (%START_TIME%,
 * %REQ(X?Y):N%, %RESPONSE_CODE% ...). A format is compiled once at start-up
 * into a list of pieces and rendered per request without allocation. */
#ifndef LEGATE_WORKER_ACCESS_LOG_H
#define LEGATE_WORKER_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Envoy's default format. */
#define ACCESS_LOG_DEFAULT_FORMAT                                                                  \
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "             \
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "                   \
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "      \
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n"

struct access_log_format;

/* What a finished request offers to the formatter. Header lookups are
 * case-insensitive; pseudo-headers ":method", ":path", ":authority" are asked
 * for by those names. A lookup returns NULL when absent. */
struct access_log_info {
    uint64_t start_time_us; /* wall clock, microseconds since the epoch */
    const char *(*req_header)(void *ctx, const char *name, size_t *len);
    const char *(*resp_header)(void *ctx, const char *name, size_t *len);
    void *ctx;
    const char *protocol;       /* "HTTP/1.1" */
    int response_code;          /* 0 if none was sent */
    const char *response_flags; /* "-" or e.g. "UF,URX" */
    uint64_t bytes_received;
    uint64_t bytes_sent;
    uint64_t duration_ms;
    const char *upstream_host;     /* "ip:port" or NULL */
    const char *upstream_cluster;  /* or NULL */
    const char *downstream_remote; /* "ip:port" */
};

/* NULL format means Envoy's default. Returns NULL with a message in err. */
struct access_log_format *access_log_format_compile(const char *format, char *err, size_t err_cap);
void access_log_format_free(struct access_log_format *f);
/* Compile every access-log format of a configuration, as start-up must before
 * anything runs: 0, or -1 with the first failure ("<file>: <where>: <why>"). */
struct config;
int access_log_check_config(const struct config *cfg, char *err, size_t err_cap);
int access_log_format_render(const struct access_log_format *f, const struct access_log_info *info,
                             struct buf *out);

#endif
