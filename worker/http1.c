/* HTTP/1.x codec: http_parser underneath, RFC 9112 strictness on top.
 *
 * Two machines look at every message and must agree:
 *
 *  - legate's own scanner checks the bytes first. It sees the head (start line
 *    and header lines) byte by byte while copying it into the parser's storage,
 *    and enforces what http_parser tolerates: CRLF everywhere (no bare CR or LF),
 *    no obs-fold, no whitespace before a colon or before the first field line,
 *    field-name and field-value characters, the size and count limits, the
 *    start-line shape. For chunked bodies it tracks the chunk framing itself
 *    (size digits, extensions, the CRLF after the data, the trailer lines).
 *  - http_parser then parses what the scanner accepted: the whole head in one
 *    call from storage (so a head split across reads gives identical callbacks),
 *    body bytes straight from the caller's buffer (no copy). Its callbacks build
 *    the h1_head, where the field-level rules (Content-Length, Transfer-Encoding,
 *    Host, request-target form) are checked once the head is complete and
 *    before anything is reported to the owner.
 *
 * Any disagreement between the two (a message end seen by one only, a different
 * field count) is an error: differentials between parsers are what request
 * smuggling feeds on. */
#include "worker/http1.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

/* Longest chunk-size line (size, extensions) we accept; extensions are dropped
 * anyway, so this only bounds the work spent on junk. */
#define H1_MAX_CHUNK_LINE 4096
/* Chunk sizes are at most 16 hex digits, leading zeros included (fits uint64). */
#define H1_MAX_CHUNK_DIGITS 16
/* Content-Length: at most 19 digits, so it fits a uint64 and can never collide
 * with http_parser's "no length" sentinel ULLONG_MAX. */
#define H1_MAX_CL_DIGITS 19
#define H1_INITIAL_STORAGE 4096
/* The field array: every field a head may have, in one cached block. */
#define H1_HEADERS_BLOCK 4096
_Static_assert(H1_MAX_HEADERS * sizeof(struct h1_header) <= H1_HEADERS_BLOCK,
               "the field array must hold H1_MAX_HEADERS fields");

/* Character classes (RFC 9110 §5.6.2 tchar, §5.5 field-vchar/obs-text,
 * RFC 3986 reg-name). */
enum {
    CC_TCHAR = 1,   /* token character */
    CC_FVALUE = 2,  /* allowed inside a field value: HT, SP, VCHAR, obs-text */
    CC_TARGET = 4,  /* allowed in a request-target: VCHAR */
    CC_REGNAME = 8, /* unreserved / sub-delims, minus ',' ('%' handled apart) */
    CC_HEX = 16,
};

static const unsigned char cc[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    2,  15, 6,  7,  15, 7,  15, 15, 14, 14, 15, 15, 6,  15, 15, 6,  /* 0x20 */
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 6,  14, 6,  14, 6,  6,  /* 0x30 */
    6,  31, 31, 31, 31, 31, 31, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6,  6,  6,  7,  15, /* 0x50 */
    7,  31, 31, 31, 31, 31, 31, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6,  7,  6,  15, 0,  /* 0x70 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0x80 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0x90 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xa0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xb0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xc0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xd0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xe0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xf0 */
};

enum phase {
    PH_HEAD,         /* scanning/buffering the head */
    PH_BODY_LENGTH,  /* Content-Length body */
    PH_BODY_CHUNKED, /* chunked body and trailers */
    PH_BODY_EOF,     /* close-delimited response body */
    PH_DONE,         /* message complete, waiting for h1_parser_resume */
};

/* Line scanner states (head, and the trailer section of a chunked body). */
enum scan_state {
    S_LEAD,     /* before the start line: empty lines are skipped (RFC 9112 §2.2) */
    S_LEAD_CR,  /* CR of an empty line before the start line */
    S_START,    /* in the start line */
    S_START_CR, /* CR ending the start line */
    S_LINE,     /* at the beginning of a field line (or the empty line) */
    S_NAME,     /* in a field name */
    S_VALUE,    /* after the colon, in the field value */
    S_VALUE_CR, /* CR ending a field line */
    S_END_CR,   /* CR of the empty line ending the section */
};

enum scan_rc {
    SCAN_MORE,       /* all input consumed, section not finished */
    SCAN_START_LINE, /* the start line just ended (head only) */
    SCAN_END,        /* the empty line ending the section was consumed */
    SCAN_ERROR,
};

/* Chunked framing states (RFC 9112 §7.1). */
enum chunk_state {
    CK_SIZE_START, /* first hex digit of a chunk size */
    CK_SIZE,       /* more hex digits */
    CK_SIZE_WS,    /* BWS after the size: only ';' may follow */
    CK_EXT,        /* chunk extensions, up to CR */
    CK_SIZE_CR,    /* CR ending the chunk-size line */
    CK_DATA,       /* chunk data */
    CK_DATA_CR,    /* CR after chunk data */
    CK_DATA_LF,    /* LF after chunk data */
    CK_TRAILERS,   /* trailer section (line scanner) */
};

enum last_cb { CB_NONE, CB_FIELD, CB_VALUE };

struct h1_parser {
    http_parser hp;
    enum h1_kind kind;
    struct h1_callbacks cb;
    void *ctx;
    bool expect_head; /* H1_RESPONSE: the request was HEAD */

    enum phase phase;
    bool stopped;        /* between on_complete and resume */
    bool failed;         /* sticky: every feed returns -1 */
    bool in_execute;     /* inside http_parser_execute (callbacks may run) */
    bool resume_pending; /* h1_parser_resume was called from a callback */
    int err_status;
    const char *err_reason;

    /* line scanner */
    enum scan_state sst;
    bool first_field; /* the next field line is the first of the head */
    bool in_trailers; /* scanning a trailer section rather than a head */
    bool trailing_ht; /* some field value of the head ends in HTAB (see fix_trailing_ht) */
    size_t seen;      /* bytes of this section scanned (head: == len) */
    unsigned n_fields;

