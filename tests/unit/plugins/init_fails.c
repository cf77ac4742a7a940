/* init_fails.c - a test plugin that loads but whose init refuses its configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echosrv/plugin.h"

static int init_fails_init(const es_host *host, const es_config *cfg, void **instance,
                           es_error *err)
{
    (void)host;
    (void)cfg;
    (void)instance;
    err->item = 0;
    snprintf(err->msg, sizeof err->msg, "init_fails says no");
    return -1;
}

/* Never owed after a failed init: calling it is a loader bug, made loud. */
static void init_fails_fini(void *instance)
{
    (void)instance;
    abort();
}

static ssize_t init_fails_data_received(es_conn *c, void *state, const uint8_t *data,
                                        size_t len)
{
    (void)c;
    (void)state;
    (void)data;
    (void)len;
    return 0;
}

static int init_fails_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    (void)c;
    (void)state;
    (void)msg;
    (void)len;
    return 0;
}

/* The descriptor declares only the frozen ABI 1 prefix (ES_PLUGIN_MIN_SIZE),
 * as a plugin built before any later hook was added would; the bytes after
 * it are garbage, which the loader must not take for hooks. */
static const es_plugin init_fails_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = 0,
    .size = ES_PLUGIN_MIN_SIZE,
    .name = "init_fails",
    .version = "0",
    .init = init_fails_init,
    .fini = init_fails_fini,
    .data_received = init_fails_data_received,
    .response = init_fails_response,
};

static union {
    es_plugin desc;
    unsigned char bytes[sizeof(es_plugin) + 64];
} storage;

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    memset(storage.bytes, 0xA5, sizeof storage.bytes);
    memcpy(storage.bytes, &init_fails_plugin, ES_PLUGIN_MIN_SIZE);
    return &storage.desc;
}
