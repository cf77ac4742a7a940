/* cli.h - what echocli.c and cli_bench.c share: the bench entry point and argument parsers. */
#ifndef ECHOSRV_CLI_H
#define ECHOSRV_CLI_H

#include <stddef.h>
#include <stdint.h>

#define CLI_DEFAULT_ADDR "127.0.0.1:8060"
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1         /* the server could not be reached, timed out, closed, ... */
#define CLI_EXIT_USAGE 2        /* bad arguments */

/* `echocli bench ARGS`: argv[0] names the command in messages. Returns the process exit status
 * (CLI_EXIT_*). Runs on the main thread; starts and joins its own threads. */
int cli_bench_main(int argc, char **argv);

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

#endif
