/* test_buf.c - unit tests of the growable byte buffer (lib/buf.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Checks the invariants that hold for every buffer between calls. */
static void check_invariants(const buf *b)
{
    assert_true(b->off + b->len <= b->cap);
    assert_ptr_equal(buf_head(b), b->data + b->off);
    assert_ptr_equal(buf_tail(b), buf_head(b) + b->len);
    assert_int_equal(buf_room(b), b->cap - b->off - b->len);
    if (b->cap == 0)
        assert_null(b->data);
    else
        assert_non_null(b->data);
}

/* Fills p with a pattern that depends on the absolute position pos. */
static void pattern(uint8_t *p, size_t n, size_t pos)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((pos + i) * 7 + 3);
}

/* Asserts that the buffer holds the pattern starting at position pos. */
static void check_pattern(const buf *b, size_t pos)
{
    const uint8_t *h = buf_head(b);
    for (size_t i = 0; i < b->len; i++) {
        if (h[i] != (uint8_t)((pos + i) * 7 + 3))
            fail_msg("byte %zu: got %u, expected %u", i, h[i], (uint8_t)((pos + i) * 7 + 3));
    }
}

static void test_empty(void **state)
{
    (void)state;
    buf b = {0};
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_room(&b), 0);
    /* Appending nothing allocates nothing. */
    assert_int_equal(buf_append(&b, "x", 0), 0);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    /* Reserving nothing on an empty buffer is satisfied as is. */
    assert_int_equal(buf_reserve(&b, 0), 0);
    assert_null(b.data);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.off + b.len + b.cap, 0);
}

static void test_append_consume(void **state)
{
    (void)state;
    buf b = {0};
    assert_int_equal(buf_append(&b, "hello", 5), 0);
    check_invariants(&b);
    assert_int_equal(b.len, 5);
    assert_true(b.cap >= 5);
    assert_memory_equal(buf_head(&b), "hello", 5);

    assert_int_equal(buf_append(&b, " world", 6), 0);
    assert_int_equal(b.len, 11);
    assert_memory_equal(buf_head(&b), "hello world", 11);

    buf_consume(&b, 6);
    check_invariants(&b);
    assert_int_equal(b.off, 6);
    assert_int_equal(b.len, 5);
    assert_memory_equal(buf_head(&b), "world", 5);

    buf_consume(&b, 0);
    assert_int_equal(b.off, 6);
    assert_int_equal(b.len, 5);

    /* An emptied buffer restarts at offset 0 and keeps its allocation. */
    size_t cap = b.cap;
    buf_consume(&b, 5);
    check_invariants(&b);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_int_equal(buf_room(&b), cap);
    buf_free(&b);
}

static void test_reserve_commit(void **state)
{
    (void)state;
    buf b = {0};
    assert_int_equal(buf_reserve(&b, 10), 0);
    check_invariants(&b);
    assert_true(buf_room(&b) >= 10);
    assert_int_equal(b.len, 0);
    memcpy(buf_tail(&b), "0123456789", 10);
    buf_commit(&b, 10);
    check_invariants(&b);
    assert_int_equal(b.len, 10);
    assert_memory_equal(buf_head(&b), "0123456789", 10);

    /* Enough room already: nothing moves. */
    uint8_t *data = b.data;
    size_t cap = b.cap;
    assert_int_equal(buf_reserve(&b, buf_room(&b)), 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    buf_free(&b);
}

static void test_reserve_growth(void **state)
{
    (void)state;
    buf b = {0};
    size_t prev = 0, grows = 0, total = 0;
    uint8_t chunk[1000];
    /* Append 1 MB in uneven chunks: capacity only ever grows, at least
     * doubling each time (geometric growth), and content is kept. */
    while (total < ((size_t)1 << 20)) {
        size_t n = 1 + total % sizeof chunk;
        pattern(chunk, n, total);
        assert_int_equal(buf_append(&b, chunk, n), 0);
        total += n;
        check_invariants(&b);
        assert_int_equal(b.len, total);
        if (b.cap != prev) {
            assert_true(b.cap >= 2 * prev);
            prev = b.cap;
            grows++;
        }
    }
    check_pattern(&b, 0);
    /* Geometric: about log2(1 MB / 512) growths, not one per append. */
    assert_true(grows <= 13);
    assert_true(b.cap < 4 * total);
    buf_free(&b);
}

static void test_reserve_exact_need(void **state)
{
    (void)state;
    buf b = {0};
    /* A first reservation bigger than the minimum gets at least that. */
    assert_int_equal(buf_reserve(&b, 100000), 0);
    assert_true(buf_room(&b) >= 100000);
    check_invariants(&b);
    buf_free(&b);
}

/* The linear-cost rule: bytes are moved to the front only when they are no
 * more than the consumed prefix; otherwise the buffer grows. */
static void test_compaction(void **state)
{
    (void)state;
    buf b = {0};
    uint8_t bytes[4096];
    assert_int_equal(buf_reserve(&b, 1), 0);
    size_t cap = b.cap;
    assert_true(cap <= sizeof bytes);
    pattern(bytes, cap, 0);
    assert_int_equal(buf_append(&b, bytes, cap), 0);
    assert_int_equal(b.cap, cap);
    assert_int_equal(buf_room(&b), 0);

    /* Consume more than half: the live bytes (fewer than the skipped ones)
     * move to the front, and the allocation is reused. */
    size_t skip = cap / 2 + 10;
    buf_consume(&b, skip);
    uint8_t *data = b.data;
    size_t live = b.len;
    assert_int_equal(buf_reserve(&b, skip), 0);
    check_invariants(&b);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, live);
    assert_true(buf_room(&b) >= skip);
    check_pattern(&b, skip);
    buf_free(&b);
}

