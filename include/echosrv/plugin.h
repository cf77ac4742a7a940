/* echosrv/plugin.h - the public protocol plugin API: the only header a plugin needs.
 *
 * A plugin is a shared object that exports one function, ES_PLUGIN_ENTRY
 * (es_plugin_entry), returning a constant descriptor (es_plugin) with the ABI
 * version it was built against and its hooks. The server hands the plugin a
 * table of services (es_host) so that a plugin links against nothing of
 * echosrv.
 *
 * Lifecycle, and the thread each hook runs on:
 *
 *   init            main thread, once per instance: at start-up before any
 *                   worker starts, and again at each reload (SIGHUP)
 *   open            the worker thread that accepted the connection
 *   data_received   that same worker, each time input arrived
 *   response        that same worker, once per complete message
 *   close           that same worker, exactly once per successful open,
 *                   also when the server shuts down
 *   fini            main thread, once per instance, after the last
 *                   connection opened with it has closed and no worker can
 *                   reach it any more
 *
 * A connection never moves between threads, so per-connection state needs no
 * lock. Per-plugin state (the instance returned by init) is shared by every
 * worker: after init it must be treated as read-only, or protected by the
 * plugin's own locks or atomics.
 *
 * Reloads: each reload of the configuration calls init again, with the
 * section as it is now, for a new instance; new connections get the new
 * instance while the connections opened before keep theirs until they close,
 * and only then is the old instance's fini called. Several instances of one
 * plugin can therefore live at once, each with its own configuration: keep
 * state in the instance, not in globals. When the plugin file was replaced on
 * disk, the new instance comes from the new file (loaded from a private
 * copy), beside the old code that its connections still run.
 *
 * Rules for plugins (normative):
 *   - hooks must not block (no sleeping, no blocking I/O, no waiting on locks
 *     held for long); every worker serves thousands of connections;
 *   - no threads that outlive fini, no exit(), fork() or signal handlers;
 *   - no unlocked global mutable state;
 *   - export no symbol but the entry point: build with
 *     -fvisibility=hidden and mark only the entry with ES_EXPORT.
 *
 * Compatibility: ES_PLUGIN_ABI_MAJOR changes when an existing field changes
 * meaning or place; the server refuses a plugin of another major. Both
 * structures only ever grow at their end: each carries its own size, so a
 * newer server reads hooks past an older plugin's size as NULL, and a plugin
 * checks ES_HOST_HAS(host, field) before calling a service newer than the
 * oldest server it supports.
 */
#ifndef ECHOSRV_PLUGIN_H
#define ECHOSRV_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ES_PLUGIN_MAGIC 0x31505345u /* "ESP1" in memory on little-endian */
#define ES_PLUGIN_ABI_MAJOR 1
#define ES_PLUGIN_ABI_MINOR 1

/* The one symbol a plugin exports. */
#define ES_PLUGIN_ENTRY es_plugin_entry
#define ES_PLUGIN_ENTRY_NAME "es_plugin_entry"

#if defined(__GNUC__)
#define ES_EXPORT __attribute__((visibility("default")))
#define ES_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ES_EXPORT
#define ES_PRINTF(f, a)
#endif

/* Log levels for es_host.log. */
enum es_log_level {
    ES_LOG_ERROR = 0,
    ES_LOG_WARN = 1,
    ES_LOG_INFO = 2,
    ES_LOG_DEBUG = 3,
};

/* A connection, opaque to plugins. Valid from open until close returns. */
typedef struct es_conn es_conn;

/* One `key = value` line of the plugin's own INI section, in file order.
 * Strings are owned by the server and valid during init only. */
typedef struct es_config_item {
    const char *key;
    const char *value; /* surrounding double quotes removed, no escapes */
    int line;          /* line number in the INI file */
} es_config_item;

/* The plugin's INI section: the section named after the plugin. */
typedef struct es_config {
    const es_config_item *items;
    size_t count;
} es_config;

/* Where init reports a refusal: a message, and which item caused it. */
typedef struct es_error {
    int item;       /* index into es_config.items, or -1 for none */
    char msg[256];  /* human text, no trailing newline, no file name */
} es_error;

/* Services the server offers. Append-only; check ES_HOST_HAS before calling
 * a field added after ABI 1.0. The table outlives every hook call. */
typedef struct es_host {
    uint32_t size;      /* sizeof(es_host) as the server was built */
    uint16_t abi_major; /* the server's ES_PLUGIN_ABI_MAJOR */
    uint16_t abi_minor; /* the server's ES_PLUGIN_ABI_MINOR */

    /* Queue len bytes to be sent on c, in order after everything queued
     * before. The bytes are copied before it returns (the caller keeps
     * ownership of data). Returns 0, or -1 when the connection is closing
     * (the data is dropped). Owning worker only. */
    int (*write)(es_conn *c, const void *data, size_t len);

    /* Close c once everything queued has been sent; no hook but close runs
     * for c afterwards, and input not yet handed to response is dropped.
     * Owning worker only. */
    void (*close)(es_conn *c);

    /* Log a line (no newline needed) at the given level, prefixed with the
     * plugin's name and the connection's peer. With c == NULL: any thread;
     * with a connection: its owning worker only. */
    void (*log)(const es_conn *c, enum es_log_level level, const char *fmt, ...)
        ES_PRINTF(3, 4);

    /* The peer's address as text ("127.0.0.1:5000", "[::1]:5000",
     * "unix:/path"); owned by the server, valid until close. Owning worker
     * only. */
    const char *(*peer)(const es_conn *c);

    /* Per-plugin instance returned by init, for hooks that need it.
     * Owning worker only. */
    void *(*instance)(const es_conn *c);
} es_host;

