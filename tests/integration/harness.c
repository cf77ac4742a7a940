/* harness.c - integration test helpers: temp dirs, echosrv processes, sockets, /proc. */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#define OUTPUT_KEEP (8u << 20)  /* captured output beyond this is read and dropped */
#define MAX_PROCS 32
#define MAX_ARGS 32

struct hs_proc {
    pid_t pid;
    int out_fd;                 /* read end of the child's stdout+stderr pipe */
    int stop_fd;                /* eventfd: asks the drain thread to stop */
    pthread_t drain;
    bool drain_started;
    pthread_mutex_t mu;         /* protects buf, len, eof */
    pthread_cond_t cv;          /* signalled on new output and on eof */
    char *buf;
    size_t len;
    size_t cap;
    bool eof;
    bool reaped;
    int status;
    int naddr;
    char addr[HS_MAX_LISTENERS][HS_ADDR_MAX];
};

/* Children alive, for teardown and for the SIGALRM backstop (which reads only live_pids). */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hs_proc *live[MAX_PROCS];
static volatile sig_atomic_t live_pids[MAX_PROCS];
static const char *volatile alarm_name;
static volatile unsigned alarm_seconds;

long hs_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void hs_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Milliseconds left until DEADLINE (never negative). */
static int remaining_ms(long deadline)
{
    long left = deadline - hs_now_ms();

    return left > 0 ? (int)left : 0;
}

const char *hs_env_path(const char *name)
{
    const char *v = getenv(name);

    if (v == NULL || v[0] != '/') {
        fprintf(stderr, "# environment variable %s must be set to an absolute path (got %s)\n",
                name, v ? v : "nothing");
        return NULL;
    }
    return v;
}

int hs_process_init(void)
{
    struct rlimit rl;

    setvbuf(stdout, NULL, _IOLBF, 0);   /* TAP lines survive the alarm backstop's _exit */
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return -1;
    }
    return 0;
}

/* Appends the decimal form of V to BUF at *POS (async-signal-safe). */
static void put_uint(char *buf, size_t cap, size_t *pos, unsigned v)
{
    char tmp[16];
    int n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && *pos + 1 < cap)
        buf[(*pos)++] = tmp[--n];
}

static void put_str(char *buf, size_t cap, size_t *pos, const char *s)
{
    while (s && *s && *pos + 1 < cap)
        buf[(*pos)++] = *s++;
}

static void alarm_handler(int sig)
{
    char msg[256];
    size_t pos = 0;

    (void)sig;
    put_str(msg, sizeof msg, &pos, "# TIMEOUT: test ");
    put_str(msg, sizeof msg, &pos, alarm_name);
    put_str(msg, sizeof msg, &pos, " still running after ");
    put_uint(msg, sizeof msg, &pos, alarm_seconds);
    put_str(msg, sizeof msg, &pos, " s; killing the servers and aborting\n");
    if (write(2, msg, pos) < 0) {
        /* nothing more we can do */
    }
    for (int i = 0; i < MAX_PROCS; i++)
        if (live_pids[i] > 0)
            kill((pid_t)live_pids[i], SIGKILL);
    _exit(1);
}

void hs_alarm_arm(unsigned seconds, const char *name)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alarm_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm_name = name;
    alarm_seconds = seconds;
    alarm(seconds);
}

void hs_alarm_disarm(void)
{
    alarm(0);
}