    /* head storage: the head is copied here, strings of h1_head point here */
    char *buf;
    size_t cap;
    size_t len;                    /* bytes of the head stored */
    size_t msg_off;                /* offset of the start line (after skipped empty lines) */
    size_t start_len;              /* start line length without CRLF */
    size_t extra;                  /* bump offset for derived strings after the head */
    size_t target_off, target_len; /* request-target, from our own parse */
    size_t reason_off, reason_len; /* reason-phrase, from our own parse */

    /* collected from http_parser's callbacks */
    const char *url;
    size_t url_len;
    enum last_cb last_cb;
    struct h1_header *headers; /* room for H1_MAX_HEADERS, from the buffer cache */
    struct h1_head head;

    /* body framing */
    uint64_t remaining; /* Content-Length left, or chunk data left */
    enum chunk_state cst;
    unsigned chunk_digits;
    size_t chunk_line;
};

/* ---- small helpers ---- */

static int set_error(struct h1_parser *p, int status, const char *reason)
{
    if (!p->failed) {
        p->failed = true;
        p->err_status = status;
        p->err_reason = reason;
    }
    return -1;
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool ieq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static bool ieq_lit(const char *a, size_t an, const char *lit)
{
    return ieq(a, an, lit, strlen(lit));
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Next element of a comma-separated list (RFC 9110 §5.6.1), OWS trimmed,
 * empty elements skipped. False when the list is exhausted. */
static bool list_next(const char **cur, const char *end, const char **tok, size_t *tok_len)
{
    const char *s = *cur;
    for (;;) {
        while (s < end && (is_ows(*s) || *s == ','))
            s++;
        if (s == end) {
            *cur = s;
            return false;
        }
        const char *e = s;
        while (e < end && *e != ',')
            e++;
        const char *t = e;
        while (t > s && is_ows(t[-1]))
            t--;
        *cur = e;
        if (t > s) {
            *tok = s;
            *tok_len = (size_t)(t - s);
            return true;
        }
        s = e;
    }
}

static int ensure_cap(struct h1_parser *p, size_t need)
{
    if (need <= p->cap)
        return 0;
    size_t cap = p->cap ? p->cap : H1_INITIAL_STORAGE;
    while (cap < need)
        cap *= 2;
    char *nb = buf_block_get(cap);
    if (nb == NULL)
        return set_error(p, 500, "out of memory");
    if (p->buf != NULL)
        memcpy(nb, p->buf, p->cap);
    buf_block_put(p->buf, p->cap);
    p->buf = nb;
    p->cap = cap;
    return 0;
}

/* Reset the per-message state; storage and header array are kept. */
static void reset_message(struct h1_parser *p)
{
    http_parser_init(&p->hp, p->kind == H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
    p->hp.data = p;
    p->phase = PH_HEAD;
    p->stopped = false;
    p->resume_pending = false;
    p->sst = S_LEAD;
    p->first_field = false;
    p->in_trailers = false;
    p->trailing_ht = false;
    p->seen = 0;
    p->n_fields = 0;
    p->len = 0;
    p->msg_off = 0;
    p->start_len = 0;
    p->extra = 0;
    p->target_off = p->target_len = 0;
    p->reason_off = p->reason_len = 0;
    p->url = NULL;
    p->url_len = 0;
    p->last_cb = CB_NONE;
    memset(&p->head, 0, sizeof(p->head));
    p->head.headers = p->headers;
    p->remaining = 0;
    p->cst = CK_SIZE_START;
    p->chunk_digits = 0;
    p->chunk_line = 0;
}

/* ---- line scanner (RFC 9112 §2.2, §5) ---- */

static enum scan_rc scan_fail(struct h1_parser *p, int status, const char *reason)
{
    set_error(p, status, reason);
    return SCAN_ERROR;
}

/* Does the field value ending at d[i] (its CR) end in OWS containing an HTAB?
 * Looks back over the trailing OWS only, into storage if it began in an
 * earlier feed (head mode: storage ends exactly where d begins). */
static bool ends_in_ht(const struct h1_parser *p, const unsigned char *d, size_t i)
{
    while (i > 0 && is_ows((char)d[i - 1])) {
        if (d[i - 1] == '\t')
            return true;
        i--;
    }
    if (i > 0)
        return false;
    for (size_t k = p->len; k > 0 && is_ows(p->buf[k - 1]); k--)
        if (p->buf[k - 1] == '\t')
            return true;
    return false;
}

/* RFC 9112 §5.1 allows HTAB in the OWS after a field value, but http_parser
 * only accepts SP there for the fields it interprets ("chunked\t" is not
 * chunked to it, "5\t" is not a Content-Length). The OWS is not part of any
 * value we report, so turn those HTABs into SPs in our copy. Runs only when
 * the scanner saw such a value: one extra pass in that rare case. */
static void fix_trailing_ht(struct h1_parser *p)
{
    char *s = p->buf + p->msg_off + p->start_len + 2; /* after the start line */
    char *end = p->buf + p->len;
    while ((s = memchr(s, '\r', (size_t)(end - s))) != NULL) {
        for (char *t = s; is_ows(t[-1]); t--)
            t[-1] = ' ';
        s++;
    }
}

/* Scan header-section bytes (or trailer-section bytes). Stops after the start
 * line (so it can be checked before anything else) and after the empty line.
 * *used is how many bytes were accepted. The section is bounded by
 * H1_MAX_HEAD_BYTES and H1_MAX_HEADERS; going over either is 431. */
static enum scan_rc scan_lines(struct h1_parser *p, const unsigned char *d, size_t n, size_t *used)
{
    size_t room = H1_MAX_HEAD_BYTES - p->seen;
    size_t lim = n < room ? n : room;
    size_t i = 0;
    enum scan_rc rc = SCAN_MORE;
    enum scan_state st = p->sst;

    while (i < lim && rc == SCAN_MORE) {
        unsigned char c = d[i];
        switch (st) {
        case S_LEAD:
            if (c == '\r') {
                st = S_LEAD_CR;
                i++;
            } else if (c == '\n') {
                rc = scan_fail(p, 400, "bare LF (lines must end with CRLF)");
            } else if (p->kind == H1_REQUEST && !(cc[c] & CC_TCHAR)) {
                /* A method is a token: a TLS ClientHello or binary junk is
                 * refused at its first byte rather than when a CRLF arrives. */
                rc = scan_fail(p, 400, "invalid method");
            } else {
                p->msg_off = p->seen + i;
                st = S_START;
            }
            break;
        case S_LEAD_CR:
            if (c != '\n') {
                rc = scan_fail(p, 400, "bare CR");
            } else {
                st = S_LEAD;
                i++;
            }
            break;
        case S_START:
            while (i < lim && d[i] != '\r' && d[i] != '\n') {
                /* A request line holds only tokens, VCHARs and single spaces. */
                if (p->kind == H1_REQUEST && !(cc[d[i]] & CC_TARGET) && d[i] != ' ')
                    break;
                i++;
            }
            if (i == lim)
                break;
            if (d[i] != '\r' && d[i] != '\n') {
                rc = scan_fail(p, 400, "invalid character in the request line");
                break;
            }
            if (d[i] == '\n') {
                rc = scan_fail(p, 400, "bare LF (lines must end with CRLF)");
            } else {
                st = S_START_CR;
                i++;
            }
            break;
        case S_START_CR:
            if (c != '\n') {
                rc = scan_fail(p, 400, "bare CR");
            } else {
                i++;
                st = S_LINE;
                p->first_field = true;
                rc = SCAN_START_LINE;
            }
            break;
        case S_LINE:
            if (c == '\r') {
                st = S_END_CR;
                i++;
            } else if (c == '\n') {
                rc = scan_fail(p, 400, "bare LF (lines must end with CRLF)");
            } else if (c == ' ' || c == '\t') {
                /* RFC 9112 §2.2 (whitespace after the start line) and §5.2
                 * (obs-fold): both are rejected rather than repaired. */
                rc = scan_fail(p, 400,
                               p->first_field ? "whitespace before the first header field"
                                              : "obs-fold is not allowed");
            } else if (cc[c] & CC_TCHAR) {
                if (++p->n_fields > H1_MAX_HEADERS) {
                    rc = scan_fail(p, 431,
                                   p->in_trailers ? "too many trailer fields" : "too many headers");
                } else {
                    st = S_NAME;
                    i++;
                }
            } else if (c == ':') {
                rc = scan_fail(p, 400, "empty header name");
            } else {
                rc = scan_fail(p, 400, "invalid header name");
            }
            break;
        case S_NAME:
            while (i < lim && (cc[d[i]] & CC_TCHAR))
                i++;
            if (i == lim)
                break;
            c = d[i];
            if (c == ':') {
                st = S_VALUE;
                i++;
            } else if (c == ' ' || c == '\t') {
                /* RFC 9112 §5.1: no whitespace between field name and colon. */
                rc = scan_fail(p, 400, "whitespace before colon");
            } else if (c == '\r' || c == '\n') {
                rc = scan_fail(p, 400, "header line without colon");
            } else {
                rc = scan_fail(p, 400, "invalid header name");
            }
            break;
        case S_VALUE:
            while (i < lim && (cc[d[i]] & CC_FVALUE))
                i++;
            if (i == lim)
                break;
            c = d[i];
            if (c == '\r') {
                if (!p->in_trailers && !p->trailing_ht && ends_in_ht(p, d, i))
                    p->trailing_ht = true;
                st = S_VALUE_CR;
                i++;
            } else if (c == '\n') {
                rc = scan_fail(p, 400, "bare LF (lines must end with CRLF)");
            } else if (c == 0) {
                /* RFC 9110 §5.5: NUL, CR, LF in a value are rejected. */
                rc = scan_fail(p, 400, "NUL in header value");
            } else {
                rc = scan_fail(p, 400, "invalid character in header value");
            }
            break;
        case S_VALUE_CR:
            if (c != '\n') {
                rc = scan_fail(p, 400, "bare CR");
            } else {
                st = S_LINE;
                p->first_field = false;
                i++;
            }
            break;
        case S_END_CR:
            if (c != '\n') {
                rc = scan_fail(p, 400, "bare CR");
            } else {
                i++;
                rc = SCAN_END;
            }
            break;
        }
    }
    p->sst = st;
    p->seen += i;
    *used = i;
    if (rc == SCAN_MORE && i < n)
        rc = scan_fail(p, 431, p->in_trailers ? "trailers too large" : "header too large");
    return rc;
}

/* ---- start line (RFC 9112 §2.3, §3, §4) ---- */

/* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive. Only major 1 here. */
static int check_version(struct h1_parser *p, const char *v, size_t n)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !is_digit(v[5]) || v[6] != '.' || !is_digit(v[7]))
        return set_error(p, 400, "invalid HTTP version");
    if (v[5] != '1')
        return set_error(p, 505, "unsupported HTTP version");
    return 0;
}

/* request-line = method SP request-target SP HTTP-version, single spaces. */
static int check_request_line(struct h1_parser *p)
{
    const char *l = p->buf + p->msg_off;
    size_t n = p->start_len, i = 0;
    while (i < n && (cc[(unsigned char)l[i]] & CC_TCHAR))
        i++;
    if (i == 0 || i == n || l[i] != ' ')
        return set_error(p, 400, "invalid request line");
    if (i == 7 && memcmp(l, "CONNECT", 7) == 0)
        return set_error(p, 501, "CONNECT is not supported");
    size_t t = ++i;
    while (i < n && (cc[(unsigned char)l[i]] & CC_TARGET))
        i++;
    if (i == t || i == n || l[i] != ' ')
        return set_error(p, 400, "invalid request line");
    p->target_off = p->msg_off + t;
    p->target_len = i - t;
    i++;
    return check_version(p, l + i, n - i);
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ]; a missing
 * "SP reason" is tolerated (RFC 9112 §4: the reason carries no meaning). */
static int check_status_line(struct h1_parser *p)
{
    const char *l = p->buf + p->msg_off;
    size_t n = p->start_len, v = 0;
    while (v < n && l[v] != ' ')
        v++;
    if (check_version(p, l, v) < 0)
        return -1;
    if (n < v + 4 || !is_digit(l[v + 1]) || !is_digit(l[v + 2]) || !is_digit(l[v + 3]))
        return set_error(p, 400, "invalid status line");
    int status = (l[v + 1] - '0') * 100 + (l[v + 2] - '0') * 10 + (l[v + 3] - '0');
    if (status < 100 || status > 599)
        return set_error(p, 400, "invalid status code"); /* RFC 9110 §15 */
    size_t r = v + 4;
    if (r < n) {
        if (l[r] != ' ')
            return set_error(p, 400, "invalid status line");
        for (size_t i = r + 1; i < n; i++)
            if (!(cc[(unsigned char)l[i]] & CC_FVALUE))
                return set_error(p, 400, "invalid reason phrase");
        p->reason_off = p->msg_off + r + 1;
        p->reason_len = n - r - 1;
    } else {
        p->reason_off = p->msg_off + n;
        p->reason_len = 0;
    }
    return 0;
}

/* ---- field checks ---- */

/* Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2), strictly:
 * non-empty host, IP-literal must be a valid IPv6 address, reg-name without
 * ',' (a comma would make a list of hosts), a non-empty port of at most
 * 65535. */
static bool valid_authority(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return false;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return false;
        size_t al = (size_t)(close - s) - 1;
        char tmp[INET6_ADDRSTRLEN];
        struct in6_addr a;
        if (al == 0 || al >= sizeof(tmp))
            return false;
        memcpy(tmp, s + 1, al);
        tmp[al] = '\0';
        if (inet_pton(AF_INET6, tmp, &a) != 1)
            return false;
        i = al + 2;
    } else {
        while (i < n && s[i] != ':') {
            unsigned char c = (unsigned char)s[i];
            if (cc[c] & CC_REGNAME)
                i++;
            else if (c == '%' && i + 2 < n && (cc[(unsigned char)s[i + 1]] & CC_HEX) &&
                     (cc[(unsigned char)s[i + 2]] & CC_HEX))
                i += 3;
            else
                return false;
        }
        if (i == 0)
            return false;
    }
    if (i == n)
        return true;
    if (s[i] != ':')
        return false;
    i++;
    size_t digits = n - i;
    if (digits == 0 || digits > 5)
        return false;
    unsigned long port = 0;
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    return port <= 65535;
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6), one value, at most 19 digits. */
static bool parse_content_length(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > H1_MAX_CL_DIGITS)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static char *alloc_extra(struct h1_parser *p, size_t n)
{
    /* Capacity was reserved before any pointer into buf was taken. */
    char *s = p->buf + p->extra;
    p->extra += n;
    return s;
}

