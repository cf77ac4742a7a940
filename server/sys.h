/* sys.h - the workers' per-message system calls, without glibc's cancellation bookkeeping.
 *
 * In a process with more than one thread, glibc's send, recv and epoll_wait are cancellation
 * points: each call switches the thread to asynchronous cancellation and back, two atomic
 * read-modify-writes around the system call (1.5 % of a worker's time at 64-byte messages).
 * echosrv never cancels a thread, so the workers' hot path enters the kernel directly. */
#ifndef ECHOSRV_SYS_H
#define ECHOSRV_SYS_H

#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* send(2): -1 with errno on failure. */
static inline ssize_t sys_send(int fd, const void *p, size_t len, int flags)
{
    return syscall(SYS_sendto, fd, p, len, flags, NULL, 0);
}

/* recv(2): -1 with errno on failure. */
static inline ssize_t sys_recv(int fd, void *p, size_t len, int flags)
{
    return syscall(SYS_recvfrom, fd, p, len, flags, NULL, NULL);
}

/* epoll_wait(2), as epoll_pwait with no signal mask (every architecture has it). */
static inline int sys_epoll_wait(int epfd, struct epoll_event *ev, int n, int timeout_ms)
{
    return (int)syscall(SYS_epoll_pwait, epfd, ev, n, timeout_ms, NULL, (size_t)(_NSIG / 8));
}

#endif
