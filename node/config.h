/*
 * config.h - the agent's configuration: one YAML file read into one plain,
 * validated struct, with every key also settable from a command-line flag.
 *
 * One table in config.c drives parsing, flags, defaults, --help and printing;
 * adding a key is one row there plus one field here (field name = key name).
 * pmeshd calls pm_config_load for the file, then pm_config_set for each flag,
 * so flags win.
 *
 * Ownership: the struct owns every string and list in it; pm_config_destroy
 * frees them. Callers read the fields directly and never write them.
 */
#ifndef PM_CONFIG_H
#define PM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A list of strings; the list owns items[0..len-1] and the array. */
typedef struct pm_config_list {
    char **items;
    size_t len;
} pm_config_list_t;

/* fanin_early_copies */
enum { PM_FANIN_COPIES_DECISIVE = 0, PM_FANIN_COPIES_EVERY = 1 };

typedef struct pm_config {
    char *node;                     /* NULL: pmeshd uses $NODE_NAME, else the hostname */
    char *socket;                   /* NULL: pmeshd uses $PMESH_SOCKET, else the default */
    int log_level;                  /* enum pm_log_level in log.h */
    int log_format;                 /* enum pm_log_format in log.h */
    int64_t max_value_bytes;        /* largest promise value accepted */
    int64_t client_timeout;         /* milliseconds of silence before a session is closed */
    int64_t max_waiters_per_client; /* awaits one client may hold at once */
    int64_t max_fanin_inputs;       /* inputs of one combinator */
    int64_t max_labels;             /* labels per promise */
    int64_t list_limit;             /* default page size of list */
    char *bind;                     /* mesh endpoint to listen on; NULL: no mesh */
    char *advertise;                /* mesh endpoint peers dial; NULL: bind */
    char *mesh_key_dir;             /* mesh.pub + mesh.key: CURVE for the mesh */
    bool insecure;                  /* a mesh without CURVE, knowingly */
    pm_config_list_t seeds;         /* mesh seeds: tcp://HOST:PORT, HOST re-resolved */
    int64_t seed_refresh;           /* ms between DNS re-resolutions of seeds */
    int64_t probe_interval;         /* SWIM: ms between probes */
    int64_t probe_timeout;          /* SWIM: ms to wait for a direct ack */
    int64_t indirect_checks;        /* SWIM: relays asked when a direct probe fails */
    int64_t suspicion_mult;         /* SWIM: suspicion timeout in probe periods (x log N) */
    int64_t gossip_interval;        /* SWIM: ms between gossip rounds while updates wait */
    int64_t sync_interval;          /* SWIM: ms between full state syncs */
    int64_t forward_timeout;        /* ms an operation relayed to an owner may take */
    int64_t held_reply_timeout;     /* ms a reply may be held for durability */
    int64_t sub_resend;             /* ms between resends of an unanswered subscription */
    int64_t fanin_not_found_wait;   /* ms a combinator waits for a missing input to appear */
    bool fanin_early;               /* start a combinator's continuation on tentative inputs */
    int fanin_early_copies;         /* 0 decisive, 1 every (PM_FANIN_COPIES_*) */
    bool chain_forward;             /* hand a chain's continuations on with an invocation */
    bool mesh_batch;                /* one frame per peer per turn of the loop (mesh/outbox.c) */
    char *data_dir;                 /* WAL directory; NULL: nothing survives a restart */
    int fsync;                      /* 0 always, 1 batch, 2 never (pm_fsync_mode_t) */
    int64_t retention;              /* ms a settled promise is kept */
    int64_t replicas;               /* copies of every promise (owner + backups) */
    int64_t takeover_grace;         /* ms a restarted agent waits before resuming its space */
    int64_t retire_interval;        /* ms between checks for served spaces left empty */
    char *coordination;             /* etcd://HOST:PORT[,...] or mem://; NULL: none */
    char *coordination_prefix;      /* the mesh's key prefix in the store */
    char *coordination_ca_file;     /* the store's CA: TLS (https) when set */
    char *coordination_cert_file;   /* client certificate for the store (with the key) */
    char *coordination_key_file;
    int64_t min_in_sync;            /* recorded backups needed to write; -1: replicas - 1 */
    bool unsafe_no_coordination;    /* replicas >= 2 without a store, knowingly */
    char *http;                     /* ADDR:PORT of the HTTP gateway; NULL: none */
    char *http_public;              /* ADDR:PORT of the token-only listener; NULL: none */
    char *http_public_url;          /* base URL outside systems call back; NULL: from http(_public) */
    char *http_api_keys_file;       /* NAME SCOPE KEY lines; NULL: no keys (loopback only) */
    bool insecure_http;             /* the full API without keys on a non-loopback address */
    char *token_secret_file;        /* HMAC key for settle tokens; NULL: tokens disabled */
    int64_t http_max_connections;   /* concurrent HTTP connections */
    int64_t http_max_wait;          /* ms: longest ?wait= long-poll */
    pm_config_list_t http_functions; /* "NAME=URL [timeout=DUR] [retries=N]" */
    int64_t http_function_timeout;  /* ms per attempt, unless the function says */
    int64_t http_function_retries;  /* attempts after the first, on 5xx / connection errors */
    int64_t http_function_concurrency; /* invocations in flight per function */
    uint64_t set_by_flag;           /* private: one bit per key already set by pm_config_set */
} pm_config_t;

/* A config holding every default. Caller owns it; NULL if out of memory. */
pm_config_t *pm_config_new(void);

/* Frees the config and everything in it; sets *self_p to NULL. NULL-safe. */
void pm_config_destroy(pm_config_t **self_p);

/* Reads the YAML file at path over self. 0 ok; -1 with a one-line message
 * "path:line:col: key: problem" in err, and self unchanged. An empty file is
 * valid and changes nothing; keys absent from the file keep their values. */
int pm_config_load(pm_config_t *self, const char *path, char *err, size_t errlen);

/* Sets one key from a flag (key spelled with '_' or '-'). 0 ok; -1 with
 * "--key-name: problem" in err, and self unchanged. A boolean takes value NULL
 * as true. A list's first set replaces its items, later sets append; an empty
 * value clears the list. An empty value unsets a string that has no default. */
int pm_config_set(pm_config_t *self, const char *key, const char *value, char *err,
                  size_t errlen);

/* 1 if key (with '_' or '-') names a config key, else 0. */
int pm_config_is_key(const char *key);

/* 1 if the flag --key needs a value; 0 for a boolean (may appear bare) or an
 * unknown key. */
int pm_config_key_takes_value(const char *key);

/* Writes the effective config as commented YAML that pm_config_load reads back
 * to an equal config. */
void pm_config_print(const pm_config_t *self, FILE *out);

/* Writes one line per key: "--key-name TYPE  doc (default X; range)". */
void pm_config_help(FILE *out);

/* Parses an integer, optionally with a binary size unit: "1048576", "64KiB",
 * "1MiB", "2GiB", "1TiB", "-1". 0 ok; -1 malformed; -2 does not fit int64. */
int pm_config_parse_int(const char *text, int64_t *out);

/* Parses "true" or "false". 0 ok, -1 anything else. */
int pm_config_parse_bool(const char *text, bool *out);

#endif
