/* echocli.c - the echo client tool: messages from the arguments or stdin; `bench` dispatch. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_LINE_EDITING
#if defined(HAVE_EDITLINE_READLINE_H)
#include <editline/readline.h>
#elif defined(HAVE_READLINE_READLINE_H)
#include <readline/readline.h>
#include <readline/history.h>
#else
#undef HAVE_LINE_EDITING
#endif
#endif

#include "addr.h"
#include "cli.h"
#include "echosrv/client.h"
#include "frame.h"

#define PROMPT "echo> "

struct cli_opts {
    const char *addr;
    unsigned pool;              /* 0: the library's default */
    double timeout;             /* seconds; 0: the library's defaults */
    int timeout_ms;
    uint8_t sep[FRAME_SEP_MAX];
    size_t sep_len;             /* 0: the library's default, \r\n\r\n */
    struct cli_tls tls;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: echocli [-a ADDR] [-p POOL] [-t TIMEOUT] [-S SEPARATOR] [TLS OPTIONS]\n"
        "               [--] [MESSAGE...]\n"
        "       echocli bench [-a ADDR] [-c CONNECTIONS] [-n REQUESTS] [-s SIZE] [-P PIPELINE]\n"
        "                     [-d SECONDS] [--csv | --json] [TLS OPTIONS] ...\n"
        "                     (echocli bench -h for more)\n"
        "       echocli info [-a ADMIN_ADDR] [-t TIMEOUT] [--json]\n"
        "                     (the server's figures from its [admin] listener)\n"
        "Sends each MESSAGE to an echo server, all at once over a pool of connections, and\n"
        "prints each reply on its own line, in the order of the arguments. Without messages,\n"
        "sends each line of standard input (a prompt when it is a terminal).\n"
        "  -a, --address ADDR    HOST:PORT, [IPv6]:PORT or unix:/path (default " CLI_DEFAULT_ADDR ")\n"
        "  -p, --pool POOL       connections open at once at most (default 10)\n"
        "  -t, --timeout SECS    bound for connecting and for each request; fractions allowed\n"
        "                        (default 5 to connect, 30 per request)\n"
        "  -S, --separator SEP   the server's separator, C escapes (default \\r\\n\\r\\n)\n"
        CLI_TLS_USAGE
        "  -h, --help            this help\n"
        "  -V, --version         the version\n"
        "Exit status: 0; 1 if the server was unreachable, timed out, closed the connection or\n"
        "failed the TLS handshake; 2 on bad arguments (a certificate, key or CA file that\n"
        "cannot be used included).\n");
}

/* Seconds, fractions allowed, into *secs and whole milliseconds (rounded up) into *ms.
 * Returns 0, or -1 for anything but a number in (0, 86400]. Any thread. */
int cli_parse_seconds(const char *text, double *secs, int *ms)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v > 0) || v > 86400)
        return -1;
    *secs = v;
    *ms = (int)ceil(v * 1000);
    return 0;
}

/* A count with an optional k/m/g suffix, within [min, max]. Returns 0 or -1. Any thread. */
int cli_parse_count(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text)
        return -1;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    v <<= shift;
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* A C-escaped separator into out (FRAME_SEP_MAX bytes). Returns its length, or -1 after a
 * message on stderr. Any thread. */
int cli_parse_separator(const char *text, uint8_t *out)
{
    char err[128];
    ssize_t n = unescape(text, out, FRAME_SEP_MAX, err, sizeof err);

    if (n < 0) {
        fprintf(stderr, "echocli: separator '%s': %s\n", text, err);
        return -1;
    }
    if (n == 0) {
        fprintf(stderr, "echocli: the separator must not be empty\n");
        return -1;
    }
    return (int)n;
}

/* See cli.h. Any thread. */
int cli_tls_opt(struct cli_tls *t, int opt, const char *arg)
{
    switch (opt) {
    case CLI_OPT_TLS:
        break;
    case CLI_OPT_CACERT:
        t->cafile = arg;
        break;
    case CLI_OPT_CERT:
        t->cert = arg;
        break;
    case CLI_OPT_KEY:
        t->key = arg;
        break;
    case CLI_OPT_INSECURE:
        t->insecure = true;
        break;
    case CLI_OPT_SERVERNAME:
        t->servername = arg;
        break;
    default:
        return 0;
    }
    t->on = true;
    return 1;
}