static void test_compaction_equal_halves(void **state)
{
    (void)state;
    buf b = {0};
    uint8_t bytes[4096];
    assert_int_equal(buf_reserve(&b, 1), 0);
    size_t cap = b.cap;
    pattern(bytes, cap, 0);
    assert_int_equal(buf_append(&b, bytes, cap), 0);
    /* Exactly as many skipped as live: moving is still paid for. */
    buf_consume(&b, cap / 2);
    assert_int_equal(buf_reserve(&b, cap / 2), 0);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.off, 0);
    check_pattern(&b, cap / 2);
    buf_free(&b);
}

static void test_no_compaction_when_live_exceeds_skipped(void **state)
{
    (void)state;
    buf b = {0};
    uint8_t bytes[4096];
    assert_int_equal(buf_reserve(&b, 1), 0);
    size_t cap = b.cap;
    pattern(bytes, cap, 0);
    assert_int_equal(buf_append(&b, bytes, cap), 0);

    /* Few bytes consumed: moving the many live bytes to make a little room
     * would cost more than it frees, so the buffer must grow instead. */
    buf_consume(&b, 10);
    assert_int_equal(buf_reserve(&b, 5), 0);
    check_invariants(&b);
    assert_true(b.cap >= 2 * cap);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, cap - 10);
    assert_true(buf_room(&b) >= 5);
    check_pattern(&b, 10);
    buf_free(&b);
}

/* A queue that is appended to and consumed from in steady state never
 * grows without bound: compaction keeps the allocation bounded. */
static void test_steady_queue_bounded(void **state)
{
    (void)state;
    buf b = {0};
    uint8_t chunk[300];
    size_t in = 0, out = 0;
    for (int i = 0; i < 20000; i++) {
        pattern(chunk, sizeof chunk, in);
        assert_int_equal(buf_append(&b, chunk, sizeof chunk), 0);
        in += sizeof chunk;
        size_t n = b.len > 250 ? b.len - 250 : 0;
        buf_consume(&b, n);
        out += n;
        check_invariants(&b);
        assert_int_equal(b.len, in - out);
    }
    check_pattern(&b, out);
    assert_true(b.cap <= 4096);
    buf_free(&b);
}

static void test_large_append(void **state)
{
    (void)state;
    size_t n = (size_t)8 << 20;
    uint8_t *big = malloc(n);
    assert_non_null(big);
    pattern(big, n, 0);
    buf b = {0};
    assert_int_equal(buf_append(&b, big, 1), 0);
    assert_int_equal(buf_append(&b, big + 1, n - 1), 0);
    check_invariants(&b);
    assert_int_equal(b.len, n);
    assert_memory_equal(buf_head(&b), big, n);
    buf_consume(&b, n / 2 + 1);
    assert_int_equal(buf_append(&b, big, n / 2), 0);
    check_invariants(&b);
    assert_memory_equal(buf_head(&b), big + n / 2 + 1, n - n / 2 - 1);
    assert_memory_equal(buf_head(&b) + (n - n / 2 - 1), big, n / 2);
    buf_free(&b);
    free(big);
}

static void test_reserve_overflow(void **state)
{
    (void)state;
    buf b = {0};
    /* Impossible sizes fail without touching the buffer. */
    assert_int_equal(buf_reserve(&b, SIZE_MAX), -1);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);

    assert_int_equal(buf_append(&b, "abc", 3), 0);
    buf snapshot = b;
    assert_int_equal(buf_reserve(&b, SIZE_MAX), -1);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 1), -1);
    assert_memory_equal(&b, &snapshot, sizeof b);
    assert_int_equal(buf_append(&b, "x", SIZE_MAX - 1), -1);
    assert_memory_equal(&b, &snapshot, sizeof b);
    assert_memory_equal(buf_head(&b), "abc", 3);
    buf_free(&b);
}

static void test_buf_free(void **state)
{
    (void)state;
    buf b = {0};
    assert_int_equal(buf_append(&b, "abcdef", 6), 0);
    buf_consume(&b, 2);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    /* A freed buffer is a valid empty one and may be used again. */
    buf_free(&b);
    assert_int_equal(buf_append(&b, "xy", 2), 0);
    assert_memory_equal(buf_head(&b), "xy", 2);
    buf_free(&b);
}

