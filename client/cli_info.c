/* cli_info.c - `echocli info`: fetch /metrics from echosrv's admin listener and print it for humans (or as JSON). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "cli.h"

#define INFO_DEFAULT_ADDR "127.0.0.1:9060"
#define INFO_MAX_BODY (16u << 20)

/* One sample of the exposition: name{labels} value. Points into the body. */
struct sample {
    const char *name;
    size_t name_len;
    const char *labels;     /* inside the braces, or "" */
    size_t labels_len;
    double value;
};

struct metrics_text {
    struct sample *v;
    size_t n, cap;
};

static void info_usage(FILE *f)
{
    fprintf(f,
        "usage: echocli info [-a ADMIN_ADDR] [-t TIMEOUT] [--json]\n"
        "Prints what an echosrv is doing: uptime, connections, messages, bytes, errors, per\n"
        "listener, worker thread and plugin, from /metrics of its admin listener ([admin] in\n"
        "echosrv.ini(5)).\n"
        "  -a, --address ADDR    the admin listener: HOST:PORT, [IPv6]:PORT or unix:/path\n"
        "                        (default " INFO_DEFAULT_ADDR ")\n"
        "  -t, --timeout SECS    bound for the whole exchange; fractions allowed (default 5)\n"
        "  -j, --json            one JSON object instead of the text\n"
        "  -h, --help            this help\n"
        "Exit status: 0; 1 if the admin listener was unreachable, timed out or did not answer\n"
        "200 with metrics; 2 on bad arguments.\n");
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Wait for events on fd until deadline. Returns 0 when ready, -1 (ETIMEDOUT or poll's). */
static int wait_fd(int fd, short events, long deadline)
{
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* GET path from the admin listener at text within timeout_ms. Returns the whole response
 * (NUL-terminated, length in *len; the caller frees it), or NULL after a message on stderr. */
static char *http_get(const char *text, const char *path, int timeout_ms, size_t *len)
{
    char err[256];
    addr a;
    char *resp = NULL;
    size_t n = 0, cap = 0;
    int fd = -1;
    long deadline = now_ms() + timeout_ms;

    if (addr_parse(text, &a, err, sizeof err) < 0) {
        fprintf(stderr, "echocli info: %s\n", err);
        return NULL;
    }
    fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (connect(fd, (struct sockaddr *)&a.ss, a.len) < 0) {
        int e = 0;
        socklen_t el = sizeof e;
        if (errno != EINPROGRESS && errno != EAGAIN)
            goto fail;
        if (wait_fd(fd, POLLOUT, deadline) < 0)
            goto fail;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e != 0) {
            errno = e ? e : errno;
            goto fail;
        }
    }
    char req[512];
    int rl = snprintf(req, sizeof req,
                      "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: echocli\r\n"
                      "Accept: text/plain\r\n\r\n", path, a.ss.ss_family == AF_UNIX ? "localhost" : text);
    for (int off = 0; off < rl;) {
        ssize_t w = send(fd, req + off, (size_t)(rl - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            if (wait_fd(fd, POLLOUT, deadline) < 0)
                goto fail;
            continue;
        }
        if (w < 0 && errno != EINTR)
            goto fail;
        if (w > 0)
            off += (int)w;
    }
    for (;;) {
        if (cap - n < 4096) {
            if (cap >= INFO_MAX_BODY) {
                fprintf(stderr, "echocli info: %s: the reply is larger than %u bytes\n", text,
                        INFO_MAX_BODY);
                goto out;
            }
            cap = cap ? cap * 2 : 16384;
            char *r = realloc(resp, cap + 1);
            if (r == NULL) {
                errno = ENOMEM;
                goto fail;
            }
            resp = r;
        }
        ssize_t r = recv(fd, resp + n, cap - n, 0);
        if (r == 0)
            break;
        if (r < 0 && errno == EAGAIN) {
            if (wait_fd(fd, POLLIN, deadline) < 0)
                goto fail;
            continue;
        }
        if (r < 0 && errno != EINTR)
            goto fail;
        if (r > 0)
            n += (size_t)r;
    }
    close(fd);
    resp[n] = '\0';
    *len = n;
    return resp;
fail:
    fprintf(stderr, "echocli info: %s: %s\n", text,
            errno == ETIMEDOUT ? "timed out" : strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    free(resp);
    return NULL;
}

/* Parse the exposition text in body into m (samples point into body). Returns 0 or -1. */
static int parse_metrics(char *body, struct metrics_text *m)
{
    for (char *line = body; line != NULL && *line != '\0';) {
        char *eol = strchr(line, '\n');
        if (eol != NULL)
            *eol = '\0';
        if (*line != '#' && *line != '\0') {
            struct sample s = { .name = line, .labels = "" };
            char *p = line + strcspn(line, "{ ");
            s.name_len = (size_t)(p - line);
            if (*p == '{') {
                char *q = p + 1;
                /* The closing brace outside a quoted value. */
                bool quoted = false;
                for (; *q != '\0' && (quoted || *q != '}'); q++) {
                    if (*q == '\\' && quoted && q[1] != '\0')
                        q++;
                    else if (*q == '"')
                        quoted = !quoted;
                }
                if (*q != '}')
                    return -1;
                s.labels = p + 1;
                s.labels_len = (size_t)(q - p - 1);
                p = q + 1;
            }
            char *end;
            s.value = strtod(p, &end);
            if (end == p)
                return -1;
            if (m->n == m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 64;
                struct sample *v = realloc(m->v, cap * sizeof *v);
                if (v == NULL)
                    return -1;
                m->v = v;
                m->cap = cap;
            }
            m->v[m->n++] = s;
        }
        line = eol ? eol + 1 : NULL;
    }
    return 0;
}

/* The value of label key in s into out (cap bytes, unescaped). Returns true if present. */
static bool label_of(const struct sample *s, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    const char *p = s->labels, *end = s->labels + s->labels_len;
    while (p < end) {
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq == NULL || eq + 1 >= end || eq[1] != '"')
            return false;
        bool match = (size_t)(eq - p) == kl && memcmp(p, key, kl) == 0;
        size_t j = 0;
        const char *q = eq + 2;
        for (; q < end && *q != '"'; q++) {
            char c = *q;
            if (c == '\\' && q + 1 < end) {
                c = *++q;
                if (c == 'n')
                    c = '\n';
            }
            if (match && j + 1 < cap)
                out[j++] = c;
        }
        if (match) {
            out[j] = '\0';
            return true;
        }
        p = q + 1;
        if (p < end && *p == ',')
            p++;
    }
    return false;
}

static bool is_named(const struct sample *s, const char *name)
{
    return s->name_len == strlen(name) && memcmp(s->name, name, s->name_len) == 0;
}

/* The sum of the samples of name whose label key (NULL: any) has value val. */
static double sum_of(const struct metrics_text *m, const char *name, const char *key,
                     const char *val)
{
    double sum = 0;
    char lv[256];
    for (size_t i = 0; i < m->n; i++)
        if (is_named(&m->v[i], name) &&
            (key == NULL || (label_of(&m->v[i], key, lv, sizeof lv) && strcmp(lv, val) == 0)))
            sum += m->v[i].value;
    return sum;
}

/* The distinct values of label key among the samples of name, in order of appearance, as
 * a NULL-terminated array of strings (caller frees each and the array); NULL when out of
 * memory. */
static char **values_of(const struct metrics_text *m, const char *name, const char *key)
{
    size_t n = 0;
    char **v = calloc(m->n + 1, sizeof *v);
    char lv[256];
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < m->n; i++) {
        if (!is_named(&m->v[i], name) || !label_of(&m->v[i], key, lv, sizeof lv))
            continue;
        size_t j = 0;
        while (j < n && strcmp(v[j], lv) != 0)
            j++;
        if (j == n && (v[n++] = strdup(lv)) == NULL)
            break;
    }
    return v;
}

static void free_values(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

/* A string as a JSON literal on f. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static const char *const refused_reasons[] = { "max_connections", "access", "resources", NULL };
static const char *const error_kinds[] = {
    "protocol", "max_message", "read_timeout", "idle_timeout", "tls_handshake",
    "tls_handshake_timeout", "plugin", "io", NULL,
};

/* Print the figures of m, fetched from addr, as text or JSON. Returns 0 or -1. */
static int print_info(const struct metrics_text *m, const char *address, bool json)
{
    char version[128] = "?";
    for (size_t i = 0; i < m->n; i++)
        if (is_named(&m->v[i], "echosrv_build_info"))
            label_of(&m->v[i], "version", version, sizeof version);
    double up = sum_of(m, "echosrv_uptime_seconds", NULL, NULL);
    char **listeners = values_of(m, "echosrv_connections_total", "listener");
    char **workers = values_of(m, "echosrv_worker_messages_total", "worker");
    char **plugins = values_of(m, "echosrv_plugin_messages_total", "plugin");
    if (listeners == NULL || workers == NULL || plugins == NULL) {
        free_values(listeners);
        free_values(workers);
        free_values(plugins);
        fprintf(stderr, "echocli info: out of memory\n");
        return -1;
    }
    unsigned long long reload_ok = (unsigned long long)sum_of(m, "echosrv_reloads_total", "result", "ok");
    unsigned long long reload_failed =
        (unsigned long long)sum_of(m, "echosrv_reloads_total", "result", "failed");
#define SUM(name) ((unsigned long long)sum_of(m, name, NULL, NULL))
#define SUM_L(name, l) ((unsigned long long)sum_of(m, name, "listener", l))
    if (json) {
        FILE *f = stdout;
        fprintf(f, "{\"address\":");
        json_str(f, address);
        fprintf(f, ",\"version\":");
        json_str(f, version);
        fprintf(f, ",\"uptime_seconds\":%.3f,\"reloads\":{\"ok\":%llu,\"failed\":%llu}", up,
                reload_ok, reload_failed);
        fprintf(f, ",\"connections\":{\"open\":%llu,\"total\":%llu,\"refused\":{",
                SUM("echosrv_connections_open"), SUM("echosrv_connections_total"));
        for (int k = 0; refused_reasons[k]; k++)
            fprintf(f, "%s\"%s\":%llu", k ? "," : "", refused_reasons[k],
                    (unsigned long long)sum_of(m, "echosrv_connections_refused_total", "reason",
                                               refused_reasons[k]));
        fprintf(f, "}},\"messages\":%llu,\"bytes\":{\"received\":%llu,\"sent\":%llu},\"errors\":{",
                SUM("echosrv_messages_total"), SUM("echosrv_bytes_received_total"),
                SUM("echosrv_bytes_sent_total"));
        for (int k = 0; error_kinds[k]; k++)
            fprintf(f, "%s\"%s\":%llu", k ? "," : "", error_kinds[k],
                    (unsigned long long)sum_of(m, "echosrv_errors_total", "kind", error_kinds[k]));
        fprintf(f, "},\"listeners\":[");
        for (size_t i = 0; listeners[i]; i++) {
            const char *l = listeners[i];
            fprintf(f, "%s{\"name\":", i ? "," : "");
            json_str(f, l);
            fprintf(f, ",\"open\":%llu,\"total\":%llu,\"refused\":%llu,\"messages\":%llu,"
                       "\"received\":%llu,\"sent\":%llu,\"errors\":%llu}",
                    SUM_L("echosrv_connections_open", l), SUM_L("echosrv_connections_total", l),
                    SUM_L("echosrv_connections_refused_total", l), SUM_L("echosrv_messages_total", l),
                    SUM_L("echosrv_bytes_received_total", l), SUM_L("echosrv_bytes_sent_total", l),
                    SUM_L("echosrv_errors_total", l));
        }
        fprintf(f, "],\"workers\":[");
        for (size_t i = 0; workers[i]; i++)
            fprintf(f, "%s{\"worker\":%s,\"connections\":%llu,\"messages\":%llu}", i ? "," : "",
                    workers[i],
                    (unsigned long long)sum_of(m, "echosrv_worker_connections", "worker", workers[i]),
                    (unsigned long long)sum_of(m, "echosrv_worker_messages_total", "worker",
                                               workers[i]));
        fprintf(f, "],\"plugins\":[");
        for (size_t i = 0; plugins[i]; i++) {
            fprintf(f, "%s{\"name\":", i ? "," : "");
            json_str(f, plugins[i]);
            fprintf(f, ",\"messages\":%llu}",
                    (unsigned long long)sum_of(m, "echosrv_plugin_messages_total", "plugin",
                                               plugins[i]));
        }
        fprintf(f, "]}\n");
    } else {
        unsigned long long s = (unsigned long long)up;
        printf("echosrv %s at %s\n", version, address);
        printf("uptime:       %llud %02llu:%02llu:%02llu (%.0f s)\n", s / 86400, s / 3600 % 24,
               s / 60 % 60, s % 60, up);
        printf("reloads:      %llu ok, %llu failed\n", reload_ok, reload_failed);
        printf("connections:  %llu open, %llu total, %llu refused", SUM("echosrv_connections_open"),
               SUM("echosrv_connections_total"), SUM("echosrv_connections_refused_total"));
        const char *sep = " (";
        for (int k = 0; refused_reasons[k]; k++) {
            double v = sum_of(m, "echosrv_connections_refused_total", "reason", refused_reasons[k]);
            if (v > 0) {
                printf("%s%s %llu", sep, refused_reasons[k], (unsigned long long)v);
                sep = ", ";
            }
        }
        printf("%s\n", sep[0] == ',' ? ")" : "");
        printf("messages:     %llu\n", SUM("echosrv_messages_total"));
        printf("bytes:        %llu received, %llu sent\n", SUM("echosrv_bytes_received_total"),
               SUM("echosrv_bytes_sent_total"));
        printf("errors:       %llu", SUM("echosrv_errors_total"));
        sep = " (";
        for (int k = 0; error_kinds[k]; k++) {
            double v = sum_of(m, "echosrv_errors_total", "kind", error_kinds[k]);
            if (v > 0) {
                printf("%s%s %llu", sep, error_kinds[k], (unsigned long long)v);
                sep = ", ";
            }
        }
        printf("%s\n", sep[0] == ',' ? ")" : "");
        printf("\n%-16s %8s %10s %8s %12s %14s %14s %8s\n", "listener", "open", "total", "refused",
               "messages", "received", "sent", "errors");
        for (size_t i = 0; listeners[i]; i++) {
            const char *l = listeners[i];
            printf("%-16s %8llu %10llu %8llu %12llu %14llu %14llu %8llu\n", l,
                   SUM_L("echosrv_connections_open", l), SUM_L("echosrv_connections_total", l),
                   SUM_L("echosrv_connections_refused_total", l),
                   SUM_L("echosrv_messages_total", l), SUM_L("echosrv_bytes_received_total", l),
                   SUM_L("echosrv_bytes_sent_total", l), SUM_L("echosrv_errors_total", l));
        }
        printf("\n%-16s %12s %12s\n", "worker", "connections", "messages");
        for (size_t i = 0; workers[i]; i++)
            printf("%-16s %12llu %12llu\n", workers[i],
                   (unsigned long long)sum_of(m, "echosrv_worker_connections", "worker", workers[i]),
                   (unsigned long long)sum_of(m, "echosrv_worker_messages_total", "worker",
                                              workers[i]));
        printf("\n%-16s %12s\n", "plugin", "messages");
        for (size_t i = 0; plugins[i]; i++)
            printf("%-16s %12llu\n", plugins[i],
                   (unsigned long long)sum_of(m, "echosrv_plugin_messages_total", "plugin",
                                              plugins[i]));
    }
#undef SUM
#undef SUM_L
    free_values(listeners);
    free_values(workers);
    free_values(plugins);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "echocli info: standard output: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* See cli.h. Main thread. */
int cli_info_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "address", required_argument, NULL, 'a' },
        { "timeout", required_argument, NULL, 't' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *address = INFO_DEFAULT_ADDR;
    bool json = false;
    int timeout_ms = 5000, opt;
    double secs;

    while ((opt = getopt_long(argc, argv, "a:t:jh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            address = optarg;
            break;
        case 't':
            if (cli_parse_seconds(optarg, &secs, &timeout_ms) < 0) {
                fprintf(stderr, "echocli info: bad timeout '%s'\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            info_usage(stdout);
            return CLI_EXIT_OK;
        default:
            info_usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "echocli info: unexpected argument '%s'\n", argv[optind]);
        info_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    size_t len;
    char *resp = http_get(address, "/metrics", timeout_ms, &len);
    if (resp == NULL)
        return CLI_EXIT_FAIL;
    int status = 0;
    char *body = strstr(resp, "\r\n\r\n");
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1 || body == NULL) {
        fprintf(stderr, "echocli info: %s: not an HTTP reply\n", address);
        free(resp);
        return CLI_EXIT_FAIL;
    }
    if (status != 200) {
        char *eol = strpbrk(resp, "\r\n");
        fprintf(stderr, "echocli info: %s: %.*s\n", address, (int)(eol - resp), resp);
        free(resp);
        return CLI_EXIT_FAIL;
    }
    struct metrics_text m = { 0 };
    int rc = CLI_EXIT_OK;
    if (parse_metrics(body + 4, &m) < 0 || m.n == 0) {
        fprintf(stderr, "echocli info: %s: the reply is not in the Prometheus text format\n",
                address);
        rc = CLI_EXIT_FAIL;
    } else if (print_info(&m, address, json) < 0) {
        rc = CLI_EXIT_FAIL;
    }
    free(m.v);
    free(resp);
    return rc;
}