/* Request-target (RFC 9112 §3.2): origin-form, absolute-form (http/https, no
 * userinfo), asterisk-form with OPTIONS only; no fragment. Sets path and, for
 * absolute-form, authority. */
static int check_target(struct h1_parser *p)
{
    struct h1_head *h = &p->head;
    const char *u = p->url;
    size_t n = p->url_len;
    char *end = p->buf + (u - p->buf) + n; /* the SP after the target: ours to NUL */

    if (memchr(u, '#', n) != NULL)
        return set_error(p, 400, "fragment in request target");
    if (u[0] == '/') {
        *end = '\0';
        h->path = u;
        h->path_len = n;
        return 0;
    }
    if (n == 1 && u[0] == '*') {
        if (h->method_id != HTTP_OPTIONS)
            return set_error(p, 400, "asterisk-form target needs OPTIONS");
        *end = '\0';
        h->path = u;
        h->path_len = 1;
        return 0;
    }
    struct http_parser_url pu;
    http_parser_url_init(&pu);
    if (http_parser_parse_url(u, n, 0, &pu) != 0 || !(pu.field_set & (1 << UF_SCHEMA)) ||
        !(pu.field_set & (1 << UF_HOST)))
        return set_error(p, 400, "invalid request target");
    const char *scheme = u + pu.field_data[UF_SCHEMA].off;
    size_t scheme_len = pu.field_data[UF_SCHEMA].len;
    if (!ieq_lit(scheme, scheme_len, "http") && !ieq_lit(scheme, scheme_len, "https"))
        return set_error(p, 400, "unsupported scheme in request target");
    if (pu.field_set & (1 << UF_USERINFO))
        return set_error(p, 400, "userinfo in request target"); /* RFC 9110 §4.2.4 */
    size_t a = (size_t)(scheme - u) + scheme_len;
    if (n - a < 3 || memcmp(u + a, "://", 3) != 0)
        return set_error(p, 400, "invalid request target");
    a += 3;
    size_t ae = a;
    while (ae < n && u[ae] != '/' && u[ae] != '?')
        ae++;
    if (!valid_authority(u + a, ae - a))
        return set_error(p, 400, "invalid authority in request target");
    char *auth = alloc_extra(p, ae - a + 1);
    memcpy(auth, u + a, ae - a);
    auth[ae - a] = '\0';
    h->authority = auth;
    h->authority_len = ae - a;
    if (ae < n && u[ae] == '/') {
        *end = '\0';
        h->path = u + ae;
        h->path_len = n - ae;
    } else {
        /* "http://h" or "http://h?q": the path is "/" (RFC 9112 §3.2.1). */
        char *path = alloc_extra(p, n - ae + 2);
        path[0] = '/';
        memcpy(path + 1, u + ae, n - ae);
        path[n - ae + 1] = '\0';
        h->path = path;
        h->path_len = n - ae + 1;
    }
    return 0;
}

