/* bounds.h - the server's fixed sizes and delays, which its documented memory bound is made of. */
#ifndef ES_BOUNDS_H
#define ES_BOUNDS_H

#define READ_BUF_SIZE (64 * 1024)     /* per-worker read buffer */
#define OUT_HIGH_WATER (256 * 1024)   /* stop reading a connection above this */
#define OUT_LOW_WATER (128 * 1024)    /* and resume below this */
#define STAGE_KEEP (1024 * 1024)      /* a larger staging buffer is released after use */
#define LINGER_MS 2000                /* wait for the peer's FIN after our close */
#define ACCEPT_PAUSE_MS 200           /* stop accepting this long on EMFILE */
#define ACCEPT_BATCH 16               /* connections accepted per wake-up */
#define POOL_SLOTS 16                 /* spare buffers a worker keeps for reuse */
#define POOL_BYTES (16 * 1024 * 1024) /* at most this many bytes of them */
#define POOL_MIN (4 * 1024)           /* smaller buffers come from malloc, not the pool */
#define POOL_MAX (4 * 1024 * 1024)    /* and larger ones go back to it */
#define URING_BUFS 512                /* io_uring: receive buffers per worker (a power of two) */
#define URING_BUF_SIZE (16 * 1024)    /* io_uring: bytes of one receive buffer */
#define URING_RING_MIN 32             /* io_uring: fewest buffers left to the kernel at a time */
#define URING_TX_SEGS 64              /* io_uring: receive buffers one send may take (1 MiB; past
                                       * it, replies are copied and input held until they drain) */
#define URING_TX_SMALL 16             /* io_uring: segments of a send as it starts */
#define URING_TX_KEEP 64              /* io_uring: small sends kept for reuse per worker */
#define URING_TX_KEEP_LARGE 16        /* io_uring: large ones */
#define URING_SQ_ENTRIES 1024         /* io_uring: submission queue of a worker */
#define URING_CQ_ENTRIES 8192         /* io_uring: completion queue of a worker */
#define URING_REPLY_WAIT_US 1000      /* io_uring: longest wait before a reply's completion is seen */
#define URING_QUIET_PROBE_MS 1000     /* io_uring: a connection whose read sent nothing is probed this late */
#define URING_YIELD_MAX 16            /* io_uring: listeners whose accepts take turns among workers */

#endif
