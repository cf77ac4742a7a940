/* cli.h - what echocli.c and cli_bench.c share: the bench entry point and argument parsers. */
#ifndef ECHOSRV_CLI_H
#define ECHOSRV_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLI_DEFAULT_ADDR "127.0.0.1:8060"
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1         /* the server could not be reached, timed out, closed, ... */
#define CLI_EXIT_USAGE 2        /* bad arguments */

/* `echocli bench ARGS`: argv[0] names the command in messages. Returns the process exit status
 * (CLI_EXIT_*). Runs on the main thread; starts and joins its own threads. */
int cli_bench_main(int argc, char **argv);

/* `echocli info ARGS`: fetch /metrics from echosrv's admin listener and print the figures.
 * argv[0] names the command. Returns the process exit status (CLI_EXIT_*). Main thread. */
int cli_info_main(int argc, char **argv);

/* Parse a number of seconds (decimal, fractional allowed, > 0 and at most
 * one day) into milliseconds, rounded up. Returns 0, or -1 if text is not
 * such a number. */
int cli_parse_seconds(const char *text, double *secs, int *ms);

/* Parse an unsigned count with an optional k/m/g suffix (powers of 1024)
 * into *out, which must lie in [min, max]. Returns 0 or -1. */
int cli_parse_count(const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* Decode a separator given with C escapes (\r, \n, \xHH, ...) into out
 * (capacity FRAME_SEP_MAX). Returns its length (>= 1), or -1 after printing
 * a message on stderr. */
int cli_parse_separator(const char *text, uint8_t *out);

/* The TLS options of message mode and bench. --cacert, --cert, --key, --insecure and
 * --servername imply --tls. */
struct cli_tls {
    bool on;
    bool insecure;
    const char *cafile;         /* NULL: the system's CA paths */
    const char *cert, *key;     /* client certificate and key, both or neither */
    const char *servername;     /* NULL: the host of the address */
};

enum {
    CLI_OPT_TLS = 0x100, CLI_OPT_CACERT, CLI_OPT_CERT, CLI_OPT_KEY, CLI_OPT_INSECURE,
    CLI_OPT_SERVERNAME,
};

/* Entries of a getopt_long table for the TLS options. */
#define CLI_TLS_LONGOPTS \
    { "tls", no_argument, NULL, CLI_OPT_TLS }, \
    { "cacert", required_argument, NULL, CLI_OPT_CACERT }, \
    { "cert", required_argument, NULL, CLI_OPT_CERT }, \
    { "key", required_argument, NULL, CLI_OPT_KEY }, \
    { "insecure", no_argument, NULL, CLI_OPT_INSECURE }, \
    { "servername", required_argument, NULL, CLI_OPT_SERVERNAME }

/* The lines of the usage text that describe them. */
#define CLI_TLS_USAGE \
    "  --tls                 connect with TLS (1.2 or later); implied by the options below\n" \
    "  --cacert FILE         CA certificates (PEM) that verify the server (default: the\n" \
    "                        system's)\n" \
    "  --cert FILE           client certificate (PEM) for mutual TLS; needs --key\n" \
    "  --key FILE            the client certificate's private key (PEM); needs --cert\n" \
    "  --insecure            do not verify the server's certificate\n" \
    "  --servername NAME     name to send (SNI) and verify (default: the host of ADDR)\n"

/* Takes getopt's opt (and optarg) into t if it is a TLS option. Returns 1 if it was one,
 * 0 if not. */
int cli_tls_opt(struct cli_tls *t, int opt, const char *arg);

/* Checks the TLS options once all are parsed. Returns 0, or -1 after a message on stderr
 * that names prog. */
int cli_tls_check(const struct cli_tls *t, const char *prog);

#endif
