/* hist.c - a log-linear histogram of latencies and its percentiles (see hist.h). */
#include "hist.h"

unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    if (msb > HIST_TOP_MSB)
        return HIST_BUCKETS - 1;
    unsigned shift = msb - HIST_SUB_BITS;
    /* v >> shift is in [HIST_SUB, 2 * HIST_SUB): its low bits pick the sub-bucket. */
    return HIST_SUB * (shift + 1) + (unsigned)((v >> shift) & (HIST_SUB - 1));
}

uint64_t hist_upper(unsigned i)
{
    if (i < 2 * HIST_SUB)
        return i;
    if (i >= HIST_BUCKETS - 1)
        return UINT64_MAX;
    unsigned shift = i / HIST_SUB - 1;
    uint64_t lo = (uint64_t)(HIST_SUB + i % HIST_SUB) << shift;
    return lo + ((uint64_t)1 << shift) - 1;
}

void hist_add(hist *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += v;
    h->bucket[hist_index(v)]++;
}

void hist_merge(hist *h, const hist *from)
{
    if (from->count == 0)
        return;
    if (h->count == 0 || from->min < h->min)
        h->min = from->min;
    if (from->max > h->max)
        h->max = from->max;
    h->count += from->count;
    h->sum += from->sum;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        h->bucket[i] += from->bucket[i];
}

uint64_t hist_percentile(const hist *h, double p)
{
    double rank = p / 100.0 * (double)h->count;
    uint64_t target = (uint64_t)rank, seen = 0;

    if (h->count == 0)
        return 0;
    if ((double)target < rank)
        target++;               /* ceil(), without libm */
    if (target == 0)
        target = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= target) {
            uint64_t v = hist_upper(i);
            return v < h->max ? v : h->max;     /* never below min: that is in bucket <= i */
        }
    }
    return h->max;
}
