/* buf.h - a growable byte buffer with a consumed prefix (input and output queues). */
#ifndef ES_BUF_H
#define ES_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Bytes live in data[off .. off+len); cap is the allocation size. A zeroed
 * buf is valid and empty and owns nothing. */
typedef struct buf {
    uint8_t *data;
    size_t off;
    size_t len;
    size_t cap;
} buf;

/* Pointer to the first unconsumed byte. */
static inline uint8_t *buf_head(const buf *b) { return b->data + b->off; }

/* Pointer just past the last byte: where buf_reserve made room. */
static inline uint8_t *buf_tail(const buf *b) { return b->data + b->off + b->len; }

/* Free space after the tail. */
static inline size_t buf_room(const buf *b) { return b->cap - b->off - b->len; }

/* Make room for at least n more bytes at the tail, moving the bytes to the
 * front or growing the allocation (geometrically) as needed. Returns 0, or
 * -1 if memory is exhausted (the buffer is unchanged). */
int buf_reserve(buf *b, size_t n);

/* Append n bytes. Returns 0 or -1 (out of memory; nothing appended). */
int buf_append(buf *b, const void *data, size_t n);

/* Mark n bytes written at the tail (after buf_reserve) as part of the buffer. */
static inline void buf_commit(buf *b, size_t n) { b->len += n; }

/* Drop n bytes (n <= len) from the head; an emptied buffer restarts at 0. */
static inline void buf_consume(buf *b, size_t n)
{
    b->len -= n;
    b->off = b->len ? b->off + n : 0;
}

/* memcpy(dst, src, n) for regions that do not overlap, without the slow
 * case of the `rep movsb` that glibc's memcpy uses for copies of a few KiB
 * to a few hundred KiB: on some CPUs (AMD Zen 3 and 4, with FSRM) it runs
 * about 20 times slower when dst lies 1 to 31 bytes past src modulo 4 KiB.
 * Such copies go through 16-byte vector moves instead. Any thread. */
void *buf_copy(void *dst, const void *src, size_t n);

/* Whether buf_copy takes the vector moves for this copy: from 2 KiB (below
 * it glibc's memcpy does not use rep movsb) at a distance of 1 to 31 bytes. */
static inline int buf_copy_near(const void *dst, const void *src, size_t n)
{
    uintptr_t dist = ((uintptr_t)dst - (uintptr_t)src) & 4095;
    return n >= 2048 && dist >= 1 && dist < 32;
}

/* Memory for n bytes that the kernel copies into or out of (a read buffer,
 * io_uring's receive buffers), starting half a page past a page boundary.
 * The kernel's socket buffers tend to start on page boundaries, and its
 * copies use `rep movsb` too: at either end of a page they often land in
 * the slow window above (measured: a 1 MiB echo cost 1.3 to 1.7x more CPU
 * with the buffer at page offset 0, or 16 where malloc puts large blocks).
 * *mem is set to what free() takes; NULL when out of memory. Any thread. */
void *buf_alloc_io(size_t n, void **mem);

/* Release the allocation; the buffer is empty and owns nothing. */
void buf_free(buf *b);

#endif