static bool has_field(const struct h1_parser *p, const char *name)
{
    for (size_t i = 0; i < p->head.n_headers; i++)
        if (h1_header_is(&p->headers[i], name))
            return true;
    return false;
}

/* The head is complete: trim values, apply the field rules, decide framing and
 * persistence. Called from on_headers_complete, before on_head. */
static int build_head(struct h1_parser *p)
{
    struct h1_head *h = &p->head;
    const struct h1_header *cl = NULL, *te = NULL, *host = NULL;
    bool conn_close = false, conn_keep_alive = false, conn_upgrade = false;
    bool has_upgrade = false, expect = false;
    uint64_t clen = 0;

    /* The scanner and http_parser must have seen the same field lines. */
    if (h->n_headers != p->n_fields)
        return set_error(p, 400, "header parse mismatch");
    h->version_major = p->hp.http_major;
    h->version_minor = p->hp.http_minor;
    if (h->version_major != 1)
        return set_error(p, 505, "unsupported HTTP version");
    bool v11 = h->version_minor >= 1;

    for (size_t i = 0; i < h->n_headers; i++) {
        struct h1_header *f = &p->headers[i];
        /* OWS around the value is not part of it (RFC 9112 §5.1). */
        while (f->value_len > 0 && is_ows(f->value[0])) {
            f->value++;
            f->value_len--;
        }
        while (f->value_len > 0 && is_ows(f->value[f->value_len - 1]))
            f->value_len--;

        if (h1_header_is(f, "content-length")) {
            /* RFC 9112 §6.3: one Content-Length, a plain number. Duplicates
             * are rejected even when equal, and so are lists ("5, 5"). */
            if (cl != NULL)
                return set_error(p, 400, "duplicate Content-Length");
            cl = f;
            if (!parse_content_length(f->value, f->value_len, &clen))
                return set_error(p, 400, "invalid Content-Length");
        } else if (h1_header_is(f, "transfer-encoding")) {
            /* RFC 9112 §6.1, §6.3: the only coding legate decodes is chunked;
             * anything else (lists, other codings, repeats) is refused. */
            if (te != NULL)
                return set_error(p, 400, "duplicate Transfer-Encoding");
            te = f;
            if (!ieq_lit(f->value, f->value_len, "chunked"))
                return set_error(p, 400, "invalid Transfer-Encoding");
        } else if (h1_header_is(f, "host")) {
            if (host != NULL)
                return set_error(p, 400, "duplicate Host"); /* RFC 9112 §3.2 */
            host = f;
        } else if (h1_header_is(f, "connection")) {
            const char *cur = f->value, *end = f->value + f->value_len, *tok;
            size_t tl;
            while (list_next(&cur, end, &tok, &tl)) {
                if (ieq_lit(tok, tl, "keep-alive"))
                    conn_keep_alive = true;
                else if (ieq_lit(tok, tl, "upgrade"))
                    conn_upgrade = true;
                else
                    h->connection_names_fields = true; /* even "close" names a field */
                if (ieq_lit(tok, tl, "close"))
                    conn_close = true;
            }
        } else if (h1_header_is(f, "expect")) {
            if (ieq_lit(f->value, f->value_len, "100-continue"))
                expect = true;
        } else if (h1_header_is(f, "upgrade")) {
            has_upgrade = true;
        }
    }

    /* RFC 9112 §6.3 item 3: both framings is a smuggling attempt. */
    if (cl != NULL && te != NULL)
        return set_error(p, 400, "Content-Length with Transfer-Encoding");
    /* RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing. */
    if (te != NULL && !v11)
        return set_error(p, 400, "Transfer-Encoding in HTTP/1.0");

    if (p->kind == H1_REQUEST) {
        h->method_id = (enum http_method)p->hp.method;
        h->method = http_method_str(h->method_id);
        if (h->method_id == HTTP_CONNECT) /* normally stopped at the request line */
            return set_error(p, 501, "CONNECT is not supported");
        if (p->url == NULL || p->url != p->buf + p->target_off || p->url_len != p->target_len)
            return set_error(p, 400, "request target parse mismatch");
        /* RFC 9112 §3.2: HTTP/1.1 needs exactly one valid Host. */
        if (host == NULL && v11)
            return set_error(p, 400, "missing Host");
        if (host != NULL && !valid_authority(host->value, host->value_len))
            return set_error(p, 400, "invalid Host");
        if (check_target(p) < 0)
            return -1;
        if (h->authority == NULL && host != NULL) {
            /* Only whitespace or the CR follows the trimmed value: NUL it. */
            p->buf[(host->value - p->buf) + host->value_len] = '\0';
            h->authority = host->value;
            h->authority_len = host->value_len;
        }
        if (te != NULL) {
            h->body = H1_BODY_CHUNKED;
        } else if (cl != NULL) {
            h->body = H1_BODY_LENGTH;
            h->content_length = clen;
        } else {
            h->body = H1_BODY_NONE;
        }
        h->expect_continue = expect && v11;
        /* RFC 9110 §7.8: Upgrade is ignored in an HTTP/1.0 request. */
        h->upgrade = conn_upgrade && has_upgrade && v11;
    } else {
        h->status = p->hp.status_code;
        p->buf[p->reason_off + p->reason_len] = '\0';
        h->reason = p->buf + p->reason_off;
        /* RFC 9112 §6.3 items 1-2: no body whatever the fields say. */
        if (p->expect_head || h->status / 100 == 1 || h->status == 204 || h->status == 304) {
            h->body = H1_BODY_NONE;
        } else if (te != NULL) {
            h->body = H1_BODY_CHUNKED;
        } else if (cl != NULL) {
            h->body = H1_BODY_LENGTH;
            h->content_length = clen;
        } else {
            h->body = H1_BODY_EOF;
        }
        h->upgrade = h->status == 101 && conn_upgrade && has_upgrade;
    }
    h->keep_alive = v11 ? !conn_close : (conn_keep_alive && !conn_close);
    if (h->body == H1_BODY_EOF)
        h->keep_alive = false;

    /* http_parser must frame the body the same way. */
    if (h->body == H1_BODY_CHUNKED && !(p->hp.flags & F_CHUNKED))
        return set_error(p, 400, "framing mismatch");
    if (h->body == H1_BODY_LENGTH && p->hp.content_length != clen)
        return set_error(p, 400, "framing mismatch");
    return 0;
}

