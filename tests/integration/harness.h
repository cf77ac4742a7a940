/* harness.h - integration test helpers: temp dirs, echosrv processes, sockets, /proc. */
#ifndef ECHOSRV_TESTS_HARNESS_H
#define ECHOSRV_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#define HS_ADDR_MAX 160         /* longest listener address text kept */
#define HS_MAX_LISTENERS 8      /* listeners remembered per server */

/* A child process (usually echosrv) whose stdout and stderr are drained into a buffer by a
 * background thread, so the child never blocks on a full pipe. Opaque; see the hs_proc_*. */
struct hs_proc;

/* Time and sleeping. hs_now_ms() returns CLOCK_MONOTONIC in milliseconds. */
long hs_now_ms(void);
void hs_sleep_ms(int ms);

/* Returns the value of environment variable NAME if it is set to an absolute path, else prints
 * a '# ' diagnostic and returns NULL. The result belongs to the environment. */
const char *hs_env_path(const char *name);

/* Raises this process's RLIMIT_NOFILE soft limit towards the hard limit (at most 65536).
 * Also ignores SIGPIPE. Call once before the tests. Returns 0 or -1. */
int hs_process_init(void);

/* Arms a SIGALRM backstop: if the current test is still running after SECONDS, the handler
 * prints '# TIMEOUT ... NAME', SIGKILLs every child started by hs_spawn() and exits with 1.
 * NAME must stay valid (a string literal). hs_alarm_disarm() cancels it. */
void hs_alarm_arm(unsigned seconds, const char *name);
void hs_alarm_disarm(void);

/* Creates a fresh private directory (mkdtemp) under $TMPDIR or /tmp and writes its path to
 * OUT. Returns 0 or -1. hs_rmtree() removes the directory and the files in it (one level). */
int hs_tmpdir(char *out, size_t cap);
void hs_rmtree(const char *dir);

