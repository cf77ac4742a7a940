/* bench/common.h — static inline helpers shared by loadgen and baseline (the clock). */
#ifndef ECHOSRV_BENCH_COMMON_H
#define ECHOSRV_BENCH_COMMON_H

#include <stdint.h>
#include <time.h>

/* Monotonic clock in nanoseconds. Any thread. */
static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
