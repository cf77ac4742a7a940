/* buf.c - a growable byte buffer with a consumed prefix. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAP 512
#define PAGE 4096
#define IO_SKEW (PAGE / 2)

typedef uint8_t v16 __attribute__((vector_size(16), aligned(1), may_alias));

void *buf_copy(void *dst, const void *src, size_t n)
{
    if (!buf_copy_near(dst, src, n))
        return memcpy(dst, src, n);
    uint8_t *d = dst;
    const uint8_t *s = src;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        v16 a = *(const v16 *)(s + i), b = *(const v16 *)(s + i + 16);
        v16 c = *(const v16 *)(s + i + 32), e = *(const v16 *)(s + i + 48);
        *(v16 *)(d + i) = a;
        *(v16 *)(d + i + 16) = b;
        *(v16 *)(d + i + 32) = c;
        *(v16 *)(d + i + 48) = e;
        /* Keeps the compiler from turning the loop back into a memcpy call. */
        __asm__("" : "+r"(d));
    }
    memcpy(d + i, s + i, n - i);
    return dst;
}

void *buf_alloc_io(size_t n, void **mem)
{
    *mem = NULL;
    if (n > SIZE_MAX - IO_SKEW - PAGE)
        return NULL;
    size_t size = (n + IO_SKEW + PAGE - 1) / PAGE * PAGE;
    uint8_t *p = aligned_alloc(PAGE, size);
    if (p == NULL)
        return NULL;
    *mem = p;
    return p + IO_SKEW;
}

int buf_reserve(buf *b, size_t n)
{
    if (buf_room(b) >= n)
        return 0;
    if (b->off >= b->len && b->cap - b->len >= n) {
        /* The live bytes are no more than those skipped: moving them is
         * paid for by the consumption, so the cost stays linear. */
        buf_copy(b->data, b->data + b->off, b->len);
        b->off = 0;
        return 0;
    }
    if (b->len > SIZE_MAX - n)
        return -1;
    size_t need = b->len + n;
    size_t cap = b->cap > BUF_MIN_CAP ? b->cap : BUF_MIN_CAP;
    while (cap < need || cap == b->cap) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    uint8_t *d;
    if (b->off == 0) {
        d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
    } else {
        d = malloc(cap);
        if (d == NULL)
            return -1;
        buf_copy(d, b->data + b->off, b->len);
        free(b->data);
    }
    b->data = d;
    b->cap = cap;
    b->off = 0;
    return 0;
}

int buf_append(buf *b, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    buf_copy(buf_tail(b), data, n);
    b->len += n;
    return 0;
}

void buf_free(buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
