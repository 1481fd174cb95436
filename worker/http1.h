/* HTTP/1.x message codec: bytes in, message events out. No sockets, no timers.
 *
 * Framing and start-line parsing come from Debian's http_parser (2.9); legate adds
 * the strict checks of RFC 9112 that http_parser tolerates (request smuggling
 * defences), header-size limits, and the keep-alive rules. Debian builds
 * http_parser without HTTP_PARSER_STRICT: it takes bare LF, obs-fold, "Host : x",
 * junk after a chunk size, and a missing CRLF after chunk data. legate's own
 * scanner rejects all of those before http_parser sees the bytes, and tracks
 * chunked framing itself; see worker/http1.c.
 *
 * One parser instance follows one connection; it stops after each complete
 * message so that a pipelined request waits until the previous response is
 * done. A 1xx response is a complete message of its own (body NONE): the final
 * response follows after h1_parser_resume(). Trailer fields are checked like
 * header fields and then dropped. */
#ifndef LEGATE_WORKER_HTTP1_H
#define LEGATE_WORKER_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <stdint.h>
#include <sys/types.h>

#include <http_parser.h>

/* Limits on a head (and, separately, on a trailer section); over either is 431.
 * The head's bytes are the start line, the field lines and the final empty
 * line, CRLFs included, plus any empty lines skipped before the start line. */
#define H1_MAX_HEADERS 100            /* field lines */
#define H1_MAX_HEAD_BYTES (60 * 1024) /* exactly 60 KiB is accepted */

enum h1_kind {
    H1_REQUEST,
    H1_RESPONSE,
};

enum h1_body {
    H1_BODY_NONE,    /* no body (no CL/TE on a request; 1xx/204/304/HEAD response) */
    H1_BODY_LENGTH,  /* Content-Length: content_length bytes */
    H1_BODY_CHUNKED, /* Transfer-Encoding: chunked */
    H1_BODY_EOF,     /* response delimited by connection close */
};

struct h1_header {
    const char *name; /* as received (case preserved); not NUL-terminated */
    size_t name_len;
    const char *value; /* leading/trailing whitespace removed; not NUL-terminated */
    size_t value_len;
};

/* A parsed message head. Strings point into the parser's own storage and stay
 * valid until h1_parser_resume() or h1_parser_free(). */
struct h1_head {
    /* requests (NULL / 0 in a response head) */
    const char *method; /* NUL-terminated, e.g. "GET" */
    enum http_method method_id;
    const char *path; /* NUL-terminated origin-form path+query; for absolute-form
                         targets, the path of the URI ("/" if empty) */
    size_t path_len;
    const char *authority; /* NUL-terminated: the absolute-form URI's authority if
                              present (it wins), else the Host header; NULL if none */
    size_t authority_len;
    /* responses (0 / NULL in a request head) */
    int status;         /* e.g. 200 */
    const char *reason; /* NUL-terminated reason phrase (may be empty) */
    /* both */
    int version_major;
    int version_minor;
    struct h1_header *headers; /* all header fields in order, including hop-by-hop ones */
    size_t n_headers;
    bool keep_alive;      /* connection may persist after this message (version + Connection;
                             always false for H1_BODY_EOF) */
    bool expect_continue; /* request had "Expect: 100-continue" (HTTP/1.1) */
    bool upgrade;         /* Connection: upgrade + Upgrade header present (HTTP/1.1
                             requests; 101 responses) */
    bool connection_names_fields; /* a Connection field names a field that is not
                                     hop-by-hop anyway (anything but keep-alive
                                     and upgrade) */
    enum h1_body body;
    uint64_t content_length; /* valid when body == H1_BODY_LENGTH */
};

struct h1_callbacks {
    /* The head is complete and valid. Return 0 to go on, -1 to stop parsing
     * (h1_parser_feed then returns -1 with error status 0). */
    int (*on_head)(void *ctx, const struct h1_head *head);
    /* Decoded body bytes (de-chunked). Return 0 or -1 as above. */
    int (*on_body)(void *ctx, const char *data, size_t len);
    /* The message is complete (trailers, if any, were read and dropped).
     * Return 0 or -1 as above. h1_parser_resume() may be called from here. */
    int (*on_complete)(void *ctx);
};

