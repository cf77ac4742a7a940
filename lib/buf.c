/* buf.c - a growable byte buffer with a consumed prefix. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAP 512

int buf_reserve(buf *b, size_t n)
{
    if (buf_room(b) >= n)
        return 0;
    if (b->off >= b->len && b->cap - b->len >= n) {
        /* The live bytes are no more than those skipped: moving them is
         * paid for by the consumption, so the cost stays linear. */
        memmove(b->data, b->data + b->off, b->len);
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
        memcpy(d, b->data + b->off, b->len);
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
    memcpy(buf_tail(b), data, n);
    b->len += n;
    return 0;
}

void buf_free(buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