/* ---- http_parser callbacks ---- */

static int hp_on_url(http_parser *hp, const char *at, size_t n)
{
    struct h1_parser *p = hp->data;
    if (p->url == NULL) {
        p->url = at;
        p->url_len = n;
    } else if (p->url + p->url_len == at) {
        p->url_len += n;
    } else {
        return set_error(p, 400, "request target parse mismatch");
    }
    return 0;
}

static int hp_on_header_field(http_parser *hp, const char *at, size_t n)
{
    struct h1_parser *p = hp->data;
    if (p->phase != PH_HEAD)
        return 0; /* trailer fields: checked by the scanner, then dropped */
    struct h1_head *h = &p->head;
    if (p->last_cb == CB_FIELD) {
        struct h1_header *f = &p->headers[h->n_headers - 1];
        if (f->name + f->name_len != at)
            return set_error(p, 400, "header parse mismatch");
        f->name_len += n;
        f->value = at + n;
        return 0;
    }
    if (h->n_headers == H1_MAX_HEADERS)
        return set_error(p, 400, "header parse mismatch");
    if (p->headers == NULL) {
        /* Room for as many fields as a head may have, in one block from the
         * buffer cache: no growth, and no malloc per request. */
        p->headers = (struct h1_header *)(void *)buf_block_get(H1_HEADERS_BLOCK);
        if (p->headers == NULL)
            return set_error(p, 500, "out of memory");
        h->headers = p->headers;
    }
    struct h1_header *f = &p->headers[h->n_headers++];
    f->name = at;
    f->name_len = n;
    f->value = at + n; /* empty until a value callback says otherwise */
    f->value_len = 0;
    p->last_cb = CB_FIELD;
    return 0;
}

