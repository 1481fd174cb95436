#include "common/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BUF_MIN_CAP 4096

/* Buffer blocks of a power-of-two size (4 to 128 KiB) are mapped with mmap
 * rather than taken from the heap, and freed ones are kept in a cache per
 * size: a proxied request takes and gives back a read buffer and a write
 * buffer on each side, and parser storage.
 * - Out of the heap, because short-lived blocks interleaved there with
 *   long-lived connection structures and pinned its pages: 10,000 idle
 *   connections after a burst kept 5.5 KiB each resident, against 1.4 KiB
 *   in use; with mapped blocks, 2.0 KiB.
 * - Cached, because a map and an unmap per request would cost more than the
 *   heap did. The cache holds up to BLOCK_CACHE_BYTES of each size, and
 *   buf_block_cache_decay (once a second) unmaps half of it, so a burst's
 *   blocks go away within seconds while steady traffic keeps what it uses.
 * Each process is single-threaded where it uses buffers. Off under ASan,
 * whose allocator must see every allocation and free. */
#define BLOCK_CLASSES 6
#define BLOCK_CACHE_BYTES (8u << 20)

struct free_block {
    struct free_block *next;
};

static struct {
    struct free_block *head;
    unsigned n;
} block_cache[BLOCK_CLASSES];

/* The class of a capacity, or -1 if it is not one the cache keeps. */
static int block_class(size_t cap)
{
    for (int c = 0; c < BLOCK_CLASSES; c++)
        if (cap == ((size_t)BUF_MIN_CAP << c))
            return c;
    return -1;
}

static struct free_block *cache_pop(int c)
{
    struct free_block *b = block_cache[c].head;
    block_cache[c].head = b->next;
    block_cache[c].n--;
    return b;
}

char *buf_block_get(size_t cap)
{
    int c = block_class(cap);
    if (c >= 0 && block_cache[c].head != NULL)
        return (char *)cache_pop(c);
#ifndef __SANITIZE_ADDRESS__
    if (c >= 0) {
        void *m = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return m == MAP_FAILED ? NULL : (char *)m;
    }
#endif
    return malloc(cap);
}

void buf_block_put(char *data, size_t cap)
{
    if (data == NULL)
        return;
#ifdef __SANITIZE_ADDRESS__
    free(data); /* the sanitizer must see every free */
    (void)cap;
    return;
#endif
    int c = block_class(cap);
    if (c >= 0 && block_cache[c].n < (unsigned)(BLOCK_CACHE_BYTES / cap)) {
        struct free_block *b = (struct free_block *)(void *)data;
        b->next = block_cache[c].head;
        block_cache[c].head = b;
        block_cache[c].n++;
        return;
    }
    if (c >= 0) {
        munmap(data, cap);
        return;
    }
    free(data);
}

size_t buf_block_cache_decay(void)
{
    size_t freed = 0;
    for (int c = 0; c < BLOCK_CLASSES; c++) {
        size_t cap = (size_t)BUF_MIN_CAP << c;
        for (unsigned k = (block_cache[c].n + 1) / 2; k > 0; k--) {
            munmap(cache_pop(c), cap);
            freed += cap;
        }
    }
    return freed;
}

char *buf_reserve(struct buf *b, size_t n)
{
    if (b->cap - b->end >= n)
        return b->data + b->end;
    size_t len = buf_len(b);
    /* Slide the content to the front before growing: most buffers are drained
     * completely and reused, so this rarely copies much. */
    if (b->start > 0 && b->cap - len >= n) {
        memmove(b->data, b->data + b->start, len);
        b->start = 0;
        b->end = len;
        return b->data + b->end;
    }
    size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
    while (cap - len < n)
        cap *= 2;
    char *d = buf_block_get(cap);
    if (d == NULL)
        return NULL;
    if (len > 0)
        memcpy(d, b->data + b->start, len);
    buf_block_put(b->data, b->cap);
    b->data = d;
    b->cap = cap;
    b->start = 0;
    b->end = len;
    return b->data + b->end;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
    char *p = buf_reserve(b, n);
    if (p == NULL)
        return -1;
    memcpy(p, data, n);
    b->end += n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = buf_reserve(b, 256);
    if (p == NULL) {
        va_end(ap);
        return -1;
    }
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(p, b->cap - b->end, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return -1;
    }
    if ((size_t)n >= b->cap - b->end) {
        p = buf_reserve(b, (size_t)n + 1);
        if (p == NULL) {
            va_end(ap2);
            return -1;
        }
        vsnprintf(p, b->cap - b->end, fmt, ap2);
    }
    va_end(ap2);
    b->end += (size_t)n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    b->start += n;
    if (b->start >= b->end)
        b->start = b->end = 0;
}

void buf_release(struct buf *b)
{
    buf_block_put(b->data, b->cap);
    b->data = NULL;
    b->start = b->end = b->cap = 0;
}

ssize_t buf_write_to(struct buf *b, int fd)
{
    size_t none;
    return buf_write_with(b, fd, NULL, 0, &none);
}

ssize_t buf_write_with(struct buf *b, int fd, const void *data, size_t len, size_t *data_written)
{
    size_t total = 0;
    *data_written = 0;
    while (buf_len(b) > 0 || *data_written < len) {
        struct iovec iov[2];
        int n_iov = 0;
        if (buf_len(b) > 0)
            iov[n_iov++] = (struct iovec){(void *)buf_head(b), buf_len(b)};
        if (*data_written < len)
            iov[n_iov++] = (struct iovec){(char *)data + *data_written, len - *data_written};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -1;
        }
        total += (size_t)n;
        size_t from_buf = (size_t)n < buf_len(b) ? (size_t)n : buf_len(b);
        buf_consume(b, from_buf);
        *data_written += (size_t)n - from_buf;
    }
    return (ssize_t)total;
}

ssize_t buf_read_from(struct buf *b, int fd, size_t max)
{
    char *p = buf_reserve(b, max);
    if (p == NULL) {
        errno = ENOMEM;
        return -1;
    }
    ssize_t n;
    do
        n = read(fd, p, max);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        b->end += (size_t)n;
    return n;
}

int buf_append_field(struct buf *b, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    char *p = buf_reserve(b, name_len + value_len + 4);
    if (p == NULL)
        return -1;
    memcpy(p, name, name_len);
    p[name_len] = ':';
    p[name_len + 1] = ' ';
    memcpy(p + name_len + 2, value, value_len);
    p[name_len + 2 + value_len] = '\r';
    p[name_len + 3 + value_len] = '\n';
    buf_commit(b, name_len + value_len + 4);
    return 0;
}

int buf_append_u64(struct buf *b, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do
        digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return buf_append(b, digits + sizeof(digits) - n, n);
}