struct h1_parser; /* opaque */

struct h1_parser *h1_parser_new(enum h1_kind kind, const struct h1_callbacks *cb, void *ctx);
void h1_parser_free(struct h1_parser *p);

/* For H1_RESPONSE: the request this response answers was HEAD (no body
 * whatever its headers say). Call before feeding the response. The setting
 * stays until changed (it survives h1_parser_resume, so it still applies to the
 * final response after a 1xx): call it for every request, true or false. */
void h1_parser_expect_head_response(struct h1_parser *p, bool is_head);

/* Feed bytes. Returns how many were consumed (>= 0), or -1 on error.
 * After on_complete the parser stops and returns the bytes consumed so far:
 * the rest belongs to the next message. Feed it again after h1_parser_resume().
 * While stopped, h1_parser_feed consumes nothing and returns 0. While running,
 * it consumes everything it is given (head bytes are copied; the buffer may be
 * reused as soon as it returns). Errors are sticky: every later call returns -1.
 * A head error is found before on_head; a body-framing error (chunked syntax)
 * comes after on_head and the body bytes before the bad byte, never after. */
ssize_t h1_parser_feed(struct h1_parser *p, const char *data, size_t len);

/* The peer closed its side. For a close-delimited response this completes the
 * message (on_complete is called) and returns 0; in the middle of any other
 * message it returns -1 (truncated); between messages it returns 0. */
int h1_parser_finish(struct h1_parser *p);

/* Start the next message on this connection (after on_complete; a no-op
 * otherwise). Called from inside on_complete, it takes effect when the current
 * h1_parser_feed returns, which is still at the end of that message. */
void h1_parser_resume(struct h1_parser *p);

/* True between on_complete and h1_parser_resume. */
bool h1_parser_is_stopped(const struct h1_parser *p);

/* True if no byte of a next message has been consumed yet (idle connection);
 * empty lines before a request line (RFC 9112 §2.2) do not count. */
bool h1_parser_is_idle(const struct h1_parser *p);
/* Between messages, with nothing of the next one seen: give back the head
 * storage (the next head allocates it again), so that an idle keep-alive
 * connection holds none. Does nothing otherwise. */
void h1_parser_trim(struct h1_parser *p);

/* After -1: the HTTP status to answer with, or 0 if a callback asked to stop;
 * and a short reason for logs and the response body, e.g. "invalid
 * Content-Length". Statuses: 400 Bad Request (any framing or syntax error,
 * including every Transfer-Encoding other than a single "chunked", and a
 * connection closed mid-message); 431 Request Header Fields Too Large (the
 * limits above); 501 Not Implemented (CONNECT, or a method http_parser does not
 * know); 505 HTTP Version Not Supported (HTTP/x.y with x != 1); 500 if memory
 * ran out. For a response the caller answers 502 whatever the status. */
int h1_parser_error_status(const struct h1_parser *p);
const char *h1_parser_error_reason(const struct h1_parser *p);

/* Helpers for the proxy around the codec. */

/* Case-insensitive header-name comparison with a NUL-terminated name. */
bool h1_name_is(const char *name, size_t len, const char *lit, size_t lit_len);
/* Inline so that the length of a literal name is known at compile time and
 * most fields are told apart by length alone. */
static inline bool h1_header_is(const struct h1_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && h1_name_is(h->name, h->name_len, name, n);
}

/* True for the headers a proxy must not forward (RFC 9110 §7.6.1): Connection,
 * Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade, Trailer, and every
 * header named in the message's Connection header; also Content-Length, because
 * legate always re-frames the body itself. */
bool h1_header_is_hop_by_hop(const struct h1_head *head, const struct h1_header *h);

/* The standard reason phrase for a status code ("OK", "Not Found", ...; "Unknown"). */
const char *h1_reason_phrase(int status);

#endif