int hs_tmpdir(char *out, size_t cap)
{
    const char *base = getenv("TMPDIR");

    /* AF_UNIX paths are limited to 108 bytes: keep the base short. */
    if (base == NULL || base[0] != '/' || strlen(base) > 60)
        base = "/tmp";
    if ((size_t)snprintf(out, cap, "%s/echosrv-it.XXXXXX", base) >= cap)
        return -1;
    if (mkdtemp(out) == NULL) {
        fprintf(stderr, "# mkdtemp(%s): %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

void hs_rmtree(const char *dir)
{
    DIR *d;
    struct dirent *e;
    char path[512];

    if (dir == NULL || dir[0] == '\0')
        return;
    d = opendir(dir);
    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < sizeof path)
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");

    if (f == NULL) {
        fprintf(stderr, "# cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fputs(text, f);
    if (fclose(f) != 0)
        return -1;
    return 0;
}

int hs_write_file(char *out, size_t cap, const char *dir, const char *name, const char *fmt, ...)
{
    va_list ap;
    char *text = NULL;
    int rc;

    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap)
        return -1;
    va_start(ap, fmt);
    rc = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (rc < 0)
        return -1;
    rc = write_text(out, text);
    free(text);
    return rc;
}

/* The text of hs_write_plugin_config(), EXTRA_FMT's arguments in AP. */
static int write_config(char *out, size_t cap, const char *dir, const char *name, const char *bind,
                        const char *plugin, const char *extra_fmt, va_list ap)
    __attribute__((format(printf, 7, 0)));

static int write_config(char *out, size_t cap, const char *dir, const char *name, const char *bind,
                        const char *plugin, const char *extra_fmt, va_list ap)
{
    const char *plugin_dir = hs_env_path("ES_PLUGIN_DIR");
    char *extra = NULL;
    int rc;

    if (plugin_dir == NULL)
        return -1;
    rc = vasprintf(&extra, extra_fmt, ap);
    if (rc < 0)
        return -1;
    rc = hs_write_file(out, cap, dir, name,
                       "[server]\n"
                       "bind = %s\n"
                       "threads = 2\n"
                       "plugin = %s\n"
                       "plugin_dir = %s\n"
                       "log_level = info\n"
                       "%s",
                       bind, plugin, plugin_dir, extra);
    free(extra);
    return rc;
}

int hs_write_config(char *out, size_t cap, const char *dir, const char *name, const char *bind,
                    const char *extra_fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, extra_fmt);
    rc = write_config(out, cap, dir, name, bind, "echo", extra_fmt, ap);
    va_end(ap);
    return rc;
}

int hs_write_plugin_config(char *out, size_t cap, const char *dir, const char *name,
                           const char *bind, const char *plugin, const char *extra_fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, extra_fmt);
    rc = write_config(out, cap, dir, name, bind, plugin, extra_fmt, ap);
    va_end(ap);
    return rc;
}

static void live_add(struct hs_proc *p)
{
    pthread_mutex_lock(&live_mu);
    for (int i = 0; i < MAX_PROCS; i++) {
        if (live[i] == NULL) {
            live[i] = p;
            live_pids[i] = p->pid;
            break;
        }
    }
    pthread_mutex_unlock(&live_mu);
}

/* Forgets P's pid for the alarm handler (once reaped, the pid may be reused). */
static void live_forget_pid(struct hs_proc *p)
{
    pthread_mutex_lock(&live_mu);
    for (int i = 0; i < MAX_PROCS; i++)
        if (live[i] == p)
            live_pids[i] = 0;
    pthread_mutex_unlock(&live_mu);
}

static void live_remove(struct hs_proc *p)
{
    pthread_mutex_lock(&live_mu);
    for (int i = 0; i < MAX_PROCS; i++) {
        if (live[i] == p) {
            live[i] = NULL;
            live_pids[i] = 0;
        }
    }
    pthread_mutex_unlock(&live_mu);
}

/* Background thread: reads the child's output into p->buf until EOF or a stop request. */
static void *drain_main(void *arg)
{
    struct hs_proc *p = arg;
    struct pollfd pfd[2] = { { p->out_fd, POLLIN, 0 }, { p->stop_fd, POLLIN, 0 } };
    char chunk[16384];

    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents != 0)
            break;
        if (pfd[0].revents == 0)
            continue;
        ssize_t n = read(p->out_fd, chunk, sizeof chunk);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        pthread_mutex_lock(&p->mu);
        size_t keep = (size_t)n;
        if (p->len + keep > OUTPUT_KEEP)
            keep = p->len < OUTPUT_KEEP ? OUTPUT_KEEP - p->len : 0;
        if (keep > 0 && p->len + keep + 1 > p->cap) {
            size_t ncap = p->cap * 2;
            while (ncap < p->len + keep + 1)
                ncap *= 2;
            char *nbuf = realloc(p->buf, ncap);
            if (nbuf == NULL) {
                keep = 0;
            } else {
                p->buf = nbuf;
                p->cap = ncap;
            }
        }
        memcpy(p->buf + p->len, chunk, keep);
        p->len += keep;
        p->buf[p->len] = '\0';
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    p->eof = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Waits on p->cv until DEADLINE. Call with p->mu held. Returns false once the deadline passed. */
static bool wait_until(struct hs_proc *p, long deadline)
{
    long left = deadline - hs_now_ms();
    struct timespec ts;

    if (left <= 0)
        return false;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    return true;
}

struct hs_proc *hs_spawn(const char *const args[], long nofile)
{
    const char *all[MAX_ARGS + 1];
    int n = 0;

    all[n++] = "--allow-root";
    for (int i = 0; args[i] != NULL && n < MAX_ARGS; i++)
        all[n++] = args[i];
    all[n] = NULL;
    return hs_spawn_exact(all, nofile);
}

struct hs_proc *hs_spawn_exact(const char *const args[], long nofile)
{
    return hs_spawn_with(args, nofile, NULL);
}

#define MAX_ENV 512

/* Whether the environment entry ENTRY ("NAME=VALUE") is named by SPEC ("NAME=..." or
 * "NAME"). */
static bool env_same_name(const char *entry, const char *spec)
{
    size_t n = strcspn(spec, "=");
    return strncmp(entry, spec, n) == 0 && entry[n] == '=';
}

/* Fills ENVP (MAX_ENV + 1 slots) with this environment changed by O: O->env's entries, and
 * LISTEN_PID pointing at LISTEN_PID_BUF (filled in by the child). Returns 0, or -1 when it
 * does not fit. */
static int build_env(char *envp[], const struct hs_spawn_opts *o, char *listen_pid_buf)
{
    extern char **environ;
    int n = 0;

    for (char **e = environ; e != NULL && *e != NULL; e++) {
        bool replaced = o->listen_pid && env_same_name(*e, "LISTEN_PID");
        for (int i = 0; o->env != NULL && o->env[i] != NULL && !replaced; i++)
            replaced = env_same_name(*e, o->env[i]);
        if (replaced)
            continue;
        if (n >= MAX_ENV)
            return -1;
        envp[n++] = *e;
    }
    for (int i = 0; o->env != NULL && o->env[i] != NULL; i++) {
        if (strchr(o->env[i], '=') == NULL)
            continue;
        if (n >= MAX_ENV)
            return -1;
        envp[n++] = (char *)o->env[i];
    }
    if (o->listen_pid) {
        if (n >= MAX_ENV)
            return -1;
        envp[n++] = listen_pid_buf;
    }
    envp[n] = NULL;
    return 0;
}

struct hs_proc *hs_spawn_with(const char *const args[], long nofile,
                              const struct hs_spawn_opts *opts)
{
    const char *bin = hs_env_path("ECHOSRV");
    char *argv[MAX_ARGS + 4];
    char **envp = NULL;                 /* with OPTS: the child's environment */
    char listen_pid[32] = "LISTEN_PID=";
    int nfds = opts != NULL ? opts->nfds : 0;
    int pfd[2] = { -1, -1 };
    int devnull = -1;
    int argc = 0;
    struct hs_proc *p = NULL;
    pthread_condattr_t ca;

    if (bin == NULL)
        return NULL;
    argv[argc++] = (char *)bin;
    /* The suite runs under each I/O back end: ECHOSRV_TEST_IO=epoll|io_uring. */
    const char *io = getenv("ECHOSRV_TEST_IO");
    if (io != NULL && *io != '\0') {
        argv[argc++] = "--io";
        argv[argc++] = (char *)io;
    }
    for (int i = 0; args[i] != NULL && argc < MAX_ARGS; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;

    p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->out_fd = -1;
    p->stop_fd = -1;
    p->cap = 4096;
    p->buf = calloc(1, p->cap);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (p->buf == NULL)
        goto fail;
    if (nfds < 0 || nfds > HS_MAX_PASS_FDS) {
        errno = EINVAL;
        goto fail;
    }
    if (opts != NULL && (envp = calloc(MAX_ENV + 1, sizeof *envp)) == NULL)
        goto fail;
    if (opts != NULL && build_env(envp, opts, listen_pid) < 0) {
        errno = E2BIG;
        goto fail;
    }
    if (pipe2(pfd, O_CLOEXEC) < 0)
        goto fail;
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0)
        goto fail;
    p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->stop_fd < 0)
        goto fail;

    p->pid = fork();
    if (p->pid < 0)
        goto fail;
    if (p->pid == 0) {
        /* Child: async-signal-safe calls only. */
        sigset_t none;
        struct sigaction dfl;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGPIPE, &dfl, NULL);
        if (nofile > 0) {
            struct rlimit rl = { (rlim_t)nofile, (rlim_t)nofile };
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (dup2(devnull, 0) < 0 || dup2(pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0)
            _exit(127);
        /* The passed fds to 3, 4, ...: first out of the way (a source may be a target),
         * then into place, which clears CLOEXEC. */
        int high[HS_MAX_PASS_FDS];
        for (int i = 0; i < nfds; i++)
            if ((high[i] = fcntl(opts->fds[i], F_DUPFD_CLOEXEC, 3 + nfds)) < 0)
                _exit(127);
        for (int i = 0; i < nfds; i++)
            if (dup2(high[i], 3 + i) < 0)
                _exit(127);
        /* Ours are CLOEXEC, but fds this process inherited (a make jobserver, ...) are not. */
        if (close_range(3 + (unsigned)nfds, ~0u, 0) < 0)
            for (int fd = 3 + nfds; fd < 4096; fd++)
                close(fd);
        if (opts != NULL) {
            if (opts->listen_pid) {
                size_t pos = strlen(listen_pid);
                put_uint(listen_pid, sizeof listen_pid, &pos, (unsigned)getpid());
                listen_pid[pos] = '\0';
            }
            execve(bin, argv, envp);
        } else {
            execv(bin, argv);
        }
        static const char msg[] = "harness: execv of $ECHOSRV failed\n";
        if (write(2, msg, sizeof msg - 1) < 0)
            _exit(127);
        _exit(127);
    }
    free(envp);
    envp = NULL;
    close(pfd[1]);
    pfd[1] = -1;
    close(devnull);
    devnull = -1;
    p->out_fd = pfd[0];
    live_add(p);
    if (pthread_create(&p->drain, NULL, drain_main, p) != 0) {
        hs_proc_free(p);
        return NULL;
    }
    p->drain_started = true;
    return p;

fail:
    fprintf(stderr, "# cannot start %s: %s\n", bin, strerror(errno));
    free(envp);
    if (pfd[0] >= 0)
        close(pfd[0]);
    if (pfd[1] >= 0)
        close(pfd[1]);
    if (devnull >= 0)
        close(devnull);
    if (p->stop_fd >= 0)
        close(p->stop_fd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->buf);
    free(p);
    return NULL;
}

pid_t hs_pid(const struct hs_proc *p)
{
    return p->pid;
}

const char *hs_addr(const struct hs_proc *p, int i)
{
    if (p == NULL || i < 0 || i >= p->naddr)
        return NULL;
    return p->addr[i];
}

static const char LISTEN_MARK[] = "listening on ";

/* Counts "listening on " lines in p->buf and records their addresses. Call with p->mu held. */
static int scan_listeners(struct hs_proc *p)
{
    const char *s = p->buf;
    int n = 0;

    while ((s = strstr(s, LISTEN_MARK)) != NULL) {
        s += sizeof LISTEN_MARK - 1;
        size_t len = strcspn(s, " \t\r\n\"");
        if (n < HS_MAX_LISTENERS) {
            if (len >= HS_ADDR_MAX)
                len = HS_ADDR_MAX - 1;
            memcpy(p->addr[n], s, len);
            p->addr[n][len] = '\0';
        }
        n++;
        s += len;
    }
    p->naddr = n < HS_MAX_LISTENERS ? n : HS_MAX_LISTENERS;
    return n;
}

int hs_wait_listening(struct hs_proc *p, int n, int timeout_ms)
{
    long deadline = hs_now_ms() + timeout_ms;
    int rc = -1;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        /* Count whole lines only: the address must be complete. */
        char *nl = strrchr(p->buf, '\n');
        char saved = '\0';
        if (nl != NULL) {
            saved = nl[1];
            nl[1] = '\0';
            int found = scan_listeners(p);
            nl[1] = saved;
            if (found >= n) {
                rc = 0;
                break;
            }
        }
        if (p->eof || !wait_until(p, deadline))
            break;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int hs_wait_output(struct hs_proc *p, const char *needle, int timeout_ms)
{
    long deadline = hs_now_ms() + timeout_ms;
    int rc = -1;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (strstr(p->buf, needle) != NULL) {
            rc = 0;
            break;
        }
        if (p->eof || !wait_until(p, deadline))
            break;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

char *hs_output(struct hs_proc *p)
{
    char *copy;

    pthread_mutex_lock(&p->mu);
    copy = strdup(p->buf);
    pthread_mutex_unlock(&p->mu);
    return copy;
}

bool hs_output_has(struct hs_proc *p, const char *needle)
{
    bool has;

    pthread_mutex_lock(&p->mu);
    has = strstr(p->buf, needle) != NULL;
    pthread_mutex_unlock(&p->mu);
    return has;
}

/* Prints TEXT as '# ' lines on stderr (at most about 8 KiB of its tail). */
static void dump_text(const char *text)
{
    size_t len = strlen(text);
    const char *s = len > 8192 ? text + len - 8192 : text;

    while (*s != '\0') {
        size_t n = strcspn(s, "\n");
        fprintf(stderr, "#   | %.*s\n", (int)n, s);
        s += n;
        if (*s == '\n')
            s++;
    }
}

void hs_dump_output(struct hs_proc *p, const char *why)
{
    char *out = hs_output(p);

    fprintf(stderr, "# %s; echosrv output:\n", why);
    if (out != NULL)
        dump_text(out);
    free(out);
}

int hs_wait_exit(struct hs_proc *p, int timeout_ms)
{
    long deadline = hs_now_ms() + timeout_ms;

    while (!p->reaped) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->reaped = true;
            p->status = st;
            live_forget_pid(p);
            break;
        }
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "# waitpid(%d): %s\n", (int)p->pid, strerror(errno));
            return -1;
        }
        if (hs_now_ms() >= deadline)
            return -1;
        hs_sleep_ms(5);
    }
    /* The output reaches EOF once the child is gone (unless it left children behind). */
    long out_deadline = hs_now_ms() + 1000;
    pthread_mutex_lock(&p->mu);
    while (!p->eof && wait_until(p, out_deadline))
        ;
    pthread_mutex_unlock(&p->mu);
    return p->status;
}