#define ES_HOST_HAS(host, field)                                               \
    ((host)->size >= offsetof(es_host, field) + sizeof((host)->field) &&     \
     (host)->field != NULL)

/* The descriptor returned by the entry point. Keep it `static const`. */
typedef struct es_plugin {
    uint32_t magic;     /* ES_PLUGIN_MAGIC */
    uint16_t abi_major; /* ES_PLUGIN_ABI_MAJOR */
    uint16_t abi_minor; /* ES_PLUGIN_ABI_MINOR */
    uint32_t size;      /* sizeof(es_plugin) */
    const char *name;   /* short name, e.g. "echo" */
    const char *version;
    /* Bytes of per-connection state; the server allocates it zeroed before
     * open and frees it after close. 0 for none (state is then NULL). */
    size_t conn_size;

    /* Main thread, once per instance (start-up, then each reload). Read the
     * plugin's own section; reject unknown keys
     * and bad values by filling err (item = the index of the offending item)
     * and returning -1. On success store the plugin's instance (may be NULL)
     * in *instance and return 0. May be NULL. */
    int (*init)(const es_host *host, const es_config *cfg, void **instance,
                es_error *err);

    /* Main thread, once per instance, after every connection opened with it
     * has closed and no worker can reach it (at exit, after the workers are
     * joined). Frees the instance. May be NULL. */
    void (*fini)(void *instance);

    /* A new connection; state is zeroed conn_size bytes, instance is what
     * init stored. Return 0, or -1 to refuse the connection (close is then
     * not called). May be NULL. */
    int (*open)(es_conn *c, void *instance, void *state);

    /* Framing. data/len hold the connection's input not yet consumed,
     * starting at the first byte of the next message; the bytes are borrowed
     * for this call only. Between two calls that returned 0 the server only
     * appends to this input, so a plugin may remember how far it has scanned
     * (in state) and never scan a byte twice.
     * Returns the length (> 0, <= len) of the next complete message, which
     * the server then passes to response and removes from the input; 0 when
     * more input is needed; -1 for a protocol error (the server logs it and
     * closes the connection). Required. */
    ssize_t (*data_received)(es_conn *c, void *state, const uint8_t *data,
                             size_t len);

    /* One complete message: the msg_len bytes data_received delimited,
     * borrowed for this call only. Reply with host->write. Return 0, or -1
     * for an error that closes the connection at once (nothing more queued
     * is sent). Required. */
    int (*response)(es_conn *c, void *state, const uint8_t *msg,
                    size_t msg_len);

    /* The connection is gone (peer closed, error, timeout, host->close or
     * shutdown). Free what state points to; do not free state itself. Do
     * not call host->write. May be NULL. */
    void (*close)(es_conn *c, void *state);

    /* ---- ABI 1.1 ---- */

    /* Cut-through for long messages. Called after data_received returned
     * 0 when at least ES_PARTIAL_MIN bytes of an unfinished message wait
     * (and the message is still within max_message). The plugin may answer
     * the message's leading bytes now, with host->write, and return how
     * many of data's bytes it is done with: the server drops them, so the
     * next data_received starts at data + that count (adjust the scan
     * state), and the response for the message gets only the bytes not
     * passed on here. A message of any length then takes no more memory
     * than a read. Return 0 to keep everything, -1 for a protocol error
     * (logged, the connection closes). max_message still bounds the whole
     * message: past it the connection closes, after the bytes passed on.
     * Owning worker. May be NULL: messages are then held whole. */
    ssize_t (*partial)(es_conn *c, void *state, const uint8_t *data,
                       size_t len);
} es_plugin;

/* How many bytes of an unfinished message wait before partial is called. */
#define ES_PARTIAL_MIN 8192u

/* The smallest descriptor size a server of this major accepts: every field
 * up to and including close. Frozen for ABI major 1; later fields are
 * optional and read as NULL when a plugin's size ends before them. */
#define ES_PLUGIN_MIN_SIZE 88u

#if defined(__x86_64__) || defined(__aarch64__)
_Static_assert(offsetof(es_plugin, close) + sizeof(void (*)(void)) ==
                   ES_PLUGIN_MIN_SIZE,
               "es_plugin ABI 1 layout changed");
#endif

/* The entry point every plugin defines:
 *     ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void) { return &desc; }
 */
typedef const es_plugin *(*es_plugin_entry_fn)(void);
ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void);

#ifdef __cplusplus
}
#endif

#endif /* ECHOSRV_PLUGIN_H */