/* buf_copy copies exactly n bytes, nothing around them, whatever the
 * distance between the two regions modulo a page (the near distances take
 * the vector loop) and whatever n (the loop's tail, the size threshold). */
static void test_copy_every_distance(void **state)
{
    (void)state;
    enum { GUARD = 64 };
    static const size_t sizes[] = {0, 1, 63, 64, 65, 2047, 2048, 2049, 2112, 4096 + 77};
    uint8_t *src = aligned_alloc(4096, 4096 * 3);
    uint8_t *dst = aligned_alloc(4096, 4096 * 4);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < 4096 * 3; i++)
        src[i] = (uint8_t)(i * 13 + 5);
    size_t near = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        for (size_t dist = 0; dist < 4096; dist++) {
            const uint8_t *s = src + 100;
            uint8_t *d = dst + GUARD + (100 - GUARD + dist) % 4096; /* d - s = dist mod 4096 */
            assert_int_equal(((uintptr_t)d - (uintptr_t)s) & 4095, dist);
            assert_int_equal(buf_copy_near(d, s, n), n >= 2048 && dist >= 1 && dist <= 31);
            near += (size_t)buf_copy_near(d, s, n);
            memset(dst, 0xee, 4096 * 4);
            assert_ptr_equal(buf_copy(d, s, n), d);
            assert_memory_equal(d, s, n);
            for (size_t g = 0; g < GUARD; g++) {
                assert_int_equal(d[-1 - (ptrdiff_t)g], 0xee);
                assert_int_equal(d[n + g], 0xee);
            }
        }
    }
    assert_int_equal(near, 4 * 31); /* the four sizes from 2048, 31 distances each */
    free(src);
    free(dst);
}

/* buf_append of a block 16 bytes past where it lies modulo a page (the
 * distance that made glibc's memcpy slow) takes the vector moves and is
 * right, for a copy much larger than the loop's step. */
static void test_append_near_distance(void **state)
{
    (void)state;
    uint8_t *src = aligned_alloc(4096, 65536);
    assert_non_null(src);
    pattern(src, 65536, 0);
    buf b = {0};
    assert_int_equal(buf_reserve(&b, 65536 + 4096), 0);
    size_t skew = ((uintptr_t)src + 16 - (uintptr_t)buf_tail(&b)) & 4095;
    assert_int_equal(buf_append(&b, src, skew), 0);
    assert_true(buf_copy_near(buf_tail(&b), src, 65536 - 3));
    assert_int_equal(buf_append(&b, src, 65536 - 3), 0);
    assert_memory_equal(buf_head(&b) + skew, src, 65536 - 3);
    check_invariants(&b);
    buf_free(&b);
    free(src);
}

/* The compaction in buf_reserve moves the live bytes to the front with
 * buf_copy: here 16 bytes before a page multiple, so the vector moves. */
static void test_compaction_near_distance(void **state)
{
    (void)state;
    uint8_t data[12288];
    pattern(data, sizeof data, 0);
    buf b = {0};
    assert_int_equal(buf_append(&b, data, sizeof data), 0);
    assert_int_equal(b.cap, 16384);
    buf_consume(&b, 8192 - 16);
    assert_true(b.off >= b.len);
    assert_true(buf_copy_near(b.data, buf_head(&b), b.len));
    uint8_t *before = b.data;
    assert_int_equal(buf_reserve(&b, 8000), 0);
    assert_ptr_equal(b.data, before); /* moved in place, not grown */
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 12288 - (8192 - 16));
    assert_memory_equal(buf_head(&b), data + 8192 - 16, b.len);
    check_invariants(&b);
    buf_free(&b);
}

/* buf_alloc_io: n usable bytes half a page past a page boundary, freed
 * through *mem (AddressSanitizer checks both). */
static void test_alloc_io(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 2048, 2049, 4096, 65536, 65536 * 8 + 5};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        void *mem = (void *)1;
        uint8_t *p = buf_alloc_io(sizes[k], &mem);
        assert_non_null(p);
        assert_non_null(mem);
        assert_int_equal((uintptr_t)p & 4095, 2048);
        memset(p, 0xab, sizes[k]);
        assert_int_equal(p[sizes[k] - 1], 0xab);
        free(mem);
    }
    void *mem = (void *)1;
    assert_null(buf_alloc_io(SIZE_MAX - 100, &mem));
    assert_null(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_append_consume),
        cmocka_unit_test(test_reserve_commit),
        cmocka_unit_test(test_reserve_growth),
        cmocka_unit_test(test_reserve_exact_need),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_compaction_equal_halves),
        cmocka_unit_test(test_no_compaction_when_live_exceeds_skipped),
        cmocka_unit_test(test_steady_queue_bounded),
        cmocka_unit_test(test_large_append),
        cmocka_unit_test(test_reserve_overflow),
        cmocka_unit_test(test_buf_free),
        cmocka_unit_test(test_copy_every_distance),
        cmocka_unit_test(test_append_near_distance),
        cmocka_unit_test(test_compaction_near_distance),
        cmocka_unit_test(test_alloc_io),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