int hs_stop(struct hs_proc *p, int timeout_ms)
{
    int st;

    if (p->reaped)
        return p->status;
    kill(p->pid, SIGTERM);
    st = hs_wait_exit(p, timeout_ms);
    if (st >= 0)
        return st;
    fprintf(stderr, "# echosrv (pid %d) ignored SIGTERM for %d ms; sending SIGKILL\n",
            (int)p->pid, timeout_ms);
    kill(p->pid, SIGKILL);
    return hs_wait_exit(p, 5000);
}

void hs_proc_free(struct hs_proc *p)
{
    if (p == NULL)
        return;
    if (!p->reaped) {
        kill(p->pid, SIGKILL);
        hs_wait_exit(p, 5000);
    }
    live_remove(p);
    if (p->drain_started) {
        uint64_t one = 1;
        if (write(p->stop_fd, &one, sizeof one) < 0) {
            /* the thread also stops at EOF */
        }
        pthread_join(p->drain, NULL);
    }
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->stop_fd >= 0)
        close(p->stop_fd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->buf);
    free(p);
}

void hs_proc_free_all(void)
{
    for (;;) {
        struct hs_proc *p = NULL;

        pthread_mutex_lock(&live_mu);
        for (int i = 0; i < MAX_PROCS && p == NULL; i++)
            p = live[i];
        pthread_mutex_unlock(&live_mu);
        if (p == NULL)
            return;
        hs_proc_free(p);
    }
}

