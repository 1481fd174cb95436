/* Byte buffers and the block cache under them (common/buf.c). */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"

#ifdef __SANITIZE_ADDRESS__
#define CACHED 0 /* under ASan every block goes straight back to the allocator */
#else
#define CACHED 1
#endif

static void drain_cache(void)
{
    while (buf_block_cache_decay() > 0)
        ;
}

static void test_content_survives_growth_and_sliding(void **state)
{
    (void)state;
    struct buf b = {0};
    char piece[1000];
    size_t total = 0;
    /* Grows through every cached size (4 to 128 KiB) and past them. */
    for (int i = 0; i < 300; i++) {
        memset(piece, 'a' + i % 26, sizeof(piece));
        assert_int_equal(buf_append(&b, piece, sizeof(piece)), 0);
        total += sizeof(piece);
        if (i % 7 == 0) { /* consume some from the front: the next reserve may slide */
            assert_int_equal(buf_head(&b)[0], 'a' + (int)((total - buf_len(&b)) / 1000) % 26);
            buf_consume(&b, 1000);
        }
    }
    size_t off = total - buf_len(&b);
    for (size_t k = 0; k < buf_len(&b); k += 1000)
        assert_int_equal(buf_head(&b)[k], 'a' + (int)((off + k) / 1000) % 26);
    buf_release(&b);
    assert_null(b.data);
    assert_int_equal(buf_len(&b), 0);
}

static void test_freed_blocks_are_reused(void **state)
{
    (void)state;
    drain_cache();
    char *a = buf_block_get(8192);
    assert_non_null(a);
    memset(a, 1, 8192);
    buf_block_put(a, 8192);
    char *b = buf_block_get(8192);
    assert_non_null(b);
    if (CACHED)
        assert_ptr_equal(a, b);
    buf_block_put(b, 8192);
    buf_block_put(NULL, 8192); /* ignored */
    /* A size the cache does not keep still works. */
    char *odd = buf_block_get(5000);
    assert_non_null(odd);
    memset(odd, 2, 5000);
    buf_block_put(odd, 5000);
    drain_cache();
}

/* Blocks do not come from the heap, so short-lived buffers cannot pin heap
 * pages under long-lived connection structures. */
static void test_blocks_live_outside_the_heap(void **state)
{
    (void)state;
    if (!CACHED)
        skip();
    drain_cache();
    char *blocks[100];
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 100; i++) {
        blocks[i] = buf_block_get(32768);
        assert_non_null(blocks[i]);
        memset(blocks[i], i, 32768);
    }
    size_t during = mallinfo2().uordblks;
    assert_true(during < before + 64 * 1024); /* 3.2 MiB of blocks, almost none of it heap */
    for (int i = 0; i < 100; i++)
        buf_block_put(blocks[i], 32768);
    drain_cache();
}

static void test_decay_halves_the_cache(void **state)
{
    (void)state;
    drain_cache();
    char *blocks[10];
    for (int i = 0; i < 10; i++)
        blocks[i] = buf_block_get(8192);
    for (int i = 0; i < 10; i++)
        buf_block_put(blocks[i], 8192);
    /* 10 cached: 5 go, then 3, 1, 1, and the cache is empty. */
    size_t want[] = {5, 3, 1, 1, 0};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_int_equal(buf_block_cache_decay(), CACHED ? want[i] * 8192 : 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_survives_growth_and_sliding),
        cmocka_unit_test(test_freed_blocks_are_reused),
        cmocka_unit_test(test_blocks_live_outside_the_heap),
        cmocka_unit_test(test_decay_halves_the_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