static int hp_on_header_value(http_parser *hp, const char *at, size_t n)
{
    struct h1_parser *p = hp->data;
    if (p->phase != PH_HEAD)
        return 0;
    if (p->last_cb == CB_NONE)
        return set_error(p, 400, "header parse mismatch");
    struct h1_header *f = &p->headers[p->head.n_headers - 1];
    if (p->last_cb == CB_FIELD) {
        f->value = at;
        f->value_len = n;
    } else if (f->value + f->value_len == at) {
        f->value_len += n;
    } else {
        return set_error(p, 400, "header parse mismatch");
    }
    p->last_cb = CB_VALUE;
    return 0;
}

static int hp_on_headers_complete(http_parser *hp)
{
    struct h1_parser *p = hp->data;
    if (p->phase != PH_HEAD)
        return set_error(p, 400, "unexpected end of head");
    if (build_head(p) < 0)
        return -1;
    if (p->cb.on_head != NULL && p->cb.on_head(p->ctx, &p->head) != 0)
        return set_error(p, 0, "stopped by on_head");
    switch (p->head.body) {
    case H1_BODY_NONE:
        /* A response that has no body despite CL/TE: tell http_parser. */
        return p->kind == H1_RESPONSE ? 1 : 0;
    case H1_BODY_LENGTH:
        p->phase = PH_BODY_LENGTH;
        p->remaining = p->head.content_length;
        break;
    case H1_BODY_CHUNKED:
        p->phase = PH_BODY_CHUNKED;
        p->cst = CK_SIZE_START;
        break;
    case H1_BODY_EOF:
        p->phase = PH_BODY_EOF;
        break;
    }
    return 0;
}

static int hp_on_body(http_parser *hp, const char *at, size_t n)
{
    struct h1_parser *p = hp->data;
    /* Body bytes come from the caller's buffer, never from the stored head:
     * that would mean http_parser saw the head end before our scanner did. */
    if (p->phase == PH_HEAD)
        return set_error(p, 400, "head parse mismatch");
    if (p->cb.on_body != NULL && p->cb.on_body(p->ctx, at, n) != 0)
        return set_error(p, 0, "stopped by on_body");
    return 0;
}