struct hs_proc *hs_server_start(const char *conf, int nlisten, long nofile, int timeout_ms)
{
    const char *args[] = { "--allow-root", "-c", conf, NULL };

    return hs_server_start_args(args, nlisten, nofile, timeout_ms);
}

struct hs_proc *hs_server_start_args(const char *const args[], int nlisten, long nofile,
                                     int timeout_ms)
{
    struct hs_proc *p = hs_spawn_exact(args, nofile);

    if (p == NULL)
        return NULL;
    if (hs_wait_listening(p, nlisten, timeout_ms) < 0) {
        char why[128];
        snprintf(why, sizeof why, "echosrv did not log %d 'listening on' line(s) within %d ms",
                 nlisten, timeout_ms);
        if (!p->reaped)
            hs_wait_exit(p, 0);
        hs_dump_output(p, why);
        hs_proc_free(p);
        return NULL;
    }
    return p;
}

/* hs_run() of a process already spawned (or NULL, when spawning failed). */
static int run(struct hs_proc *p, int timeout_ms, char **output)
{
    int st;

    if (output != NULL)
        *output = NULL;
    if (p == NULL)
        return -1;
    st = hs_wait_exit(p, timeout_ms);
    if (st < 0) {
        fprintf(stderr, "# echosrv did not exit within %d ms; killing it\n", timeout_ms);
        hs_dump_output(p, "still running");
    }
    if (output != NULL)
        *output = hs_output(p);
    hs_proc_free(p);
    return st;
}

int hs_run(const char *const args[], int timeout_ms, char **output)
{
    return run(hs_spawn(args, 0), timeout_ms, output);
}

int hs_run_exact(const char *const args[], int timeout_ms, char **output)
{
    return run(hs_spawn_exact(args, 0), timeout_ms, output);
}

