/* fake_host.h - plugin unit test helpers: a recording es_host and the server's input path. */
#ifndef ECHOSRV_TESTS_FAKE_HOST_H
#define ECHOSRV_TESTS_FAKE_HOST_H

#include <stddef.h>
#include <string.h>
#include <sys/types.h>

#include "buf.h"
#include "echosrv/plugin.h"

/* The functions below call cmocka (fail_msg(), assert_*): include <cmocka.h> first, and call
 * them from the test's own thread. */

#define FH_MAX_EVENTS 4096      /* events a fake connection records; later ones are dropped */

/* Fails the current test unless the string HAY contains NEEDLE. */
#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        if (strstr((hay), (needle)) == NULL)                                   \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));           \
    } while (0)

/* The fake connection: what the plugin did to it, in order. */
struct es_conn {
    buf out;                    /* everything written */
    size_t writes;              /* host->write calls */
    size_t closes;              /* host->close calls */
    size_t logs;                /* host->log calls about this connection */
    size_t peers;               /* host->peer calls */
    size_t instances;           /* host->instance calls */
    char last_log[512];         /* the text of the last of those log calls */
    const void *last_data;      /* the pointer given to the last host->write */
    size_t last_len;
    char events[FH_MAX_EVENTS]; /* 'w' write, 'c' close */
    size_t nevents;
    int fail_write;             /* make host->write refuse */
    void *instance;             /* what host->instance returns */
};

/* The services table whose hooks record into the struct es_conn they are given. host->log
 * with a NULL connection only formats its text. */
extern const es_host fh_host;

/* One connection as the server holds it: the plugin, the fake conn, the plugin's zeroed
 * state, the unconsumed input and the number of messages handed to response. */
typedef struct fh_client {
    const es_plugin *plugin;
    es_conn conn;
    void *state;
    buf in;
    size_t messages;
    size_t passed;              /* bytes of the current message the partial hook took */
} fh_client;

/* Zeroes CL, allocates PLUGIN's per-connection state and calls its open hook with INSTANCE,
 * which must succeed. Release with fh_client_close(). */
void fh_client_open(fh_client *cl, const es_plugin *plugin, void *instance);

/* Calls the plugin's close hook (if any) and frees the state, the input and the output. */
void fh_client_close(fh_client *cl);

/* The server's input path: appends the LEN bytes at DATA to the input, then calls
 * data_received on the unconsumed input and response on each complete message, dropping it,
 * until more input is needed or the connection is closing. When more is needed and at least
 * ES_PARTIAL_MIN bytes wait, the plugin's partial hook (if any) is called once and the bytes
 * it took are dropped (counted in passed until the message ends). Once the plugin has closed the
 * connection, input is dropped, as the server does. Fails the test if data_received returns
 * a protocol error or more than it was given, or if response fails. */
void fh_client_feed(fh_client *cl, const void *data, size_t len);

/* Checks the descriptor D as the loader would, and more: magic, ABI, size, NAME, the package
 * version, CONN_SIZE (> 0) and the hooks every plugin has (init, fini, open, data_received,
 * response). */
void fh_check_descriptor(const es_plugin *d, const char *name, size_t conn_size);

/* Calls PLUGIN's init with ITEMS[0..COUNT) and fh_host, which must succeed. Returns the
 * instance; release it with PLUGIN->fini. */
void *fh_init_ok(const es_plugin *plugin, const es_config_item *items, size_t count);

/* Calls PLUGIN's init with ITEMS[0..COUNT), which must fail at item ITEM with a
 * NUL-terminated message containing NEEDLE, and leave the instance pointer alone. */
void fh_init_err(const es_plugin *plugin, const es_config_item *items, size_t count, int item,
                 const char *needle);

#endif
