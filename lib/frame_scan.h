/* frame_scan.h - the separator scan's vector loop, a template: lib/frame.c
 * includes it once per vector width, with SCAN_BLOCK (bytes per vector),
 * SCAN_NAME(x) (the names it defines) and SCAN_ATTR (the target they are
 * compiled for) defined, and find_tail, STRIDE in scope. Not a public header. */

typedef uint8_t SCAN_NAME(block)
    __attribute__((vector_size(SCAN_BLOCK)));

/* Does any of the STRIDE positions from hay have the separator's first
 * byte there and its last byte m - 1 further on? */
SCAN_ATTR static inline int SCAN_NAME(stride_hits)(const uint8_t *hay, size_t m,
                                                   const SCAN_NAME(block) *first,
                                                   const SCAN_NAME(block) *last)
{
    SCAN_NAME(block) any = {0};
#pragma GCC unroll 8
    for (size_t u = 0; u < STRIDE; u += SCAN_BLOCK) {
        SCAN_NAME(block) a, b;
        memcpy(&a, hay + u, SCAN_BLOCK); /* unaligned loads */
        memcpy(&b, hay + u + m - 1, SCAN_BLOCK);
        any |= (SCAN_NAME(block))((a == *first) & (b == *last));
    }
    uint64_t w[SCAN_BLOCK / 8], bits = 0;
    memcpy(w, &any, SCAN_BLOCK);
    for (size_t k = 0; k < SCAN_BLOCK / 8; k++)
        bits |= w[k];
    return bits != 0;
}

/* The first separator (2 to SHORT_SEP_MAX bytes) in hay[0..n), or NULL. */
SCAN_ATTR static const uint8_t *SCAN_NAME(find)(const uint8_t *hay, size_t n,
                                                const uint8_t *sep, size_t m)
{
    SCAN_NAME(block) first, last;
    for (size_t j = 0; j < SCAN_BLOCK; j++) {
        first[j] = sep[0];
        last[j] = sep[m - 1];
    }
    size_t i = 0;
    for (; i + STRIDE + m - 1 <= n; i += STRIDE) {
        if (!SCAN_NAME(stride_hits)(hay + i, m, &first, &last))
            continue;
        /* A candidate: rare in most data, at worst every position. */
        const uint8_t *hit = find_tail(hay + i, STRIDE + m - 1, sep, m);
        if (hit != NULL)
            return hit;
    }
    return find_tail(hay + i, n - i, sep, m);
}
