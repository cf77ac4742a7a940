/* hist.h - a log-linear histogram of latencies (any uint64_t) and its percentiles. */
#ifndef ES_HIST_H
#define ES_HIST_H

#include <stdint.h>

/* Values below 2 * HIST_SUB have a bucket each; above, every power of two is cut into HIST_SUB
 * buckets, so the upper bound of a value's bucket is less than 1/HIST_SUB (0.78 %) above it.
 * Values of 2^(HIST_TOP_MSB + 1) and more go to a last, overflow bucket. */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_TOP_MSB 47
#define HIST_BUCKETS (HIST_SUB * (HIST_TOP_MSB - HIST_SUB_BITS + 2) + 1)

/* Counts per bucket, and the exact count, sum (modulo 2^64), minimum and maximum of the values
 * added. A zeroed hist is valid and empty; it owns no memory. A hist is used by one thread at
 * a time. */
typedef struct hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;               /* meaningless while count is 0 */
    uint64_t max;
    uint64_t bucket[HIST_BUCKETS];
} hist;

/* The bucket (< HIST_BUCKETS) that value v falls into. Any thread. */
unsigned hist_index(uint64_t v);

/* The highest value that falls into bucket i (< HIST_BUCKETS): UINT64_MAX for the overflow
 * bucket. Any thread. */
uint64_t hist_upper(unsigned i);

/* Add one value. */
void hist_add(hist *h, uint64_t v);

/* Add everything FROM holds to h (the bucket counts, count, sum, minimum and maximum). */
void hist_merge(hist *h, const hist *from);

/* The p-th percentile (0 <= p <= 100) of the values in h: the upper bound of the bucket that
 * holds the value of rank ceil(p / 100 * count) (at least 1), or max if that is lower. Returns
 * 0 for an empty h. */
uint64_t hist_percentile(const hist *h, double p);

#endif
