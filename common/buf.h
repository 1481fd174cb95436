/* A byte buffer with a read and a write offset. Storage is allocated on first
 * use and can be released when empty, so an idle connection holds none. */
#ifndef LEGATE_COMMON_BUF_H
#define LEGATE_COMMON_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct buf {
    char *data;
    size_t start; /* first unread byte */
    size_t end;   /* one past the last written byte */
    size_t cap;
};

static inline size_t buf_len(const struct buf *b)
{
    return b->end - b->start;
}

static inline const char *buf_head(const struct buf *b)
{
    return b->data + b->start;
}

/* Make room for `n` more bytes at the end; returns the write pointer or NULL. */
char *buf_reserve(struct buf *b, size_t n);
/* Account `n` bytes written at the pointer buf_reserve returned. */
static inline void buf_commit(struct buf *b, size_t n)
{
    b->end += n;
}
int buf_append(struct buf *b, const void *data, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "name: value\r\n", for the hot path: one reservation and two copies, no
 * format parsing. */
int buf_append_field(struct buf *b, const char *name, size_t name_len, const char *value,
                     size_t value_len);
/* A decimal number, without printf. */
int buf_append_u64(struct buf *b, uint64_t v);
/* Drop `n` bytes from the front. */
void buf_consume(struct buf *b, size_t n);
/* Free the storage (only when empty, or when the content is to be dropped). */
void buf_release(struct buf *b);
/* The block allocator under the buffers, for other per-request storage of
 * 4, 8, ... 128 KiB: mapped outside the heap, and freed blocks are kept for
 * reuse instead of unmapped at once. buf_block_put takes the size the block
 * was got with; NULL is ignored. */
char *buf_block_get(size_t cap);
void buf_block_put(char *data, size_t cap);
/* Unmap half of the cached blocks of each size (rounded up). Called once a
 * second (shm/proc_stats.c): a burst's blocks drain away when it is over,
 * while steady traffic refills the cache with what it uses. Returns the bytes
 * unmapped. */
size_t buf_block_cache_decay(void);

/* write(2) as much as the socket takes. Returns bytes written (0 if it would
 * block), or -1 on error (errno set). */
ssize_t buf_write_to(struct buf *b, int fd);
/* The buffer's bytes, then `len` more from `data`, in one sendmsg where the
 * socket takes them: what is buffered goes first, the buffer is consumed by
 * what was written, and *data_written says how much of `data` went (the rest
 * is the caller's to keep). Returns bytes written in all (0 if it would
 * block), or -1 on error (errno set). Saves copying a large body into the
 * buffer only to write it out again. */
ssize_t buf_write_with(struct buf *b, int fd, const void *data, size_t len, size_t *data_written);
/* read(2) up to `max` bytes into the buffer. Returns bytes read, 0 on EOF, -1
 * with errno EAGAIN when nothing is there, or -1 on error. */
ssize_t buf_read_from(struct buf *b, int fd, size_t max);

#endif
