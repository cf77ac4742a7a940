/* test_hist.c - unit tests of the latency histogram and its percentiles (lib/hist.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "hist.h"

#define TOP (UINT64_C(1) << (HIST_TOP_MSB + 1))     /* the first value that overflows */

/* A deterministic spread of values over every magnitude (xorshift64, then a random shift). */
static uint64_t next_value(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s >> (*s % 64);
}

/* The rank hist_percentile() looks for, computed the same way: ceil(p / 100 * count), >= 1. */
static uint64_t rank_of(double p, uint64_t count)
{
    double x = p / 100.0 * (double)count;
    uint64_t r = (uint64_t)x;

    if ((double)r < x)
        r++;
    return r ? r : 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Below 2 * HIST_SUB every value has a bucket of its own. */
static void test_exact_small(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 2 * HIST_SUB; v++) {
        assert_int_equal(hist_index(v), v);
        assert_int_equal(hist_upper((unsigned)v), v);
    }
}

/* Buckets are contiguous and ordered: each one starts just after the previous one's upper
 * bound; known edges; everything from 2^48 on overflows. */
static void test_bucket_boundaries(void **state)
{
    (void)state;
    for (unsigned i = 0; i + 1 < HIST_BUCKETS; i++) {
        uint64_t up = hist_upper(i);
        if (hist_index(up) != i || hist_index(up + 1) != i + 1)
            fail_msg("bucket %u: upper bound %llu is in bucket %u, %llu in bucket %u", i,
                     (unsigned long long)up, hist_index(up), (unsigned long long)(up + 1),
                     hist_index(up + 1));
        assert_true(hist_upper(i + 1) > up);
    }
    assert_int_equal(hist_index(255), 255);
    assert_int_equal(hist_index(256), 256);     /* from 256 on, buckets are 2 wide */
    assert_int_equal(hist_index(257), 256);
    assert_int_equal(hist_upper(256), 257);
    assert_int_equal(hist_index(511), 383);
    assert_int_equal(hist_index(512), 384);     /* then 4 wide */
    assert_int_equal(hist_upper(384), 515);
    assert_int_equal(hist_index(TOP - 1), HIST_BUCKETS - 2);
    assert_int_equal(hist_upper(HIST_BUCKETS - 2), TOP - 1);
    assert_int_equal(hist_index(TOP), HIST_BUCKETS - 1);
    assert_int_equal(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
    assert_int_equal(hist_upper(HIST_BUCKETS - 1), UINT64_MAX);
}

/* A value's bucket bound is at least the value and less than 0.8 % above it (1/128 at most). */
static void test_error_bound(void **state)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    double worst = 0;

    (void)state;
    for (uint64_t k = 0; k < 3000000; k++) {
        uint64_t v = k < 1000000 ? k : next_value(&s) % TOP;
        uint64_t up = hist_upper(hist_index(v));
        if (up < v || (v > 0 && ((up - v) * 1000 >= v * 8 || (up - v) * HIST_SUB >= v)))
            fail_msg("value %llu: bucket bound %llu", (unsigned long long)v,
                     (unsigned long long)up);
        if (v > 0 && (double)(up - v) / (double)v > worst)
            worst = (double)(up - v) / (double)v;
    }
    /* The bound is tight: the lowest value of a wide bucket is almost 1/128 below its bound. */
    assert_true(worst > 0.0077);
}

/* Percentiles of 1..1000: the bound of the bucket holding the value of that rank. */
static void test_percentiles(void **state)
{
    hist *h = calloc(1, sizeof *h);

    (void)state;
    assert_non_null(h);
    assert_int_equal(hist_percentile(h, 50), 0);            /* empty */
    for (uint64_t v = 1000; v >= 1; v--)
        hist_add(h, v);
    assert_int_equal(hist_percentile(h, 0), 1);
    assert_int_equal(hist_percentile(h, 50), 501);          /* 500 is in [500, 501] */
    assert_int_equal(hist_percentile(h, 90), 903);          /* 900 is in [900, 903] */
    assert_int_equal(hist_percentile(h, 99), 991);          /* 990 is in [988, 991] */
    assert_int_equal(hist_percentile(h, 100), 1000);        /* [1000, 1003], kept to max */
    free(h);
}

/* Against the exact order statistics of random data: never below, less than 0.8 % above, in
 * order, and within [min, max]. */