/* Parses ADDR ("a.b.c.d:PORT", "[v6]:PORT", "unix:/path") into SS. Returns 0 or -1. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[HS_ADDR_MAX];
    const char *colon;
    char *end;
    long port;

    memset(ss, 0, sizeof *ss);
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        size_t n = strlen(addr + 5);
        if (n == 0 || n >= sizeof un->sun_path)
            return -1;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, addr + 5, n + 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (rb == NULL || rb[1] != ':' || (size_t)(rb - addr - 1) >= sizeof host)
            return -1;
        memcpy(host, addr + 1, (size_t)(rb - addr - 1));
        host[rb - addr - 1] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || (size_t)(colon - addr) >= sizeof host)
            return -1;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port <= 0 || port > 65535)
        return -1;
    if (addr[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return -1;
        *len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (host[0] == '\0' || strcmp(host, "*") == 0)
            strcpy(host, "127.0.0.1");
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return -1;
        *len = sizeof *s4;
    }
    return 0;
}

/* Creates a CLOEXEC stream socket for ADDR and fills SS. Returns the fd or -1. */
static int addr_socket(const char *addr, int flags, struct sockaddr_storage *ss, socklen_t *len)
{
    int fd;

    if (addr == NULL || parse_addr(addr, ss, len) < 0) {
        fprintf(stderr, "# cannot parse address '%s'\n", addr ? addr : "(null)");
        errno = EINVAL;
        return -1;
    }
    fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd < 0)
        return -1;
    if (ss->ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

int hs_connect(const char *addr, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    int fd = addr_socket(addr, 0, &ss, &len);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    while (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno == EINTR)
            continue;
        int saved = errno;
        fprintf(stderr, "# connect %s: %s\n", addr, strerror(saved));
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int hs_connect_nb(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = addr_socket(addr, SOCK_NONBLOCK, &ss, &len);

    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS && errno != EAGAIN) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Polls FD for EVENTS until DEADLINE. Returns 0 when ready, -1 with errno (ETIMEDOUT). */
static int poll_one(int fd, short events, long deadline)
{
    struct pollfd pfd = { fd, events, 0 };

    for (;;) {
        int r = poll(&pfd, 1, remaining_ms(deadline));
        if (r > 0)
            return 0;
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

int hs_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    const char *s = buf;
    long deadline = hs_now_ms() + timeout_ms;

    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            s += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (poll_one(fd, POLLOUT, deadline) < 0)
            return -1;
    }
    return 0;
}

ssize_t hs_recv_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    char *d = buf;
    size_t got = 0;
    long deadline = hs_now_ms() + timeout_ms;

    while (got < len) {
        ssize_t n = recv(fd, d + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            return (ssize_t)got;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (poll_one(fd, POLLIN, deadline) < 0)
            return -1;
    }
    return (ssize_t)got;
}

ssize_t hs_recv_until(int fd, const void *sep, size_t seplen, void *buf, size_t cap,
                      int timeout_ms)
{
    char *d = buf;
    size_t have = 0;
    long deadline = hs_now_ms() + timeout_ms;

    while (have < cap) {
        /* Peek, look for the separator (it may straddle what we already consumed), and
         * consume only up to its end. */
        ssize_t n = recv(fd, d + have, cap - have, MSG_DONTWAIT | MSG_PEEK);
        if (n == 0) {
            errno = ECONNRESET;
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            if (poll_one(fd, POLLIN, deadline) < 0)
                return -1;
            continue;
        }
        size_t total = have + (size_t)n;
        size_t from = have >= seplen ? have - seplen + 1 : 0;
        size_t take = (size_t)n;
        for (size_t i = from; i + seplen <= total; i++) {
            if (memcmp(d + i, sep, seplen) == 0) {
                take = i + seplen - have;
                break;
            }
        }
        if (recv(fd, d + have, take, MSG_DONTWAIT) != (ssize_t)take)
            return -1;
        have += take;
        if (have >= seplen && memcmp(d + have - seplen, sep, seplen) == 0)
            return (ssize_t)have;
    }
    errno = EMSGSIZE;
    return -1;
}

int hs_exchange(int fd, const void *out, size_t outlen, void *in, size_t inlen, int timeout_ms,
                size_t *got)
{
    const char *s = out;
    char *d = in;
    size_t sent = 0;
    size_t recvd = 0;
    long deadline = hs_now_ms() + timeout_ms;
    int rc = 0;

    while (sent < outlen || recvd < inlen) {
        bool progress = false;
        if (sent < outlen) {
            ssize_t n = send(fd, s + sent, outlen - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                sent += (size_t)n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                rc = -1;
                break;
            }
        }
        if (recvd < inlen) {
            ssize_t n = recv(fd, d + recvd, inlen - recvd, MSG_DONTWAIT);
            if (n > 0) {
                recvd += (size_t)n;
                progress = true;
            } else if (n == 0) {
                errno = ECONNRESET;
                rc = -1;
                break;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                rc = -1;
                break;
            }
        }
        if (progress)
            continue;
        struct pollfd pfd = { fd, (short)((sent < outlen ? POLLOUT : 0) |
                                          (recvd < inlen ? POLLIN : 0)), 0 };
        int r = poll(&pfd, 1, remaining_ms(deadline));
        if (r == 0) {
            errno = ETIMEDOUT;
            rc = -1;
            break;
        }
        if (r < 0 && errno != EINTR) {
            rc = -1;
            break;
        }
    }
    if (got != NULL)
        *got = recvd;
    return rc;
}

/* Writes a printable, escaped, truncated rendering of BUF into OUT. */
static void escape(char *out, size_t cap, const void *buf, size_t len)
{
    const unsigned char *s = buf;
    size_t pos = 0;

    for (size_t i = 0; i < len && pos + 8 < cap; i++) {
        if (s[i] == '\r')
            pos += (size_t)snprintf(out + pos, cap - pos, "\\r");
        else if (s[i] == '\n')
            pos += (size_t)snprintf(out + pos, cap - pos, "\\n");
        else if (s[i] < 32 || s[i] > 126)
            pos += (size_t)snprintf(out + pos, cap - pos, "\\x%02x", s[i]);
        else
            out[pos++] = (char)s[i];
    }
    out[pos] = '\0';
}

int hs_ping(int fd, const char *msg, int timeout_ms)
{
    size_t len = strlen(msg);
    char *reply = malloc(len + 1);
    char a[128];
    char b[128];
    int rc = -1;

    if (reply == NULL)
        return -1;
    if (hs_send_all(fd, msg, len, timeout_ms) < 0) {
        fprintf(stderr, "# ping: send failed: %s\n", strerror(errno));
        goto out;
    }
    ssize_t n = hs_recv_exact(fd, reply, len, timeout_ms);
    if (n < 0) {
        fprintf(stderr, "# ping: no complete reply: %s\n", strerror(errno));
        goto out;
    }
    if ((size_t)n != len || memcmp(reply, msg, len) != 0) {
        escape(a, sizeof a, msg, len);
        escape(b, sizeof b, reply, (size_t)n);
        fprintf(stderr, "# ping: sent '%s', got '%s'%s\n", a, b,
                (size_t)n < len ? " then EOF" : "");
        goto out;
    }
    rc = 0;
out:
    free(reply);
    return rc;
}

int hs_wait_closed(int fd, int timeout_ms)
{
    long deadline = hs_now_ms() + timeout_ms;
    char c;

    for (;;) {
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
        if (n == 0)
            return 0;
        if (n > 0)
            return 1;
        if (errno == ECONNRESET || errno == EPIPE)
            return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return 0;
        if (poll_one(fd, POLLIN, deadline) < 0)
            return -1;
    }
}

/* Reads the whole (small) file PATH into BUF. Returns the length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0;

    if (fd < 0)
        return -1;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

double hs_proc_cpu_seconds(pid_t pid)
{
    char path[64];
    char buf[2048];
    unsigned long ut;
    unsigned long st;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small(path, buf, sizeof buf) < 0)
        return -1;
    /* comm may contain spaces and parentheses: fields resume after the last ')'. */
    const char *s = strrchr(buf, ')');
    if (s == NULL)
        return -1;
    if (sscanf(s + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

long hs_proc_rss_kb(pid_t pid)
{
    char path[64];
    char buf[8192];
    long kb;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (read_small(path, buf, sizeof buf) < 0)
        return -1;
    const char *s = strstr(buf, "\nVmRSS:");
    if (s == NULL || sscanf(s + 7, "%ld", &kb) != 1)
        return -1;
    return kb;
}

/* Number of entries of /proc/PID/SUB (not counting . and ..), or -1. */
static int count_proc_entries(pid_t pid, const char *sub)
{
    char path[64];
    DIR *d;
    int n = 0;

    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, sub);
    d = opendir(path);
    if (d == NULL)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int hs_proc_fd_count(pid_t pid)
{
    return count_proc_entries(pid, "fd");
}

int hs_proc_task_count(pid_t pid)
{
    return count_proc_entries(pid, "task");
}

int hs_listener_addr(const char *text, const char *name, char *out, size_t cap)
{
    char tag[128];
    const char *s = text;

    snprintf(tag, sizeof tag, " (listener %s, plugin ", name);
    while ((s = strstr(s, "listening on ")) != NULL) {
        s += strlen("listening on ");
        size_t len = strcspn(s, " \r\n");
        if (strncmp(s + len, tag, strlen(tag)) == 0 && len < cap) {
            memcpy(out, s, len);
            out[len] = '\0';
            return 0;
        }
    }
    return -1;
}

bool hs_have_ipv6_loopback(void)
{
    char buf[8192];

    if (read_small("/proc/net/if_inet6", buf, sizeof buf) < 0)
        return false;
    for (const char *s = buf; *s != '\0';) {
        if (strncmp(s, "00000000000000000000000000000001 ", 33) == 0)
            return true;
        s += strcspn(s, "\n");
        if (*s == '\n')
            s++;
    }
    return false;
}

void hs_fill_pattern(void *buf, size_t len, unsigned seed)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char *d = buf;
    uint32_t x = seed * 2654435761u + 12345u;

    if (x == 0)
        x = 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d[i] = (unsigned char)alphabet[x & 63];
    }
}

void hs_dump_lines(const char *what, const char *text, size_t len)
{
    fprintf(stderr, "# %s (%zu bytes):\n", what, len);
    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;
        fprintf(stderr, "#   | %.*s\n", (int)n, text);
        n += nl != NULL;
        text += n;
        len -= n;
    }
}

bool hs_same_bytes(const char *what, const void *want, const void *got, size_t len)
{
    const unsigned char *x = want;
    const unsigned char *y = got;

    for (size_t i = 0; i < len; i++) {
        if (x[i] != y[i]) {
            fprintf(stderr, "# %s: first difference at byte %zu of %zu: "
                    "expected 0x%02x, got 0x%02x\n", what, i, len, x[i], y[i]);
            return false;
        }
    }
    return true;
}

/* ---- cmocka fixtures ----------------------------------------------------------------------- */

int hs_ctx_setup(void **state)
{
    return hs_ctx_setup_size(state, sizeof(struct hs_ctx));
}

int hs_ctx_setup_size(void **state, size_t size)
{
    struct hs_ctx *c;

    if (hs_env_path("ECHOSRV") == NULL || hs_env_path("ES_PLUGIN_DIR") == NULL)
        return -1;
    c = calloc(1, size);
    if (c == NULL)
        return -1;
    if (hs_tmpdir(c->dir, sizeof c->dir) < 0) {
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

int hs_ctx_teardown(void **state)
{
    struct hs_ctx *c = *state;

    hs_alarm_disarm();
    hs_proc_free_all();
    if (c != NULL) {
        for (int i = 0; i < c->nfds; i++)
            if (c->fds[i] >= 0)
                close(c->fds[i]);
        hs_rmtree(c->dir);
        free(c);
    }
    *state = NULL;
    return 0;
}

struct hs_ctx *hs_ctx_begin(void **state, unsigned budget_s, const char *name)
{
    hs_alarm_arm(budget_s, name);
    return *state;
}

int hs_ctx_track(struct hs_ctx *c, int fd)
{
    if (fd >= 0 && c->nfds < HS_CTX_MAX_FDS)
        c->fds[c->nfds++] = fd;
    return fd;
}

void hs_ctx_untrack_close(struct hs_ctx *c, int fd)
{
    for (int i = 0; i < c->nfds; i++)
        if (c->fds[i] == fd)
            c->fds[i] = -1;
    close(fd);
}

int hs_ctx_connect(struct hs_ctx *c, const char *addr, int timeout_ms)
{
    int fd = hs_connect(addr, timeout_ms);

    if (fd < 0)
        HS_FAIL("cannot connect to %s: %s", addr ? addr : "(null)", strerror(errno));
    return hs_ctx_track(c, fd);
}

struct hs_proc *hs_ctx_start(struct hs_ctx *c, const char *bind, int nlisten, long nofile,
                             const char *extra)
{
    assert_int_equal(hs_write_config(c->conf, sizeof c->conf, c->dir, "echosrv.ini", bind,
                                     "%s", extra), 0);
    return hs_ctx_start_conf(c, nlisten, nofile);
}

struct hs_proc *hs_ctx_start_conf(struct hs_ctx *c, int nlisten, long nofile)
{
    struct hs_proc *p = hs_server_start(c->conf, nlisten, nofile, HS_READY_MS);

    if (p == NULL)
        HS_FAIL("echosrv did not start on %s", c->conf);
    return p;
}

void hs_ctx_write_conf(struct hs_ctx *c, const char *name, const char *fmt, ...)
{
    char text[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof text);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, name, "%s", text), 0);
}

void hs_ctx_listener_addr(struct hs_proc *p, const char *name, char *out, size_t cap)
{
    char *text = hs_output(p);
    assert_non_null(text);
    int rc = hs_listener_addr(text, name, out, cap);
    free(text);
    if (rc != 0) {
        hs_dump_output(p, "no listening line");
        HS_FAIL("no 'listening on ADDR (listener %s, plugin ...)' line", name);
    }
}

void hs_reload(struct hs_proc *p, unsigned gen)
{
    char want[96];
    snprintf(want, sizeof want, "configuration reloaded (generation %u,", gen);
    assert_int_equal(kill(hs_pid(p), SIGHUP), 0);
    if (hs_wait_output(p, want, 10000) != 0) {
        hs_dump_output(p, "no reload line");
        HS_FAIL("SIGHUP did not reload (no '%s')", want);
    }
}

int hs_ctx_connect_from(struct hs_ctx *c, const char *src, const char *addr, int timeout_ms)
{
    struct sockaddr_in from = {.sin_family = AF_INET};
    struct sockaddr_in to = {.sin_family = AF_INET};
    char host[64];
    const char *colon = strrchr(addr, ':');

    assert_non_null(colon);
    assert_true((size_t)(colon - addr) < sizeof host);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
    assert_int_equal(inet_pton(AF_INET, host, &to.sin_addr), 1);
    to.sin_port = htons((uint16_t)atoi(colon + 1));
    int fd = hs_ctx_track(c, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    assert_true(fd >= 0);
    if (bind(fd, (struct sockaddr *)&from, sizeof from) < 0)
        HS_FAIL("bind to %s: %s", src, strerror(errno));
    if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0)
        HS_FAIL("connect from %s to %s: %s", src, addr, strerror(errno));
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

void hs_assert_quiet(int fd, int ms)
{
    int r = hs_wait_closed(fd, ms);

    if (r == 1)
        HS_FAIL("unexpected extra bytes from the server");
    if (r == 0)
        HS_FAIL("the server closed the connection unexpectedly");
}

/* ---- child commands, stdout and stderr apart ------------------------------------------------ */

/* Appends what is readable on FD to *BUF. Returns 0 at EOF, 1 if more may come. */
static int drain_into(int fd, char **buf, size_t *len, size_t *cap)
{
    char chunk[65536];
    ssize_t n = read(fd, chunk, sizeof chunk);

    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0)
        return 0;
    if (*len + (size_t)n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 4096;
        while (ncap < *len + (size_t)n + 1)
            ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return 0;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, chunk, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
    return 1;
}

/* In the forked child: no blocked signal, SIGPIPE's default action, SIGKILL when the parent
 * dies. */
static void child_reset(void)
{
    sigset_t none;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* In the forked child, once stdin, stdout and stderr are set: closes every other fd and runs
 * PATH with ARGV. Never returns. */
static void child_exec(const char *path, const char *const argv[]) __attribute__((noreturn));

static void child_exec(const char *path, const char *const argv[])
{
    if (close_range(3, ~0u, 0) < 0)
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
    execv(path, (char *const *)argv);
    _exit(127);
}

/* Waits for PID (NAME in messages) until START + TIMEOUT_MS, then SIGKILLs it; fills the
 * status, the time and empty outputs in R. */
static void reap(struct hs_cmd *r, const char *name, pid_t pid, long start, int timeout_ms)
{
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            r->status = st;
            break;
        }
        if (hs_now_ms() >= start + timeout_ms) {
            fprintf(stderr, "# %s (pid %d) still running after %d ms; killing it\n", name,
                    (int)pid, timeout_ms);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        hs_sleep_ms(2);
    }
    r->ms = hs_now_ms() - start;
    if (r->out == NULL)
        r->out = calloc(1, 1);
    if (r->err == NULL)
        r->err = calloc(1, 1);
    assert_non_null(r->out);
    assert_non_null(r->err);
}

/* Occurrences of NEEDLE in TEXT (NULL counts none). */
static int count_of(const char *text, const char *needle)
{
    int n = 0;

    while (text != NULL && (text = strstr(text, needle)) != NULL) {
        n++;
        text++;
    }
    return n;
}

void hs_cmd_run(struct hs_cmd *r, const char *path, const char *const argv[], const void *in,
                size_t inlen, int timeout_ms)
{
    int pin[2] = { -1, -1 }, pout[2], perr[2];
    size_t out_cap = 0, err_cap = 0, sent = 0;
    long start = hs_now_ms();
    pid_t pid;

    memset(r, 0, sizeof *r);
    if (in != NULL)
        assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
    assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

        child_reset();
        if (dup2(in != NULL ? pin[0] : devnull, 0) < 0 || dup2(pout[1], 1) < 0 ||
            dup2(perr[1], 2) < 0)
            _exit(127);
        child_exec(path, argv);
    }
    close(pout[1]);
    close(perr[1]);
    if (in != NULL) {
        close(pin[0]);
        fcntl(pin[1], F_SETFL, O_NONBLOCK);
        if (inlen == 0) {
            close(pin[1]);
            pin[1] = -1;
        }
    }

    bool out_open = true, err_open = true;
    r->status = -1;
    while (out_open || err_open || pin[1] >= 0) {
        struct pollfd pfd[3] = {
            { out_open ? pout[0] : -1, POLLIN, 0 },
            { err_open ? perr[0] : -1, POLLIN, 0 },
            { pin[1], POLLOUT, 0 },
        };
        int left = (int)(start + timeout_ms - hs_now_ms());

        if (left <= 0)
            break;
        if (poll(pfd, 3, left) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents && drain_into(pout[0], &r->out, &r->out_len, &out_cap) == 0)
            out_open = false;
        if (pfd[1].revents && drain_into(perr[0], &r->err, &r->err_len, &err_cap) == 0)
            err_open = false;
        if (pfd[2].revents) {
            ssize_t n = write(pin[1], (const char *)in + sent, inlen - sent);
            if (n > 0)
                sent += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || sent == inlen) {
                close(pin[1]);
                pin[1] = -1;
            }
        }
    }
    if (pin[1] >= 0)
        close(pin[1]);
    close(pout[0]);
    close(perr[0]);
    reap(r, argv[0], pid, start, timeout_ms);
}

