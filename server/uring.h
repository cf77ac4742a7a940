/* uring.h - the workers' io_uring back end: multishot accept and receive into a provided-buffer ring, batched sends. */
#ifndef ES_URING_H
#define ES_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

typedef struct worker worker;
typedef struct listener listener;
typedef struct es_conn es_conn;

/* Whether this build and this kernel can run the io_uring back end:
 * multishot accept and receive, provided-buffer rings (Linux 6.0). Returns
 * 1, or 0 with the reason in why. Any thread. */
int uring_available(char *why, size_t len);

/* Set up w's ring and its provided buffers. Returns 0, or -1 with a
 * message in err. On w's own thread (the ring has a single issuer). */
int uring_worker_init(worker *w, char *err, size_t errlen);

/* Tear down w's ring (cancelling whatever is in flight) and free the
 * connections that waited for their operations to end. Owning worker. */
void uring_worker_free(worker *w);

/* Submit what is queued, wait up to timeout_ms (-1: no limit) for a
 * completion, and handle every completion there is. Returns 1 when the
 * worker's epoll set (TLS connections, PROXY headers, the wake-up eventfd)
 * has events to dispatch, 0 when not, -1 on a fatal ring error (logged).
 * Owning worker. */
int uring_wait(worker *w, int timeout_ms);

/* Submit what is queued and handle the completions that are ready,
 * without waiting: what the peers sent so far has been handled. Owning
 * worker, between batches of events. */
void uring_flush(worker *w);

/* The next uring_wait() returns once anything has completed, the replies
 * of this turn included: a connection now closing acts on its reply's
 * completion. */
void uring_reap_soon(worker *w);

/* Have the worker poll its epoll set again after this turn, without
 * waiting: the last epoll_wait() returned events, and level-triggered
 * ones may still be pending. Owning worker. */
void uring_epoll_again(worker *w);

/* Start or stop the multishot accepts on the listeners of w's generation.
 * Accepts stopped may still complete: those connections are served when
 * the current generation has a listener on the same socket, else closed.
 * uring_accept_start returns 0, or -1 with errno. Owning worker. */
int uring_accept_start(worker *w);
void uring_accept_stop(worker *w);

/* Arm the accept of the listening socket lfd again, after its multishot
 * accept ended. Returns 0, or -1. Owning worker. */
int uring_accept_one(worker *w, int lfd);

/* w took a connection from lfd and holds more than its share: let the
 * other workers take the next ones.
 * A multishot accept keeps its place at the head of the socket's wait
 * queue, so the worker that armed first would get every connection; after
 * this loop turn w's accept on lfd is cancelled, and its end arms it again
 * (worker_accept_done), behind the other workers'. Owning worker. */
void uring_accept_yield(worker *w, int lfd);

/* Arm c's multishot receive, unless it is armed. Returns 0, or -1 when
 * the ring is broken. Owning worker. */
int uring_recv_start(es_conn *c);

/* Arm c's receive again after this loop turn: it found no free buffer. */
void uring_recv_later(es_conn *c);

/* Cancel c's receive: backpressure. Data already received is still
 * delivered. Owning worker. */
void uring_recv_stop(es_conn *c);

/* Send len bytes at p (c->sending), which stay valid and unchanged until
 * the send completes (conn_uring_sent()). Returns 0, or -1 when the ring
 * is broken. Owning worker. */
int uring_send(es_conn *c, const uint8_t *p, size_t len);

/* Send len bytes at p, in provided buffer bid, from where they lie: a new
 * send when none is in flight, or one more segment of the send prepared
 * this loop turn (one sendmsg for the replies to every read of the turn).
 * Such a send does not wait for room: it fails with EAGAIN instead, so a
 * peer that does not read cannot hold buffers. Returns 1 when the bytes
 * were taken (bid is then given back when the send is done), 0 when the
 * caller must queue a copy, -1 when the ring is broken. Owning worker. */
int uring_send_span(es_conn *c, const uint8_t *p, size_t len, int bid);

/* The zero-copy send of c completed with sent bytes out: give its buffers
 * back, appending the bytes not sent to rest (NULL: dropped). Returns the
 * bytes appended, or -1 when out of memory (the buffers are back all the
 * same). Owning worker. */
ssize_t uring_tx_finish(es_conn *c, size_t sent, buf *rest);

/* Cancel whatever c has in flight: c is closed, and freed once the last
 * of its operations has completed. Owning worker. */
void uring_conn_cancel(es_conn *c);

/* Where provided buffer bid lies, and giving it back to the kernel.
 * Owning worker. */
const uint8_t *uring_buf_addr(worker *w, int bid);
void uring_buf_release(worker *w, int bid);

#endif