static int hp_on_message_complete(http_parser *hp)
{
    struct h1_parser *p = hp->data;
    p->phase = PH_DONE;
    p->stopped = true;
    if (p->cb.on_complete != NULL && p->cb.on_complete(p->ctx) != 0)
        return set_error(p, 0, "stopped by on_complete");
    /* Make http_parser_execute return right after this message: what follows
     * belongs to the next one (pipelining). */
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings hp_settings = {
    .on_url = hp_on_url,
    .on_header_field = hp_on_header_field,
    .on_header_value = hp_on_header_value,
    .on_headers_complete = hp_on_headers_complete,
    .on_body = hp_on_body,
    .on_message_complete = hp_on_message_complete,
};

/* An http_parser error that no callback of ours set: map it to a status. */
static int fail_from_hp(struct h1_parser *p)
{
    if (p->failed)
        return -1;
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    switch (e) {
    case HPE_INVALID_METHOD:
        /* The scanner checked that the method is a token: it is one
         * http_parser does not know (RFC 9110 §9.1: 501). */
        return set_error(p, 501, "unknown method");
    case HPE_INVALID_VERSION:
        return set_error(p, 400, "invalid HTTP version");
    case HPE_INVALID_STATUS:
        return set_error(p, 400, "invalid status code");
    case HPE_INVALID_URL:
    case HPE_INVALID_HOST:
    case HPE_INVALID_PORT:
    case HPE_INVALID_PATH:
    case HPE_INVALID_QUERY_STRING:
    case HPE_INVALID_FRAGMENT:
        return set_error(p, 400, "invalid request target");
    case HPE_INVALID_HEADER_TOKEN:
        return set_error(p, 400, "invalid header field");
    case HPE_INVALID_CONTENT_LENGTH:
        return set_error(p, 400, "invalid Content-Length");
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        if (p->phase != PH_HEAD)
            return set_error(p, 400, "invalid trailer section");
        return set_error(p, 400,
                         has_field(p, "transfer-encoding") ? "Content-Length with Transfer-Encoding"
                                                           : "duplicate Content-Length");
    case HPE_INVALID_TRANSFER_ENCODING:
        return set_error(p, 400, "invalid Transfer-Encoding");
    case HPE_INVALID_CHUNK_SIZE:
        return set_error(p, 400, "invalid chunk size");
    case HPE_HEADER_OVERFLOW:
        return set_error(p, 431, "header too large");
    default:
        return set_error(p, 400, http_errno_description(e));
    }
}

/* Run http_parser over bytes our own checks accepted. n == 0 is the end of
 * the stream to http_parser: only h1_parser_finish asks for that (eof). */
static int execute(struct h1_parser *p, const char *d, size_t n, bool eof, size_t *done)
{
    *done = 0;
    if (n == 0 && !eof)
        return 0;
    p->in_execute = true;
    *done = http_parser_execute(&p->hp, &hp_settings, d, n);
    p->in_execute = false;
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (p->failed || (e != HPE_OK && e != HPE_PAUSED))
        return fail_from_hp(p);
    return 0;
}

/* ---- per-phase feeding ---- */

/* The head is buffered: let http_parser parse it in one go. */
static int run_head(struct h1_parser *p)
{
    size_t n = p->len - p->msg_off, done;
    /* Room for the strings check_target may derive from an absolute-form
     * target (authority + NUL, "/" + rest + NUL: at most target + 3), reserved
     * now so that buf never moves once pointers into it exist. */
    if (ensure_cap(p, p->len + p->target_len + 3) < 0)
        return -1;
    p->extra = p->len;
    if (p->trailing_ht)
        fix_trailing_ht(p);
    if (execute(p, p->buf + p->msg_off, n, false, &done) < 0)
        return -1;
    if (done != n || (p->phase == PH_HEAD && !p->stopped))
        return set_error(p, 400, "head parse mismatch");
    return 0;
}

static int feed_head(struct h1_parser *p, const char *d, size_t n, size_t *used)
{
    *used = 0;
    while (*used < n) {
        size_t u;
        enum scan_rc rc = scan_lines(p, (const unsigned char *)d + *used, n - *used, &u);
        if (rc == SCAN_ERROR)
            return -1;
        if (u > 0) {
            if (ensure_cap(p, p->len + u) < 0)
                return -1;
            memcpy(p->buf + p->len, d + *used, u);
            p->len += u;
            *used += u;
        }
        if (rc == SCAN_START_LINE) {
            p->start_len = p->len - p->msg_off - 2;
            int ok = p->kind == H1_REQUEST ? check_request_line(p) : check_status_line(p);
            if (ok < 0)
                return -1;
        } else if (rc == SCAN_END) {
            return run_head(p);
        }
    }
    return 0;
}

static int feed_length(struct h1_parser *p, const char *d, size_t n, size_t *used)
{
    size_t k = p->remaining < n ? (size_t)p->remaining : n;
    if (execute(p, d, k, false, used) < 0)
        return -1;
    p->remaining -= *used;
    if (*used != k || (p->remaining == 0) != p->stopped)
        return set_error(p, 400, "body framing mismatch");
    return 0;
}

static int chunk_fail(struct h1_parser *p, size_t i, size_t *used, const char *reason)
{
    *used = i;
    return set_error(p, 400, reason);
}

/* Validate chunked framing (RFC 9112 §7.1). Returns 1 if the message ends at
 * *used, 0 if all of d was accepted, -1 on error. Chunk data is skipped by
 * count, so only framing bytes are looked at. */
static int scan_chunked(struct h1_parser *p, const char *d, size_t n, size_t *used)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)d[i];
        if (p->cst <= CK_SIZE_CR && ++p->chunk_line > H1_MAX_CHUNK_LINE)
            return chunk_fail(p, i, used, "chunk extension too long");
        switch (p->cst) {
        case CK_SIZE_START:
        case CK_SIZE:
            if (cc[c] & CC_HEX) {
                if (++p->chunk_digits > H1_MAX_CHUNK_DIGITS)
                    return chunk_fail(p, i, used, "chunk size too long");
                unsigned v = c <= '9' ? (unsigned)(c - '0') : (unsigned)(lower(c) - 'a' + 10);
                p->remaining = (p->remaining << 4) | v;
                p->cst = CK_SIZE;
            } else if (p->cst == CK_SIZE_START) {
                return chunk_fail(p, i, used, "invalid chunk size");
            } else if (c == ';') {
                p->cst = CK_EXT;
            } else if (c == ' ' || c == '\t') {
                p->cst = CK_SIZE_WS;
            } else if (c == '\r') {
                p->cst = CK_SIZE_CR;
            } else {
                return chunk_fail(p, i, used, "invalid chunk size");
            }
            break;
        case CK_SIZE_WS:
            if (c == ';')
                p->cst = CK_EXT;
            else if (c != ' ' && c != '\t')
                return chunk_fail(p, i, used, "invalid chunk size");
            break;
        case CK_EXT:
            if (c == '\r')
                p->cst = CK_SIZE_CR;
            else if (c == '\n')
                return chunk_fail(p, i, used, "bare LF in chunked framing");
            else if (!(cc[c] & CC_FVALUE))
                return chunk_fail(p, i, used, "invalid chunk extension");
            break;
        case CK_SIZE_CR:
            if (c != '\n')
                return chunk_fail(p, i, used, "bare CR in chunked framing");
            p->chunk_digits = 0;
            p->chunk_line = 0;
            if (p->remaining == 0) {
                /* last-chunk: the trailer section follows (RFC 9112 §7.1.2). */
                p->cst = CK_TRAILERS;
                p->sst = S_LINE;
                p->first_field = false;
                p->in_trailers = true;
                p->seen = 0;
                p->n_fields = 0;
            } else {
                p->cst = CK_DATA;
            }
            i++;
            continue;
        case CK_DATA: {
            size_t k = p->remaining < n - i ? (size_t)p->remaining : n - i;
            p->remaining -= k;
            i += k;
            if (p->remaining == 0)
                p->cst = CK_DATA_CR;
            continue;
        }
        case CK_DATA_CR:
            if (c != '\r')
                return chunk_fail(p, i, used, "missing CRLF after chunk data");
            p->cst = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (c != '\n')
                return chunk_fail(p, i, used, "missing CRLF after chunk data");
            p->cst = CK_SIZE_START;
            p->chunk_line = 0;
            break;
        case CK_TRAILERS: {
            size_t u;
            enum scan_rc rc = scan_lines(p, (const unsigned char *)d + i, n - i, &u);
            i += u;
            *used = i;
            if (rc == SCAN_ERROR)
                return -1;
            return rc == SCAN_END ? 1 : 0;
        }
        }
        i++;
    }
    *used = i;
    return 0;
}

