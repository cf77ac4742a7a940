/* bench/copydist.c - copy speed by distance between destination and source modulo 4 KiB:
 * glibc's memcpy against buf_copy, the figures behind buf_copy and buf_alloc_io (lib/buf.c). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "common.h"

#define SIZE (64 * 1024) /* in the range where glibc's memcpy uses rep movsb */
#define REPS 200
#define ROUNDS 5

typedef void *(*copy_fn)(void *, const void *, size_t);

/* Best of ROUNDS, in GB/s, of REPS copies of SIZE bytes from src to dst. */
static double speed(copy_fn copy, unsigned char *dst, const unsigned char *src)
{
    double best = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = bench_now_ns();
        for (int k = 0; k < REPS; k++) {
            copy(dst, src, SIZE);
            __asm__ volatile("" : : "r"(dst) : "memory"); /* every copy happens */
        }
        uint64_t t = bench_now_ns() - t0;
        double gbs = t > 0 ? (double)SIZE * REPS / (double)t : 0;
        if (gbs > best)
            best = gbs;
    }
    return best;
}

int main(int argc, char **argv)
{
    static const int dists[] = {0, 1, 8, 16, 24, 31, 32, 48, 64, 100, 2048, 4095};
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: copydist\n"
                        "Prints the speed of 64 KiB copies by distance (destination - source)\n"
                        "modulo 4096, for glibc's memcpy and for buf_copy (lib/buf.c).\n");
        return 2;
    }
    unsigned char *src = aligned_alloc(4096, SIZE + 8192);
    unsigned char *dst = aligned_alloc(4096, SIZE + 8192);
    if (src == NULL || dst == NULL) {
        fprintf(stderr, "copydist: out of memory\n");
        return 1;
    }
    memset(src, 1, SIZE + 8192);
    memset(dst, 2, SIZE + 8192);
    printf("%-10s %10s %10s\n", "distance", "memcpy", "buf_copy");
    for (size_t i = 0; i < sizeof dists / sizeof dists[0]; i++) {
        unsigned char *d = dst + dists[i];
        printf("%-10d %7.1f GB/s %5.1f GB/s\n", dists[i], speed(memcpy, d, src),
               speed(buf_copy, d, src));
    }
    free(src);
    free(dst);
    return 0;
}
