/* What the two HTTP/1 fuzz targets share: callbacks that touch every byte a
 * head points at (so that ASan sees any read out of bounds), and feeding the
 * parser in pieces whose sizes the input's first bytes choose, resuming after
 * every complete message as a connection does with pipelined messages. */
#ifndef LEGATE_TESTS_FUZZ_H1_FEED_H
#define LEGATE_TESTS_FUZZ_H1_FEED_H

#include <stdint.h>

#include "worker/http1.h"

struct fuzz_h1 {
    struct h1_parser *p;
    size_t sum;
    /* optional: what the target does with a head (routing, for requests) */
    void (*on_head)(const struct h1_head *h);
};

static int fuzz_h1_on_head(void *ctx, const struct h1_head *h)
{
    struct fuzz_h1 *f = ctx;
    for (size_t i = 0; i < h->n_headers; i++) {
        for (size_t k = 0; k < h->headers[i].name_len; k++)
            f->sum += (unsigned char)h->headers[i].name[k];
        for (size_t k = 0; k < h->headers[i].value_len; k++)
            f->sum += (unsigned char)h->headers[i].value[k];
    }
    for (const char *r = h->reason; r != NULL && *r != '\0'; r++)
        f->sum += (unsigned char)*r;
    if (f->on_head != NULL)
        f->on_head(h);
    return 0;
}

static int fuzz_h1_on_body(void *ctx, const char *data, size_t len)
{
    (void)data;
    ((struct fuzz_h1 *)ctx)->sum += len;
    return 0;
}

static int fuzz_h1_on_complete(void *ctx)
{
    h1_parser_resume(((struct fuzz_h1 *)ctx)->p);
    return 0;
}

static const struct h1_callbacks fuzz_h1_callbacks = {fuzz_h1_on_head, fuzz_h1_on_body,
                                                      fuzz_h1_on_complete};

/* Feed data in pieces of 1..64 bytes chosen by `seed`, then the peer's close. */
static void fuzz_h1_feed(struct fuzz_h1 *f, uint32_t seed, const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = 1 + (seed >> 16) % 64;
        if (piece > size - off)
            piece = size - off;
        size_t done = 0;
        while (done < piece) {
            ssize_t n = h1_parser_feed(f->p, (const char *)data + off + done, piece - done);
            if (n < 0 || (n == 0 && h1_parser_is_stopped(f->p)))
                return;
            done += (size_t)n;
        }
        off += piece;
    }
    h1_parser_finish(f->p);
}

#endif