static int feed_chunked(struct h1_parser *p, const char *d, size_t n, size_t *used)
{
    size_t ok;
    int rc = scan_chunked(p, d, n, &ok);
    int status = p->err_status;
    const char *reason = p->err_reason;
    if (rc < 0) {
        /* Hand over what precedes the bad byte first, as a feed that ended
         * just before it would have: events must not depend on the splits. */
        p->failed = false;
    }
    if (execute(p, d, ok, false, used) < 0)
        return -1;
    if (rc < 0)
        return set_error(p, status, reason);
    if (*used != ok || (rc == 1) != p->stopped)
        return set_error(p, 400, "chunked framing mismatch");
    return 0;
}

static int feed_eof(struct h1_parser *p, const char *d, size_t n, size_t *used)
{
    if (execute(p, d, n, false, used) < 0)
        return -1;
    if (*used != n || p->stopped)
        return set_error(p, 400, "body framing mismatch");
    return 0;
}

/* ---- public API ---- */

struct h1_parser *h1_parser_new(enum h1_kind kind, const struct h1_callbacks *cb, void *ctx)
{
    struct h1_parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->kind = kind;
    if (cb != NULL)
        p->cb = *cb;
    p->ctx = ctx;
    p->buf = buf_block_get(H1_INITIAL_STORAGE);
    if (p->buf == NULL) {
        free(p);
        return NULL;
    }
    p->cap = H1_INITIAL_STORAGE;
    reset_message(p);
    return p;
}

void h1_parser_free(struct h1_parser *p)
{
    if (p == NULL)
        return;
    buf_block_put(p->buf, p->cap);
    buf_block_put((char *)p->headers, H1_HEADERS_BLOCK);
    free(p);
}

void h1_parser_expect_head_response(struct h1_parser *p, bool is_head)
{
    p->expect_head = is_head;
}

ssize_t h1_parser_feed(struct h1_parser *p, const char *data, size_t len)
{
    if (p->failed)
        return -1;
    if (p->stopped)
        return 0;
    size_t off = 0;
    while (off < len && !p->stopped) {
        size_t used = 0;
        int rc = 0;
        switch (p->phase) {
        case PH_HEAD:
            rc = feed_head(p, data + off, len - off, &used);
            break;
        case PH_BODY_LENGTH:
            rc = feed_length(p, data + off, len - off, &used);
            break;
        case PH_BODY_CHUNKED:
            rc = feed_chunked(p, data + off, len - off, &used);
            break;
        case PH_BODY_EOF:
            rc = feed_eof(p, data + off, len - off, &used);
            break;
        case PH_DONE:
            rc = set_error(p, 400, "internal state error");
            break;
        }
        if (rc < 0)
            return -1;
        off += used;
    }
    if (p->resume_pending)
        reset_message(p);
    return (ssize_t)off;
}

int h1_parser_finish(struct h1_parser *p)
{
    if (p->failed)
        return -1;
    if (p->stopped)
        return 0;
    switch (p->phase) {
    case PH_HEAD:
        if (p->sst == S_LEAD || p->sst == S_LEAD_CR)
            return 0; /* between messages */
        return set_error(p, 400, "connection closed in the message head");
    case PH_BODY_EOF: {
        size_t done;
        if (execute(p, NULL, 0, true, &done) < 0)
            return -1;
        if (!p->stopped)
            return set_error(p, 400, "body framing mismatch");
        if (p->resume_pending)
            reset_message(p);
        return 0;
    }
    default:
        return set_error(p, 400, "connection closed in the message body");
    }
}

void h1_parser_resume(struct h1_parser *p)
{
    if (!p->stopped || p->failed)
        return;
    if (p->in_execute) {
        /* From inside on_complete: http_parser is still running; reset once
         * feed returns (it returns at the end of this message anyway). */
        p->resume_pending = true;
        return;
    }
    reset_message(p);
}

bool h1_parser_is_stopped(const struct h1_parser *p)
{
    return p->stopped;
}

bool h1_parser_is_idle(const struct h1_parser *p)
{
    if (p->failed)
        return false;
    return p->stopped || (p->phase == PH_HEAD && p->sst == S_LEAD);
}

void h1_parser_trim(struct h1_parser *p)
{
    if (p->failed || p->in_execute || p->stopped || p->phase != PH_HEAD || p->sst != S_LEAD ||
        p->len > 0)
        return;
    buf_block_put(p->buf, p->cap);
    p->buf = NULL;
    p->cap = 0;
    buf_block_put((char *)p->headers, H1_HEADERS_BLOCK);
    p->headers = NULL;
    p->head.headers = NULL;
}

int h1_parser_error_status(const struct h1_parser *p)
{
    return p->failed ? p->err_status : 0;
}

const char *h1_parser_error_reason(const struct h1_parser *p)
{
    return p->failed ? p->err_reason : "";
}

bool h1_name_is(const char *name, size_t len, const char *lit, size_t lit_len)
{
    return ieq(name, len, lit, lit_len);
}

bool h1_header_is_hop_by_hop(const struct h1_head *head, const struct h1_header *h)
{
#define LIT(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
    static const struct {
        const char *name;
        size_t len;
    } fixed[] = {
        LIT("connection"),        LIT("keep-alive"), LIT("proxy-connection"), LIT("te"),
        LIT("transfer-encoding"), LIT("upgrade"),    LIT("trailer"),          LIT("content-length"),
    };
#undef LIT
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (h->name_len == fixed[i].len && ieq(h->name, h->name_len, fixed[i].name, fixed[i].len))
            return true;
    /* The usual head's Connection field, if any, says keep-alive (a fixed
     * hop-by-hop name): no second scan of the fields then. */
    if (head == NULL || !head->connection_names_fields)
        return false;
    /* RFC 9110 §7.6.1: fields named by Connection are hop-by-hop too. */
    for (size_t i = 0; i < head->n_headers; i++) {
        const struct h1_header *c = &head->headers[i];
        if (!h1_header_is(c, "connection"))
            continue;
        const char *cur = c->value, *end = c->value + c->value_len, *tok;
        size_t tl;
        while (list_next(&cur, end, &tok, &tl))
            if (ieq(tok, tl, h->name, h->name_len))
                return true;
    }
    return false;
}

const char *h1_reason_phrase(int status)
{
    /* clang-format off */
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
    /* clang-format on */
}