/* See cli.h. Any thread. */
int cli_tls_check(const struct cli_tls *t, const char *prog)
{
    if (t->cert != NULL && t->key == NULL) {
        fprintf(stderr, "%s: --cert needs --key (the certificate's private key)\n", prog);
        return -1;
    }
    if (t->key != NULL && t->cert == NULL) {
        fprintf(stderr, "%s: --key needs --cert (the certificate it goes with)\n", prog);
        return -1;
    }
    if (t->servername != NULL && t->servername[0] == '\0') {
        fprintf(stderr, "%s: --servername must not be empty\n", prog);
        return -1;
    }
    return 0;
}

/* Parse the options; *first is the index of the first message. Returns 0, 1 when done (help,
 * version), or -1 after printing what is wrong and the usage. */
static int parse_opts(int argc, char **argv, struct cli_opts *o, int *first)
{
    static const struct option longopts[] = {
        { "address", required_argument, NULL, 'a' },
        { "pool", required_argument, NULL, 'p' },
        { "timeout", required_argument, NULL, 't' },
        { "separator", required_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        CLI_TLS_LONGOPTS,
        { NULL, 0, NULL, 0 },
    };
    char err[256];
    addr a;
    uint64_t v;
    int opt, n;

    o->addr = CLI_DEFAULT_ADDR;
    while ((opt = getopt_long(argc, argv, "a:p:t:S:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            o->addr = optarg;
            break;
        case 'p':
            if (cli_parse_count(optarg, 1, 100000, &v) < 0) {
                fprintf(stderr, "echocli: -p %s: expected a pool size from 1 to 100000\n", optarg);
                goto usage;
            }
            o->pool = (unsigned)v;
            break;
        case 't':
            if (cli_parse_seconds(optarg, &o->timeout, &o->timeout_ms) < 0) {
                fprintf(stderr, "echocli: -t %s: expected a positive number of seconds\n", optarg);
                goto usage;
            }
            break;
        case 'S':
            n = cli_parse_separator(optarg, o->sep);
            if (n < 0)
                goto usage;
            o->sep_len = (size_t)n;
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("echocli %s (libechoclient %d.%d)\n", PACKAGE_VERSION, ES_CLIENT_VERSION_MAJOR,
                   ES_CLIENT_VERSION_MINOR);
            return 1;
        default:
            if (cli_tls_opt(&o->tls, opt, optarg))
                break;
            goto usage;
        }
    }
    if (cli_tls_check(&o->tls, "echocli") < 0)
        goto usage;
    if (addr_parse(o->addr, &a, err, sizeof err) < 0) {
        fprintf(stderr, "echocli: -a %s: %s\n", o->addr, err);
        goto usage;
    }
    *first = optind;
    return 0;

usage:
    usage(stderr);
    return -1;
}

/* The separator in use and its length. */
static const uint8_t *opt_sep(const struct cli_opts *o, size_t *len)
{
    if (o->sep_len > 0) {
        *len = o->sep_len;
        return o->sep;
    }
    *len = 4;
    return (const uint8_t *)"\r\n\r\n";
}

/* A client for the options, or NULL after a message on stderr. Free with es_client_free. */
static es_client *client_open(const struct cli_opts *o)
{
    es_client_options eo;
    char err[512];
    es_client *c;

    es_client_options_init(&eo);
    if (o->pool > 0)
        eo.pool_size = o->pool;
    if (o->timeout_ms > 0) {
        eo.connect_timeout_ms = o->timeout_ms;
        eo.request_timeout_ms = o->timeout_ms;
    }
    if (o->sep_len > 0) {
        eo.separator = o->sep;
        eo.separator_len = o->sep_len;
    }
    if (o->tls.on) {
        eo.tls = 1;
        eo.tls_insecure = o->tls.insecure;
        eo.tls_ca_file = o->tls.cafile;
        eo.tls_cert_file = o->tls.cert;
        eo.tls_key_file = o->tls.key;
        eo.tls_server_name = o->tls.servername;
    }
    err[0] = '\0';
    c = es_client_new(o->addr, &eo, err, sizeof err);
    if (c == NULL)
        fprintf(stderr, "echocli: %s: %s\n", o->addr, err[0] ? err : "cannot create the client");
    return c;
}

/* Report a failed request: name the address (unless the library's text does) and the reason. */
static void report_failure(const struct cli_opts *o, int rc, const char *err)
{
    const char *why = err[0] ? err : strerror(-rc);
    bool named = strstr(why, o->addr) != NULL;
    bool says_time = strcasestr(why, "time") != NULL;

    fprintf(stderr, "echocli: %s%s%s%s\n", named ? "" : o->addr, named ? "" : ": ", why,
            rc == -ETIMEDOUT && !says_time ? " (timed out)" : "");
}

/* Write one reply and a newline to stdout. Returns 0 or -1 (stdout failed). */
static int put_reply(es_response *r)
{
    size_t len;
    const uint8_t *data = es_response_data(r, &len);

    if ((len > 0 && fwrite(data, 1, len, stdout) != len) || putchar('\n') == EOF)
        return -1;
    return 0;
}

/* Report a failure to write stdout (silently for a closed pipe, as `| head` does). */
static int stdout_failed(void)
{
    if (errno != EPIPE)
        fprintf(stderr, "echocli: standard output: %s\n", strerror(errno));
    return CLI_EXIT_FAIL;
}

/* True if msg holds the separator: it could not be sent as one message. */
static bool has_separator(const struct cli_opts *o, const void *msg, size_t len)
{
    size_t sep_len;
    const uint8_t *sep = opt_sep(o, &sep_len);

    return memmem(msg, len, sep, sep_len) != NULL;
}

/* Send every message at once, print the replies in argument order. Returns the exit status. */
static int run_messages(const struct cli_opts *o, char **msgs, int n)
{
    es_future **fs;
    size_t *lens = NULL;
    es_client *c;
    int status = CLI_EXIT_OK;

    for (int i = 0; i < n; i++) {
        if (has_separator(o, msgs[i], strlen(msgs[i]))) {
            fprintf(stderr, "echocli: message %d contains the separator; it cannot be sent\n",
                    i + 1);
            return CLI_EXIT_USAGE;
        }
    }
    fs = calloc((size_t)n, sizeof *fs);
    if (fs == NULL) {
        fprintf(stderr, "echocli: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    c = client_open(o);
    if (c == NULL) {
        free(fs);
        return CLI_EXIT_USAGE;
    }
    lens = calloc((size_t)n, sizeof *lens);
    if (lens == NULL) {
        fprintf(stderr, "echocli: out of memory\n");
        status = CLI_EXIT_FAIL;
        goto done;
    }
    for (int i = 0; i < n; i++)
        lens[i] = strlen(msgs[i]);
    /* All at once: the pool opens the connections they need together. */
    if (es_client_submit_many(c, (size_t)n, (const void *const *)msgs, lens, fs) < 0) {
        fprintf(stderr, "echocli: out of memory\n");
        status = CLI_EXIT_FAIL;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        es_response *r = NULL;
        char err[256] = "";
        int rc;

        es_future_wait(fs[i], -1);
        rc = es_future_result(fs[i], &r, err, sizeof err);
        if (rc < 0) {
            report_failure(o, rc, err);
            status = CLI_EXIT_FAIL;
            break;
        }
        rc = put_reply(r);
        es_response_free(r);
        if (rc < 0) {
            status = stdout_failed();
            break;
        }
    }
    if (status == CLI_EXIT_OK && fflush(stdout) != 0)
        status = stdout_failed();

done:
    for (int i = 0; i < n; i++)
        if (fs[i] != NULL)
            es_future_free(fs[i]);
    free(fs);
    free(lens);
    es_client_free(c);
    return status;
}

/* Where lines come from: readline on a terminal (if built with it), else getline. */
struct reader {
    bool tty;
    char *buf;                  /* getline's buffer */
    size_t cap;
};

/* The next line of stdin without its line end (\n, \r\n): *line (caller frees) and *len.
 * Returns 0, or -1 at end of input. */
static int read_line(struct reader *rd, char **line, size_t *len)
{
    ssize_t n;

#ifdef HAVE_LINE_EDITING
    if (rd->tty) {
        char *s = readline(PROMPT);
        if (s == NULL)
            return -1;
        if (s[0] != '\0')
            add_history(s);
        *line = s;
        *len = strlen(s);
        goto strip;
    }
#else
    if (rd->tty) {
        fputs(PROMPT, isatty(STDOUT_FILENO) ? stdout : stderr);
        fflush(isatty(STDOUT_FILENO) ? stdout : stderr);
    }
#endif
    n = getline(&rd->buf, &rd->cap, stdin);
    if (n < 0)
        return -1;
    *line = malloc((size_t)n + 1);
    if (*line == NULL)
        return -1;
    memcpy(*line, rd->buf, (size_t)n + 1);
    *len = (size_t)n;
    if (*len > 0 && (*line)[*len - 1] == '\n')
        (*line)[--*len] = '\0';
#ifdef HAVE_LINE_EDITING
strip:
#endif
    if (*len > 0 && (*line)[*len - 1] == '\r')
        (*line)[--*len] = '\0';
    return 0;
}

/* Send each line of stdin in turn and print its reply. On a terminal, errors are reported and
 * the session goes on; otherwise the first error ends it. Returns the exit status. */
static int run_stdin(const struct cli_opts *o)
{
    bool tty = isatty(STDIN_FILENO) == 1;
    struct reader rd = { .tty = tty };
    es_client *c = client_open(o);
    int status = CLI_EXIT_OK;
    char *line;
    size_t len;

    if (c == NULL)
        return CLI_EXIT_USAGE;
#ifdef HAVE_LINE_EDITING
    if (tty)
        rl_outstream = isatty(STDOUT_FILENO) ? stdout : stderr;
#endif
    while (read_line(&rd, &line, &len) == 0) {
        es_response *r = NULL;
        char err[256] = "";
        int rc;

        if (tty && len == 0) {
            free(line);
            continue;
        }
        if (has_separator(o, line, len)) {
            free(line);
            fprintf(stderr, "echocli: the line contains the separator; it cannot be sent\n");
            if (tty)
                continue;
            status = CLI_EXIT_USAGE;
            break;
        }
        rc = es_client_call(c, line, len, &r, err, sizeof err);
        free(line);
        if (rc < 0) {
            report_failure(o, rc, err);
            if (tty)
                continue;
            status = CLI_EXIT_FAIL;
            break;
        }
        rc = put_reply(r);
        es_response_free(r);
        if (rc < 0 || (tty && fflush(stdout) != 0)) {
            status = stdout_failed();
            break;
        }
    }
#ifndef HAVE_LINE_EDITING
    if (tty)                            /* end the prompt's line (readline does it itself) */
        fputc('\n', isatty(STDOUT_FILENO) ? stdout : stderr);
#endif
    if (status == CLI_EXIT_OK && fflush(stdout) != 0)
        status = stdout_failed();
    free(rd.buf);
    es_client_free(c);
    return status;
}

/* `echocli bench ...` runs the benchmark; otherwise messages from the arguments or stdin. */
int main(int argc, char **argv)
{
    struct cli_opts o = { 0 };
    int first = 0, rc;

    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        argv[1] = (char *)"echocli bench";     /* getopt's messages name argv[0] */
        return cli_bench_main(argc - 1, argv + 1);
    }
    if (argc > 1 && strcmp(argv[1], "info") == 0) {
        argv[1] = (char *)"echocli info";
        signal(SIGPIPE, SIG_IGN);
        return cli_info_main(argc - 1, argv + 1);
    }
    /* Sockets and a closed stdout give EPIPE, reported, rather than a silent death. */
    signal(SIGPIPE, SIG_IGN);
    rc = parse_opts(argc, argv, &o, &first);
    if (rc != 0)
        return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (first < argc)
        return run_messages(&o, argv + first, argc - first);
    return run_stdin(&o);
}