void hs_cmd_run_tty(struct hs_cmd *r, const char *path, const char *const argv[],
                    const char *prompt, const char *const keys[], int nsteps, int timeout_ms)
{
    int pout[2], perr[2], master, step = 0;
    size_t out_cap = 0, err_cap = 0;
    long start = hs_now_ms();
    char *slave;
    pid_t pid;

    memset(r, 0, sizeof *r);
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    slave = ptsname(master);
    assert_non_null(slave);
    assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
    assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        child_reset();
        setsid();
        int sfd = open(slave, O_RDWR | O_CLOEXEC);      /* the controlling terminal */
        if (sfd < 0 || dup2(sfd, 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0)
            _exit(127);
        child_exec(path, argv);
    }
    close(pout[1]);
    close(perr[1]);

    bool out_open = true, err_open = true;
    r->status = -1;
    while (out_open || err_open) {
        if (step < nsteps && count_of(r->err, prompt) > step) {
            if (write(master, keys[step], strlen(keys[step])) < 0)
                break;
            step++;
            continue;
        }
        struct pollfd pfd[3] = {
            { out_open ? pout[0] : -1, POLLIN, 0 },
            { err_open ? perr[0] : -1, POLLIN, 0 },
            { master, POLLIN, 0 },
        };
        int left = (int)(start + timeout_ms - hs_now_ms());

        if (left <= 0)
            break;
        if (poll(pfd, 3, left < 50 ? left : 50) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents && drain_into(pout[0], &r->out, &r->out_len, &out_cap) == 0)
            out_open = false;
        if (pfd[1].revents && drain_into(perr[0], &r->err, &r->err_len, &err_cap) == 0)
            err_open = false;
        if (pfd[2].revents & POLLIN) {
            char junk[4096];            /* what the terminal echoes: not checked */
            if (read(master, junk, sizeof junk) < 0) {
                /* the slave side is gone */
            }
        }
    }
    if (step < nsteps)
        fprintf(stderr, "# the interactive session stopped at step %d of %d\n", step, nsteps);
    close(pout[0]);
    close(perr[0]);
    reap(r, argv[0], pid, start, timeout_ms);
    close(master);
}

void hs_cmd_free(struct hs_cmd *r)
{
    free(r->out);
    free(r->err);
    r->out = NULL;
    r->err = NULL;
    r->out_len = 0;
    r->err_len = 0;
}