/* Writes DIR/NAME with the formatted text and puts its path in OUT. Returns 0 or -1. */
int hs_write_file(char *out, size_t cap, const char *dir, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Writes DIR/NAME holding the standard [server] section (bind = BIND, threads = 2,
 * plugin = echo, plugin_dir = $ES_PLUGIN_DIR, log_level = info) followed by the formatted
 * EXTRA text (more [server] keys first, then other sections). Path in OUT. Returns 0 or -1. */
int hs_write_config(char *out, size_t cap, const char *dir, const char *name, const char *bind,
                    const char *extra_fmt, ...) __attribute__((format(printf, 6, 7)));

/* hs_write_config() serving PLUGIN instead of echo. */
int hs_write_plugin_config(char *out, size_t cap, const char *dir, const char *name,
                           const char *bind, const char *plugin, const char *extra_fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Starts $ECHOSRV with --allow-root and ARGS (NULL-terminated, without argv[0]): tests that are
 * not about privileges run as whoever runs them, root included. stdin is /dev/null, stdout and
 * stderr go to a CLOEXEC pipe drained in the background. NOFILE > 0 sets RLIMIT_NOFILE (soft
 * and hard) in the child before exec. Returns NULL on failure. Free with hs_proc_free(). */
struct hs_proc *hs_spawn(const char *const args[], long nofile);

/* hs_spawn() with exactly ARGS (no --allow-root): for the tests of running as root. Like every
 * spawn of echosrv here, it puts `--io $ECHOSRV_TEST_IO` first when that variable is set (the
 * suite runs under each back end); a later --io in ARGS wins. */
struct hs_proc *hs_spawn_exact(const char *const args[], long nofile);

#define HS_MAX_PASS_FDS 8       /* fds hs_spawn_with() can pass */

/* What hs_spawn_with() gives the child on top of hs_spawn_exact()'s set-up, the way a
 * service manager starts a daemon. */
struct hs_spawn_opts {
    const char *const *env;     /* NULL-terminated: "NAME=VALUE" sets NAME, "NAME" removes it
                                 * from the child's environment; NULL: this environment */
    const int *fds;             /* passed as fds 3, 4, ... in this order (not CLOEXEC in the
                                 * child); the caller keeps its own */
    int nfds;                   /* at most HS_MAX_PASS_FDS */
    bool listen_pid;            /* set LISTEN_PID to the child's own pid, after fork() and
                                 * before exec(), as systemd does for socket activation */
};

/* hs_spawn_exact() with OPTS (NULL: exactly hs_spawn_exact()). Returns NULL on failure. Free
 * with hs_proc_free(). */
struct hs_proc *hs_spawn_with(const char *const args[], long nofile,
                              const struct hs_spawn_opts *opts);

/* Runs `echosrv --allow-root -c CONF` and waits (at most TIMEOUT_MS) until its output holds
 * NLISTEN lines containing "listening on ". On failure prints the output as '# ' lines, kills the child and
 * returns NULL. */
struct hs_proc *hs_server_start(const char *conf, int nlisten, long nofile, int timeout_ms);

/* hs_server_start() of `echosrv ARGS` exactly (hs_spawn_exact()). */
struct hs_proc *hs_server_start_args(const char *const args[], int nlisten, long nofile,
                                     int timeout_ms);

/* Waits until the output holds N "listening on " lines and parses their addresses. Returns 0,
 * or -1 on timeout or if the child closed its output first. */
int hs_wait_listening(struct hs_proc *p, int n, int timeout_ms);

/* Address of the I-th listener as logged ("127.0.0.1:PORT", "[::1]:PORT", "unix:/path"), or
 * NULL. Valid until hs_proc_free(). */
const char *hs_addr(const struct hs_proc *p, int i);

pid_t hs_pid(const struct hs_proc *p);

/* Waits up to TIMEOUT_MS for the child to exit; returns its wait status, or -1 if it is still
 * running. Waits for the output to reach EOF too (briefly), so hs_output() is complete. */
int hs_wait_exit(struct hs_proc *p, int timeout_ms);

/* Sends SIGTERM, waits up to TIMEOUT_MS, then SIGKILL. Returns the wait status, or -1. */
int hs_stop(struct hs_proc *p, int timeout_ms);

/* Waits up to TIMEOUT_MS until the output contains NEEDLE. Returns 0 or -1. */
int hs_wait_output(struct hs_proc *p, const char *needle, int timeout_ms);

/* A copy of the output captured so far (NUL-terminated). Caller frees. */
char *hs_output(struct hs_proc *p);
bool hs_output_has(struct hs_proc *p, const char *needle);

/* Prints the captured output as '# ' lines on stderr, under the heading WHY. */
void hs_dump_output(struct hs_proc *p, const char *why);

/* Kills the child if still running (SIGKILL), stops the drain thread and frees P. NULL is ok. */
void hs_proc_free(struct hs_proc *p);

/* hs_proc_free() on every process still alive from hs_spawn(): for test teardown. */
void hs_proc_free_all(void);

/* Runs $ECHOSRV with --allow-root and ARGS to completion (at most TIMEOUT_MS, then SIGKILL).
 * Returns the wait status or -1; *OUTPUT (if not NULL) receives its stdout+stderr, which the caller frees. */
int hs_run(const char *const args[], int timeout_ms, char **output);

/* hs_run() with exactly ARGS (hs_spawn_exact(): no --allow-root). */
int hs_run_exact(const char *const args[], int timeout_ms, char **output);

/* Opens a blocking CLOEXEC stream socket to ADDR (the syntax of hs_addr()) with SO_RCVTIMEO
 * and SO_SNDTIMEO of TIMEOUT_MS (TCP_NODELAY for TCP). Returns the fd or -1. */
int hs_connect(const char *addr, int timeout_ms);

/* Starts a non-blocking connect to ADDR; the connection may still be in progress. Returns the
 * fd or -1. */
int hs_connect_nb(const char *addr);

/* Sends all LEN bytes within TIMEOUT_MS (poll + MSG_DONTWAIT|MSG_NOSIGNAL). Returns 0, or -1
 * with errno (ETIMEDOUT on timeout). */
int hs_send_all(int fd, const void *buf, size_t len, int timeout_ms);

/* Receives exactly LEN bytes within TIMEOUT_MS. Returns LEN; the number received (< LEN) if
 * the peer closed; -1 with errno on error or timeout (ETIMEDOUT). */
ssize_t hs_recv_exact(int fd, void *buf, size_t len, int timeout_ms);

/* Receives bytes up to and including the first SEP, never consuming beyond it, within
 * TIMEOUT_MS. Returns the length including SEP; -1 with errno: ETIMEDOUT, EMSGSIZE (CAP
 * reached), ECONNRESET (peer closed or reset), or another error. */
ssize_t hs_recv_until(int fd, const void *sep, size_t seplen, void *buf, size_t cap,
                      int timeout_ms);

/* Sends OUT while receiving INLEN bytes into IN, both at once (poll), within TIMEOUT_MS.
 * Returns 0, or -1 with errno (ETIMEDOUT, ECONNRESET when the peer closed, ...). *GOT (if not
 * NULL) receives the number of bytes received in every case. */
int hs_exchange(int fd, const void *out, size_t outlen, void *in, size_t inlen, int timeout_ms,
                size_t *got);

/* Sends MSG (a NUL-terminated string that includes its separator) and expects exactly MSG
 * back within TIMEOUT_MS. Returns 0 or -1 (prints a '# ' diagnostic). */
int hs_ping(int fd, const char *msg, int timeout_ms);

/* Waits up to TIMEOUT_MS for the peer to close. Returns 0 when recv() gives EOF or
 * ECONNRESET, 1 if data arrived instead (left unread), -1 on timeout. */
int hs_wait_closed(int fd, int timeout_ms);

/* utime + stime of PID in seconds from /proc/PID/stat, or -1. */
double hs_proc_cpu_seconds(pid_t pid);

/* VmRSS of PID in KiB from /proc/PID/status, or -1. */
long hs_proc_rss_kb(pid_t pid);

/* Number of open fds of PID (entries of /proc/PID/fd), or -1. */
int hs_proc_fd_count(pid_t pid);

/* Number of threads of PID (entries of /proc/PID/task), or -1. */
int hs_proc_task_count(pid_t pid);

/* Finds "listening on ADDR (listener NAME, plugin ..." in TEXT (echosrv's output) and copies
 * ADDR into OUT (CAP bytes). Returns 0, or -1 when there is no such line. */
int hs_listener_addr(const char *text, const char *name, char *out, size_t cap);

/* True if /proc/net/if_inet6 lists the loopback address ::1. */
bool hs_have_ipv6_loopback(void);

/* Fills BUF with printable pattern bytes (no '\r' or '\n') derived from SEED. */
void hs_fill_pattern(void *buf, size_t len, unsigned seed);

/* Prints the LEN bytes of TEXT as '# ' lines on stderr, under the heading WHAT and LEN. */
void hs_dump_lines(const char *what, const char *text, size_t len);

/* True if WANT and GOT hold the same LEN bytes; otherwise prints where they first differ, under
 * the name WHAT, and returns false. */
bool hs_same_bytes(const char *what, const void *want, const void *got, size_t len);

/* ---- cmocka fixtures: per-test state shared by the integration tests ------------------------
 * The macros and functions below call cmocka (fail(), assert_*): include <cmocka.h> first, and
 * call them from the test's own thread. */

#define HS_READY_MS 10000       /* bound for a server's 'listening on' lines */
#define HS_CTX_MAX_FDS 512      /* fds a test context remembers to close */

/* Prints the formatted text as a '# ERROR: ' diagnostic (fail_msg() prints it without the TAP
 * '# ' prefix) and fails the current test. */
#define HS_FAIL(...)                                \
    do {                                            \
        fprintf(stderr, "# ERROR: ");               \
        fprintf(stderr, __VA_ARGS__);               \
        fputc('\n', stderr);                        \
        fail();                                     \
    } while (0)

/* One test of a group, run between hs_ctx_setup() and hs_ctx_teardown(). */
#define HS_CTX_TEST(f) cmocka_unit_test_setup_teardown(f, hs_ctx_setup, hs_ctx_teardown)

/* Per-test state: a private temp dir, the path of the test's echosrv configuration, the fds
 * to close at teardown. A file that needs more puts a struct hs_ctx first in its own state. */
struct hs_ctx {
    char dir[256];
    char conf[512];
    int fds[HS_CTX_MAX_FDS];
    int nfds;
};

/* cmocka setup: checks that $ECHOSRV and $ES_PLUGIN_DIR are absolute paths and puts in *STATE
 * a new zeroed struct hs_ctx with a fresh temp dir. Returns 0, or -1 after a '# ' diagnostic. */
int hs_ctx_setup(void **state);

/* The same for a file's own per-test struct of SIZE bytes, whose first member is the
 * struct hs_ctx. */
int hs_ctx_setup_size(void **state, size_t size);

/* cmocka teardown: disarms the backstop, frees every child left from hs_spawn(), closes the
 * tracked fds, removes the temp dir and frees *STATE (NULL is ok). Returns 0. */
int hs_ctx_teardown(void **state);

/* Arms the SIGALRM backstop for BUDGET_S seconds (hs_alarm_arm(); NAME a string literal) and
 * returns the test's context, *STATE. */
struct hs_ctx *hs_ctx_begin(void **state, unsigned budget_s, const char *name);

/* Remembers FD (if >= 0) so that teardown closes it. Returns FD. */
int hs_ctx_track(struct hs_ctx *c, int fd);

/* Closes FD and forgets it. */
void hs_ctx_untrack_close(struct hs_ctx *c, int fd);

/* hs_connect() to ADDR, failing the test if it cannot; the fd is tracked. Returns the fd. */
int hs_ctx_connect(struct hs_ctx *c, const char *addr, int timeout_ms);

/* Writes c->conf (hs_write_config(): the standard [server] with BIND, then EXTRA) and starts
 * echosrv on it, expecting NLISTEN listeners; NOFILE as for hs_spawn(). Fails the test if the
 * server does not come up within HS_READY_MS. Returns the server (freed at teardown). */
struct hs_proc *hs_ctx_start(struct hs_ctx *c, const char *bind, int nlisten, long nofile,
                             const char *extra);

/* Starts echosrv on the configuration already written to c->conf, as hs_ctx_start() does. */
struct hs_proc *hs_ctx_start_conf(struct hs_ctx *c, int nlisten, long nofile);

/* Writes c->conf as DIR/NAME holding the formatted text (at most 8 KiB); fails the test if it
 * cannot. */
void hs_ctx_write_conf(struct hs_ctx *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* hs_listener_addr() over P's output so far; fails the test when listener NAME has no
 * 'listening on' line. */
void hs_ctx_listener_addr(struct hs_proc *p, const char *name, char *out, size_t cap);

/* Sends SIGHUP to P and waits (10 s at most) for its line "configuration reloaded (generation
 * GEN,"; fails the test, with the output, if it does not come. */
void hs_reload(struct hs_proc *p, unsigned gen);

/* Connects from the loopback IPv4 address SRC (port 0) to the IPv4 "HOST:PORT" ADDR, blocking,
 * with SO_RCVTIMEO/SO_SNDTIMEO of TIMEOUT_MS; tracks the fd. Fails the test if it cannot. */
int hs_ctx_connect_from(struct hs_ctx *c, const char *src, const char *addr, int timeout_ms);

/* Asserts that nothing more arrives on FD within MS and that it stays open. */
void hs_assert_quiet(int fd, int ms);

/* What one run of a command left behind (hs_cmd_run(), hs_cmd_run_tty()); the caller owns it
 * and frees it with hs_cmd_free(). */
struct hs_cmd {
    int status;                 /* wait status, or -1 if it had to be killed */
    char *out;                  /* stdout, NUL-terminated (it may hold NULs itself) */
    size_t out_len;
    char *err;                  /* stderr, NUL-terminated */
    size_t err_len;
    long ms;                    /* how long it ran */
};

/* Runs the program at PATH with ARGV (NULL-terminated, argv[0] included, and the name used in
 * messages), feeding IN (INLEN bytes; stdin is /dev/null when IN is NULL) and capturing stdout
 * and stderr apart into *R. The child is SIGKILLed by its PID after TIMEOUT_MS (and if this
 * process dies). Fails the test if the pipes or the fork fail. */
void hs_cmd_run(struct hs_cmd *r, const char *path, const char *const argv[], const void *in,
                size_t inlen, int timeout_ms);

/* The same with a pseudo-terminal as stdin (stdout and stderr are pipes), as a user would:
 * types KEYS[i] once stderr holds PROMPT i+1 times, for NSTEPS steps, then waits for the
 * exit. Bounded by TIMEOUT_MS. */
void hs_cmd_run_tty(struct hs_cmd *r, const char *path, const char *const argv[],
                    const char *prompt, const char *const keys[], int nsteps, int timeout_ms);

/* Frees what a run captured; R may be run again. */
void hs_cmd_free(struct hs_cmd *r);

#endif