static void test_percentiles_random(void **state)
{
    static const double ps[] = { 0, 1, 25, 50, 90, 99, 99.9, 99.99, 100 };
    enum { N = 100000 };
    hist *h = calloc(1, sizeof *h);
    uint64_t *v = malloc(N * sizeof *v);
    uint64_t s = 42, prev = 0;

    (void)state;
    assert_non_null(h);
    assert_non_null(v);
    for (int i = 0; i < N; i++) {
        v[i] = 1000 + next_value(&s) % 50000000;            /* 1 us .. 50 ms, in ns */
        hist_add(h, v[i]);
    }
    qsort(v, N, sizeof *v, cmp_u64);
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        uint64_t exact = v[rank_of(ps[i], N) - 1], got = hist_percentile(h, ps[i]);
        if (got < exact || (got - exact) * 1000 >= exact * 8 || got < prev || got > v[N - 1])
            fail_msg("p%g: %llu, exact %llu (previous %llu, max %llu)", ps[i],
                     (unsigned long long)got, (unsigned long long)exact,
                     (unsigned long long)prev, (unsigned long long)v[N - 1]);
        prev = got;
    }
    assert_int_equal(hist_percentile(h, 100), v[N - 1]);
    assert_int_equal(h->max, v[N - 1]);
    assert_int_equal(h->min, v[0]);
    free(v);
    free(h);
}

/* count, sum, min and max are exact; a single value is every percentile; overflowing values
 * are counted and reported through max. */
static void test_max_min_sum(void **state)
{
    hist *h = calloc(1, sizeof *h);

    (void)state;
    assert_non_null(h);
    hist_add(h, 123456);
    assert_int_equal(h->count, 1);
    assert_int_equal(h->min, 123456);
    assert_int_equal(h->max, 123456);
    assert_int_equal(hist_percentile(h, 0), 123456);        /* the bucket's bound, kept to max */
    assert_int_equal(hist_percentile(h, 50), 123456);
    assert_int_equal(hist_percentile(h, 100), 123456);
    hist_add(h, 7);
    hist_add(h, 0);
    hist_add(h, 9999);
    assert_int_equal(h->count, 4);
    assert_int_equal(h->sum, 123456 + 7 + 0 + 9999);
    assert_int_equal(h->min, 0);
    assert_int_equal(h->max, 123456);
    assert_int_equal(hist_percentile(h, 25), 0);          /* rank 1 */
    assert_int_equal(hist_percentile(h, 30), 7);          /* rank ceil(1.2) = 2 */
    assert_int_equal(hist_percentile(h, 50), 7);
    assert_int_equal(hist_percentile(h, 51), 10047);      /* rank ceil(2.04) = 3: 9999 */

    memset(h, 0, sizeof *h);
    hist_add(h, TOP + 5);
    hist_add(h, UINT64_MAX - 1);
    assert_int_equal(h->bucket[HIST_BUCKETS - 1], 2);
    assert_int_equal(hist_percentile(h, 50), UINT64_MAX - 1);
    assert_int_equal(hist_percentile(h, 100), UINT64_MAX - 1);
    free(h);
}

/* Merging two halves gives what adding everything to one gives; empty ones change nothing. */
static void test_merge(void **state)
{
    hist *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b), *all = calloc(1, sizeof *all);
    hist *empty = calloc(1, sizeof *empty);
    uint64_t s = 7;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(all);
    assert_non_null(empty);
    hist_merge(a, empty);
    assert_int_equal(a->count, 0);
    hist_add(b, 9);
    hist_add(b, 5);
    hist_merge(b, empty);                   /* nothing from an empty one, not its minimum of 0 */
    assert_int_equal(b->count, 2);
    assert_int_equal(b->min, 5);
    hist_merge(empty, b);                   /* into an empty one: b's minimum is taken */
    assert_int_equal(empty->min, 5);
    assert_int_equal(empty->max, 9);
    assert_memory_equal(empty, b, sizeof *b);
    memset(empty, 0, sizeof *empty);
    memset(b, 0, sizeof *b);
    for (int i = 0; i < 10000; i++) {
        uint64_t v = next_value(&s);
        hist_add(i % 3 ? a : b, v);
        hist_add(all, v);
    }
    hist_merge(a, empty);
    hist_merge(a, b);
    assert_memory_equal(a, all, sizeof *all);
    free(a);
    free(b);
    free(all);
    free(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_small),
        cmocka_unit_test(test_bucket_boundaries),
        cmocka_unit_test(test_error_bound),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_percentiles_random),
        cmocka_unit_test(test_max_min_sum),
        cmocka_unit_test(test_merge),
    };

    return cmocka_run_group_tests_name("hist", tests, NULL, NULL);
}
