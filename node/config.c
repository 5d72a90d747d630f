/*
 * config.c - the agent's configuration: a YAML file (libyaml document API)
 * and command-line flags, read into one plain pm_config_t.
 *
 * Everything is driven by s_keys[], one row per key: parsing a file value or a
 * flag value, defaults, --help and printing. Input is outside input: every
 * refusal is a one-line message naming the file, line, column (1-based) and
 * key, and a refused load or set leaves the config exactly as it was (the file
 * is applied to a copy that replaces the config only when all of it is valid).
 */
#include "config.h"
#include "pmesh.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { S_STRING, S_INT, S_DURATION, S_BOOL, S_ENUM, S_LIST } s_type_t;

typedef struct {
    const char *key;
    s_type_t type;
    size_t offset;     /* of the field in pm_config_t */
    const char *def;   /* default, spelled as in a file; NULL: none (NULL string, empty list) */
    int64_t min, max;  /* S_INT, S_DURATION: accepted range, inclusive */
    const char *const *words; /* S_ENUM: NULL-terminated; the field holds the index */
    int (*check)(const char *value, char *msg, size_t msglen); /* S_STRING, S_LIST items */
    const char *meta;  /* value placeholder in --help; NULL: derived from the type */
    const char *doc;
} s_key_t;

/* A config file is a few dozen lines; anything this large is a wrong path. */
#define S_MAX_FILE (1024 * 1024)
/* Strings are names, paths and addresses; this bounds what we keep and print. */
#define S_MAX_STRING 4096
/* Longest key name, for the flag-name buffers. */
#define S_MAX_KEY 64
/* How much of a bad value is echoed back in a message. */
#define S_ECHO 48

static int s_check_node(const char *value, char *msg, size_t msglen);

/* Same order and numbers as enum pm_log_level and enum pm_log_format in log.h. */
static const char *const s_log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const s_log_formats[] = {"text", "json", NULL};
/* Same order and numbers as pm_fsync_mode_t in wal.h. */
static const char *const s_fsync_modes[] = {"always", "batch", "never", NULL};

#define S_AT(field) offsetof(pm_config_t, field)

static const s_key_t s_keys[] = {
    {.key = "node", .type = S_STRING, .offset = S_AT(node), .check = s_check_node, .meta = "NAME",
     .doc = "node name; default $NODE_NAME, else the hostname"},
    {.key = "socket", .type = S_STRING, .offset = S_AT(socket), .meta = "PATH",
     .doc = "agent socket path; default $PMESH_SOCKET, else " PMESH_DEFAULT_SOCKET},
    {.key = "log_level", .type = S_ENUM, .offset = S_AT(log_level), .def = "info",
     .words = s_log_levels, .doc = "least severe level that is logged"},
    {.key = "log_format", .type = S_ENUM, .offset = S_AT(log_format), .def = "text",
     .words = s_log_formats, .doc = "log line format"},
    /* 64 MiB: a value travels in one frame and is held in memory by every
     * reply to its waiters; larger payloads belong in a blob store. */
    {.key = "max_value_bytes", .type = S_INT, .offset = S_AT(max_value_bytes), .def = "1048576",
     .min = 1, .max = 64 * 1024 * 1024, .meta = "BYTES",
     .doc = "largest value a promise may hold"},
    /* 200 ms: below this a client busy in one long call would miss its own
     * keepalive; 10 min: a dead client's invocations wait no longer. */
    {.key = "client_timeout", .type = S_DURATION, .offset = S_AT(client_timeout), .def = "2s",
     .min = 200, .max = 10 * 60 * 1000,
     .doc = "a client session that sends nothing for this long is closed: its awaits "
            "dropped, its invocations given to other workers"},
    /* 10M: a waiter costs ~100 bytes, so one client stays under a GiB. */
    {.key = "max_waiters_per_client", .type = S_INT, .offset = S_AT(max_waiters_per_client),
     .def = "100000", .min = 1, .max = 10000000, .doc = "awaits one client may have open at once"},
    /* 1000: one combinator's subscriptions and record stay small (issue 15);
     * 65536 is what the wire decoder takes at all (PM_WIRE_MAX_IDS). */
    {.key = "max_fanin_inputs", .type = S_INT, .offset = S_AT(max_fanin_inputs), .def = "1000",
     .min = 1, .max = 65536, .doc = "inputs of one combinator (all, any, race, all-settled)"},
    /* 256: labels are for selecting, not for storing data. */
    {.key = "max_labels", .type = S_INT, .offset = S_AT(max_labels), .def = "16", .min = 0,
     .max = 256, .doc = "labels per promise"},
    /* 10000: one page must fit in one reply frame of modest size. */
    {.key = "list_limit", .type = S_INT, .offset = S_AT(list_limit), .def = "100", .min = 1,
     .max = 10000, .doc = "default page size of list"},
    {.key = "bind", .type = S_STRING, .offset = S_AT(bind), .meta = "ENDPOINT",
     .doc = "mesh endpoint to listen on, e.g. tcp://127.0.0.2:7480; unset: single node"},
    {.key = "advertise", .type = S_STRING, .offset = S_AT(advertise), .meta = "ENDPOINT",
     .doc = "mesh endpoint peers should dial; default the bind endpoint"},
    {.key = "mesh_key_dir", .type = S_STRING, .offset = S_AT(mesh_key_dir), .meta = "DIR",
     .doc = "directory with the mesh's CURVE keypair (mesh.pub, mesh.key; pmeshd --keygen DIR "
            "makes one): mesh traffic is encrypted and only key holders can join"},
    {.key = "insecure", .type = S_BOOL, .offset = S_AT(insecure), .def = "false",
     .doc = "allow a mesh without CURVE (plain text, anyone may join); for development only"},
    {.key = "seeds", .type = S_LIST, .offset = S_AT(seeds), .meta = "ENDPOINT",
     .doc = "mesh seed tcp://HOST:PORT to join through (flag --seed, repeatable); a HOST "
            "that resolves to several addresses joins them all"},
    /* 30 s: a Kubernetes headless service changes as pods come and go; a
     * lookup per half minute is cheap and bounds how stale the seed set is. */
    {.key = "seed_refresh", .type = S_DURATION, .offset = S_AT(seed_refresh), .def = "30s",
     .min = 1000, .max = 3600 * 1000, .doc = "how often seed host names are resolved again"},
    /* 200 ms with an 80 ms ack timeout: detection p99 under ~1.5 s with the
     * default suspicion (mesh/swim.c has the math); ~5 small messages per
     * second per agent whatever the mesh size. */
    {.key = "probe_interval", .type = S_DURATION, .offset = S_AT(probe_interval), .def = "200ms",
     .min = 20, .max = 60000, .doc = "SWIM probe period"},
    {.key = "probe_timeout", .type = S_DURATION, .offset = S_AT(probe_timeout), .def = "80ms",
     .min = 5, .max = 60000, .doc = "SWIM direct-probe ack timeout (less than probe_interval)"},
    {.key = "indirect_checks", .type = S_INT, .offset = S_AT(indirect_checks), .def = "3",
     .min = 0, .max = 16, .doc = "SWIM relays asked to probe a member that missed a direct probe"},
    {.key = "suspicion_mult", .type = S_INT, .offset = S_AT(suspicion_mult), .def = "3",
     .min = 2, .max = 16,
     .doc = "SWIM suspicion timeout, in probe periods times max(1, log10 N)"},
    {.key = "gossip_interval", .type = S_DURATION, .offset = S_AT(gossip_interval),
     .def = "100ms", .min = 10, .max = 60000,
     .doc = "SWIM gossip round period while updates are waiting to spread"},
    {.key = "sync_interval", .type = S_DURATION, .offset = S_AT(sync_interval), .def = "10s",
     .min = 100, .max = 3600 * 1000, .doc = "SWIM full state sync with one random member"},
    /* 10 s: longer than suspicion + death verdict, so a relayed request to an
     * owner that dies fails with OWNER_LOST first; this only catches a
     * reply lost in a restart. */
    {.key = "forward_timeout", .type = S_DURATION, .offset = S_AT(forward_timeout),
     .def = "10s", .min = 100, .max = 600000,
     .doc = "how long an operation relayed to a promise's owner may take"},
    {.key = "data_dir", .type = S_STRING, .offset = S_AT(data_dir), .meta = "DIR",
     .doc = "directory of the write-ahead log; unset: promises do not survive a restart"},
    /* batch: an acknowledgement waits for the fsync that covers it, and one
     * fsync covers everything written while the previous one ran. */
    {.key = "fsync", .type = S_ENUM, .offset = S_AT(fsync), .def = "batch",
     .words = s_fsync_modes,
     .doc = "when the WAL is forced to disk: always (each write), batch (group commit), never"},
    /* 24 h: long enough for a human-task callback to be read back after it
     * settled; short enough that the table does not grow without bound. */
    {.key = "retention", .type = S_DURATION, .offset = S_AT(retention), .def = "24h",
     .min = 1000, .max = 365LL * 24 * 3600 * 1000, .doc = "how long a settled promise is kept"},
    /* 2: one backup survives any single agent's death; 1 is fate-sharing
     * (the owner's death loses its promises: OWNER_LOST). */
    {.key = "replicas", .type = S_INT, .offset = S_AT(replicas), .def = "2", .min = 1,
     .max = 5, .doc = "copies of every promise: 1 = owner only (fate-sharing), 2+ = owner and "
                      "backups that take over when it dies"},
    /* 3 s: longer than failure detection (p99 ~1.5 s), so a space that was
     * taken over while we were down is announced before we would resume it. */
    {.key = "takeover_grace", .type = S_DURATION, .offset = S_AT(takeover_grace), .def = "3s",
     .min = 0, .max = 600000,
     .doc = "a restarted agent waits this long for news that its id space was taken over "
            "before serving it again"},
    /* 60 s: a check is one pass over the store (~30 ms for a million
     * promises); an empty space costs only a few bytes of gossip meanwhile. */
    {.key = "retire_interval", .type = S_DURATION, .offset = S_AT(retire_interval),
     .def = "60s", .min = 100, .max = 86400000,
     .doc = "how often id spaces served besides our own are checked; those left without "
            "promises (every restart leaves one behind) are given up"},
    {.key = "coordination", .type = S_STRING, .offset = S_AT(coordination), .meta = "URL",
     .doc = "configuration store that decides who owns each id space and which backups are "
            "in sync: etcd://HOST:PORT[,HOST:PORT...] (mem:// in tests); required with a mesh "
            "and replicas >= 2 unless unsafe_no_coordination"},
    {.key = "coordination_prefix", .type = S_STRING, .offset = S_AT(coordination_prefix),
     .def = "/pmesh/default", .meta = "PREFIX",
     .doc = "key prefix of this mesh in the configuration store (one per mesh)"},
    {.key = "coordination_ca_file", .type = S_STRING, .offset = S_AT(coordination_ca_file),
     .meta = "PATH", .doc = "CA of the configuration store: talk to it over TLS (https)"},
    {.key = "coordination_cert_file", .type = S_STRING,
     .offset = S_AT(coordination_cert_file), .meta = "PATH",
     .doc = "client certificate for the configuration store (with coordination_key_file)"},
    {.key = "coordination_key_file", .type = S_STRING, .offset = S_AT(coordination_key_file),
     .meta = "PATH", .doc = "the key of coordination_cert_file"},
    /* -1: replicas - 1, every backup (Kafka's min.insync.replicas = R). */
    {.key = "min_in_sync", .type = S_INT, .offset = S_AT(min_in_sync), .def = "-1", .min = -1,
     .max = 4,
     .doc = "backups that must be recorded in sync before the owner of an id space accepts "
            "writes; -1: replicas - 1. Lower (0) keeps writing with fewer copies: an "
            "acknowledged change then lives on fewer agents, and the owner's death alone "
            "loses it"},
    {.key = "unsafe_no_coordination", .type = S_BOOL, .offset = S_AT(unsafe_no_coordination),
     .def = "false",
     .doc = "run a mesh with replicas >= 2 without a configuration store (gossip decides "
            "ownership: a network split can lose acknowledged data); for development only"},
    {.key = "http", .type = S_STRING, .offset = S_AT(http), .meta = "ADDR:PORT",
     .doc = "serve the whole HTTP API (clients with an API key, settle tokens, /metrics, "
            "/readyz) here; unset: none"},
    {.key = "http_public", .type = S_STRING, .offset = S_AT(http_public), .meta = "ADDR:PORT",
     .doc = "serve only what outside systems need here: a promise's own routes with its "
            "settle token, and /healthz; unset: none"},
    {.key = "http_public_url", .type = S_STRING, .offset = S_AT(http_public_url), .meta = "URL",
     .doc = "base URL outside systems use to reach this gateway (callback_url); default "
            "http://ADDR:PORT of http_public, else of http"},
    {.key = "http_api_keys_file", .type = S_STRING, .offset = S_AT(http_api_keys_file),
     .meta = "PATH",
     .doc = "API keys of HTTP clients, one 'NAME read|write KEY' per line (reloaded on SIGHUP "
            "and when the file changes); unset: the full API answers without a key, and only "
            "on a loopback address"},
    {.key = "insecure_http", .type = S_BOOL, .offset = S_AT(insecure_http), .def = "false",
     .doc = "serve the full HTTP API without API keys on a non-loopback address (anyone who "
            "reaches it may read and settle every promise); for development only"},
    {.key = "token_secret_file", .type = S_STRING, .offset = S_AT(token_secret_file),
     .meta = "PATH", .doc = "file holding the mesh's HMAC key for settle tokens (32+ bytes); "
                            "unset: settling over HTTP is refused"},
    /* 1024: each connection costs a few KiB; beyond this clients get 503
     * rather than the gateway running out of descriptors. */
    {.key = "http_max_connections", .type = S_INT, .offset = S_AT(http_max_connections),
     .def = "1024", .min = 1, .max = 65536, .doc = "concurrent HTTP connections"},
    {.key = "http_max_wait", .type = S_DURATION, .offset = S_AT(http_max_wait), .def = "5m",
     .min = 0, .max = 3600 * 1000, .doc = "longest long-poll (?wait=) a GET may ask for"},
    {.key = "http_functions", .type = S_LIST, .offset = S_AT(http_functions),
     .meta = "'NAME=URL [timeout=DUR] [retries=N]'",
     .doc = "functions served by POSTing the input to a URL (Fission, OpenFaaS, Knative, any); "
            "2xx body resolves, anything else rejects"},
    {.key = "http_function_timeout", .type = S_DURATION,
     .offset = S_AT(http_function_timeout), .def = "30s", .min = 10, .max = 3600 * 1000,
     .doc = "time limit of one HTTP function call, unless the function sets timeout="},
    /* 3 retries with backoff 200 ms x 2^n (+ jitter, cap 10 s): rides out a
     * function pod's restart without holding an invocation for minutes. */
    {.key = "http_function_retries", .type = S_INT, .offset = S_AT(http_function_retries),
     .def = "3", .min = 0, .max = 20,
     .doc = "retries of an HTTP function after a 5xx or a connection error"},
    {.key = "http_function_concurrency", .type = S_INT,
     .offset = S_AT(http_function_concurrency), .def = "256", .min = 1, .max = 4096,
     .doc = "HTTP function calls in flight at once, per function"},
};

#define S_NKEYS (sizeof s_keys / sizeof s_keys[0])
_Static_assert(S_NKEYS <= 64, "set_by_flag has one bit per key");

/* A parsed scalar value before it is stored; a string in it is owned. */
typedef union {
    char *s;
    int64_t i;
    bool b;
    int e;
} s_value_t;

/* ---------------------------------------------------------------- helpers */

#define S_FIELD(cfg, k, type) ((type *) ((char *) (cfg) + (k)->offset))

/* Copies at most S_ECHO bytes of s into buf for a message, control bytes as '?'. */
static const char *
s_echo(const char *s, size_t len, char *buf, size_t buflen)
{
    assert(buflen > S_ECHO + 4);
    size_t n = len < S_ECHO ? len : S_ECHO;
    if (n < len)
        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
            n--; /* do not cut a UTF-8 sequence */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        buf[i] = c < 0x20 || c == 0x7F ? '?' : (char) c;
    }
    strcpy(buf + n, n < len ? "..." : "");
    return buf;
}

static const char *
s_type_noun(const s_key_t *k)
{
    switch (k->type) {
    case S_STRING: return "a string";
    case S_INT: return "an integer";
    case S_DURATION: return "a duration";
    case S_BOOL: return "true or false";
    case S_ENUM: return "a word";
    case S_LIST: return "a list";
    }
    return "?";
}

static const char *
s_node_noun(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

static void
s_join_words(const s_key_t *k, char *buf, size_t buflen)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const char *const *w = k->words; *w; w++) {
        int n = snprintf(buf + used, buflen - used, "%s%s", w == k->words ? "" : "|", *w);
        if (n < 0 || (size_t) n >= buflen - used)
            break;
        used += (size_t) n;
    }
}

/* Largest unit that divides ms exactly, so the text parses back equal. */
static void
s_format_duration(int64_t ms, char *buf, size_t buflen)
{
    if (ms != 0 && ms % (3600 * 1000) == 0)
        snprintf(buf, buflen, "%" PRId64 "h", ms / (3600 * 1000));
    else if (ms != 0 && ms % (60 * 1000) == 0)
        snprintf(buf, buflen, "%" PRId64 "m", ms / (60 * 1000));
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, buflen, "%" PRId64 "s", ms / 1000);
    else
        snprintf(buf, buflen, "%" PRId64 "ms", ms);
}

static void
s_format_range(const s_key_t *k, char *buf, size_t buflen)
{
    if (k->type == S_DURATION) {
        char lo[32], hi[32];
        s_format_duration(k->min, lo, sizeof lo);
        s_format_duration(k->max, hi, sizeof hi);
        snprintf(buf, buflen, "%s..%s", lo, hi);
    } else
        snprintf(buf, buflen, "%" PRId64 "..%" PRId64, k->min, k->max);
}

/* "default X; range" for --help and the comments of pm_config_print; "" if nothing to say. */
static void
s_describe(const s_key_t *k, char *buf, size_t buflen)
{
    char range[80] = "";
    if (k->type == S_INT || k->type == S_DURATION)
        s_format_range(k, range, sizeof range);
    if (k->def)
        snprintf(buf, buflen, "default %s%s%s", k->def, *range ? "; " : "", range);
    else if (k->type == S_LIST)
        snprintf(buf, buflen, "repeatable; default none");
    else
        snprintf(buf, buflen, "%s", range);
}

/* "max_value_bytes" -> "--max-value-bytes" */
static void
s_flag_name(const char *key, char *buf, size_t buflen)
{
    snprintf(buf, buflen, "--%s", key);
    for (char *p = buf + 2; *p; p++)
        if (*p == '_')
            *p = '-';
}

/* The row for a key spelled exactly as in a file, or NULL. */
static const s_key_t *
s_find(const char *key, size_t len)
{
    for (size_t i = 0; i < S_NKEYS; i++)
        if (strlen(s_keys[i].key) == len && memcmp(s_keys[i].key, key, len) == 0)
            return &s_keys[i];
    return NULL;
}

/* The row for a key with '-' taken as '_' (and, if fold, any case), or NULL. */
static const s_key_t *
s_find_loose(const char *key, size_t len, bool fold)
{
    char name[S_MAX_KEY + 1];
    if (len > S_MAX_KEY)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = key[i] == '-' ? '_' : key[i];
        name[i] = fold && c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
    }
    return s_find(name, len);
}

/* ------------------------------------------------------- value checking */

/* Whether s[0..len) is UTF-8 text we can keep and print back as YAML:
 * no NUL, no control character, nothing libyaml refuses to read. */
static int
s_check_text(const char *s, size_t len, char *msg, size_t msglen)
{
    if (len > S_MAX_STRING) {
        snprintf(msg, msglen, "is longer than %d bytes", S_MAX_STRING);
        return -1;
    }
    const unsigned char *p = (const unsigned char *) s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n;
        uint32_t least;
        if (p[i] < 0x80) {
            cp = p[i], n = 1, least = 0;
        } else if ((p[i] & 0xE0) == 0xC0) {
            cp = p[i] & 0x1F, n = 2, least = 0x80;
        } else if ((p[i] & 0xF0) == 0xE0) {
            cp = p[i] & 0x0F, n = 3, least = 0x800;
        } else if ((p[i] & 0xF8) == 0xF0) {
            cp = p[i] & 0x07, n = 4, least = 0x10000;
        } else
            goto bad_utf8;
        if (n > len - i)
            goto bad_utf8;
        for (size_t j = 1; j < n; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                goto bad_utf8;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if (cp < least || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            goto bad_utf8;
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0xFEFF || cp == 0xFFFE
            || cp == 0xFFFF) {
            snprintf(msg, msglen, "contains a control character");
            return -1;
        }
        i += n;
    }
    return 0;
bad_utf8:
    snprintf(msg, msglen, "is not valid UTF-8");
    return -1;
}

/* A node name goes into log lines, metrics and mesh messages unquoted. */
static int
s_check_node(const char *value, char *msg, size_t msglen)
{
    size_t len = strlen(value);
    bool ok = len >= 1 && len <= 63;
    for (size_t i = 0; ok && i < len; i++) {
        char c = value[i];
        ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
             || c == '.' || c == '_' || c == '-';
    }
    if (!ok) {
        char echo[S_ECHO + 8];
        snprintf(msg, msglen, "'%s' is not a valid name (1 to 63 of A-Z a-z 0-9 . _ -)",
                 s_echo(value, len, echo, sizeof echo));
        return -1;
    }
    return 0;
}

/* A string value or list item: checked, then copied into *out (caller owns). */
static int
s_parse_string(const s_key_t *k, const char *text, size_t len, char **out, char *msg,
               size_t msglen)
{
    if (s_check_text(text, len, msg, msglen))
        return -1;
    if (k->check && k->check(text, msg, msglen))
        return -1;
    *out = strndup(text, len);
    if (!*out) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    return 0;
}

/* Parses the text of a scalar key into *v. 0 ok; -1 with the problem in msg. */
static int
s_parse(const s_key_t *k, const char *text, size_t len, s_value_t *v, char *msg, size_t msglen)
{
    assert(k->type != S_LIST);
    char echo[S_ECHO + 8];
    s_echo(text, len, echo, sizeof echo);
    if (memchr(text, '\0', len)) {
        snprintf(msg, msglen, "contains a control character");
        return -1;
    }
    switch (k->type) {
    case S_STRING:
        if (len == 0 && !k->def) {
            v->s = NULL; /* unset: the caller works out the default */
            return 0;
        }
        return s_parse_string(k, text, len, &v->s, msg, msglen);
    case S_INT:
    case S_DURATION: {
        int rc = k->type == S_INT ? pm_config_parse_int(text, &v->i)
                                  : pm_parse_duration(text, &v->i);
        if (rc == -1) {
            snprintf(msg, msglen, "'%s' is not %s (e.g. %s)", echo, s_type_noun(k),
                     k->type == S_INT ? "100, 64KiB, 1MiB" : "250ms, 30s, 5m, 2h");
            return -1;
        }
        if (rc < 0 || v->i < k->min || v->i > k->max) {
            char range[80];
            s_format_range(k, range, sizeof range);
            snprintf(msg, msglen, "%s is out of range (%s)", echo, range);
            return -1;
        }
        return 0;
    }
    case S_BOOL:
        if (pm_config_parse_bool(text, &v->b)) {
            snprintf(msg, msglen, "'%s' is not true or false", echo);
            return -1;
        }
        return 0;
    case S_ENUM:
        for (int i = 0; k->words[i]; i++)
            if (strcmp(k->words[i], text) == 0) {
                v->e = i;
                return 0;
            }
        char words[128];
        s_join_words(k, words, sizeof words);
        snprintf(msg, msglen, "'%s' is not one of %s", echo, words);
        return -1;
    case S_LIST:
        break;
    }
    return -1;
}

/* Moves a parsed value into its field. */
static void
s_store(pm_config_t *cfg, const s_key_t *k, s_value_t *v)
{
    switch (k->type) {
    case S_STRING:
        free(*S_FIELD(cfg, k, char *));
        *S_FIELD(cfg, k, char *) = v->s;
        v->s = NULL;
        break;
    case S_INT:
    case S_DURATION: *S_FIELD(cfg, k, int64_t) = v->i; break;
    case S_BOOL: *S_FIELD(cfg, k, bool) = v->b; break;
    case S_ENUM: *S_FIELD(cfg, k, int) = v->e; break;
    case S_LIST: assert(!"lists are not scalars"); break;
    }
}

/* ----------------------------------------------------- struct lifetime */

static void
s_list_clear(pm_config_list_t *list)
{
    for (size_t i = 0; i < list->len; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->len = 0;
}

/* Appends an owned item. 0 ok; -1 out of memory (item not taken). */
static int
s_list_push(pm_config_list_t *list, char *item)
{
    char **items = realloc(list->items, (list->len + 1) * sizeof *items);
    if (!items)
        return -1;
    items[list->len++] = item;
    list->items = items;
    return 0;
}

/* Frees what cfg owns and NULLs it; leaves the scalars. */
static void
s_clear(pm_config_t *cfg)
{
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        if (k->type == S_STRING) {
            free(*S_FIELD(cfg, k, char *));
            *S_FIELD(cfg, k, char *) = NULL;
        } else if (k->type == S_LIST)
            s_list_clear(S_FIELD(cfg, k, pm_config_list_t));
    }
}

/* Deep copy of src into dst. 0 ok; -1 out of memory with dst holding nothing. */
static int
s_copy(pm_config_t *dst, const pm_config_t *src)
{
    *dst = *src;
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        if (k->type == S_STRING)
            *S_FIELD(dst, k, char *) = NULL;
        else if (k->type == S_LIST)
            *S_FIELD(dst, k, pm_config_list_t) = (pm_config_list_t){NULL, 0};
    }
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        if (k->type == S_STRING) {
            const char *s = *S_FIELD(src, k, char *);
            if (s && !(*S_FIELD(dst, k, char *) = strdup(s)))
                goto fail;
        } else if (k->type == S_LIST) {
            const pm_config_list_t *from = S_FIELD(src, k, pm_config_list_t);
            pm_config_list_t *to = S_FIELD(dst, k, pm_config_list_t);
            for (size_t j = 0; j < from->len; j++) {
                char *item = strdup(from->items[j]);
                if (!item || s_list_push(to, item)) {
                    free(item);
                    goto fail;
                }
            }
        }
    }
    return 0;
fail:
    s_clear(dst);
    return -1;
}

pm_config_t *
pm_config_new(void)
{
    pm_config_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        assert(k->type != S_LIST || !k->def);
        if (!k->def)
            continue;
        s_value_t v;
        char msg[256];
        if (s_parse(k, k->def, strlen(k->def), &v, msg, sizeof msg)) {
            /* Defaults are tested; only an allocation can fail here. */
            pm_config_destroy(&self);
            return NULL;
        }
        s_store(self, k, &v);
    }
    return self;
}

void
pm_config_destroy(pm_config_t **self_p)
{
    assert(self_p);
    if (*self_p) {
        s_clear(*self_p);
        free(*self_p);
        *self_p = NULL;
    }
}

/* ------------------------------------------------------------ the file */

/* Reads the whole file into *buf (caller frees). 0 ok; -1 with message. */
static int
s_read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    char *data = malloc(S_MAX_FILE + 1);
    if (!data) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    size_t n = fread(data, 1, S_MAX_FILE + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    if (n > S_MAX_FILE) {
        snprintf(err, errlen, "%s: is larger than %d bytes", path, S_MAX_FILE);
        goto out;
    }
    *buf = data;
    *len = n;
    data = NULL;
    rc = 0;
out:
    free(data);
    fclose(f);
    return rc;
}

/* Formats "path:line:col: key: msg" (key may be NULL) from a 0-based mark. */
static void
s_error_at(char *err, size_t errlen, const char *path, yaml_mark_t mark, const char *key,
           const char *msg)
{
    snprintf(err, errlen, "%s:%zu:%zu: %s%s%s", path, mark.line + 1, mark.column + 1,
             key ? key : "", key ? ": " : "", msg);
}

static void
s_syntax_error(const yaml_parser_t *parser, const char *path, const char *buf, size_t len,
               char *err, size_t errlen)
{
    if (parser->error == YAML_MEMORY_ERROR) {
        snprintf(err, errlen, "%s: out of memory", path);
        return;
    }
    yaml_mark_t mark = parser->problem_mark;
    if (parser->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark: count lines ourselves. */
        memset(&mark, 0, sizeof mark);
        for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
            if (buf[i] == '\n') {
                mark.line++;
                mark.column = 0;
            } else
                mark.column++;
        }
    }
    char msg[256];
    const char *problem = parser->problem ? parser->problem : "malformed YAML";
    if (parser->context)
        snprintf(msg, sizeof msg, "YAML syntax error: %s (%s at %zu:%zu)", problem,
                 parser->context, parser->context_mark.line + 1, parser->context_mark.column + 1);
    else
        snprintf(msg, sizeof msg, "YAML syntax error: %s", problem);
    s_error_at(err, errlen, path, mark, NULL, msg);
}

/* A plain ~, null or nothing: YAML's null. */
static bool
s_is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *) node->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null")
           || !strcmp(s, "NULL");
}

/* Applies one value node to cfg. 0 ok; -1 with msg and *at set to where the problem is. */
static int
s_load_value(pm_config_t *cfg, yaml_document_t *doc, const s_key_t *k, yaml_node_t *node,
             char *msg, size_t msglen, yaml_mark_t *at)
{
    *at = node->start_mark;
    if (k->type == S_LIST) {
        pm_config_list_t list = {NULL, 0};
        if (s_is_null(node))
            goto replace; /* "seeds:" alone is an empty list */
        if (node->type != YAML_SEQUENCE_NODE) {
            snprintf(msg, msglen, "expected a list, got %s", s_node_noun(node));
            return -1;
        }
        size_t n = 0;
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            yaml_node_t *item = yaml_document_get_node(doc, *it);
            char sub[200];
            char *text = NULL;
            *at = item->start_mark;
            n++;
            if (item->type != YAML_SCALAR_NODE)
                snprintf(sub, sizeof sub, "is %s, expected a string", s_node_noun(item));
            else if (s_is_null(item) || item->data.scalar.length == 0)
                snprintf(sub, sizeof sub, "is empty");
            else if (!s_parse_string(k, (const char *) item->data.scalar.value,
                                     item->data.scalar.length, &text, sub, sizeof sub)) {
                if (!s_list_push(&list, text))
                    continue;
                free(text);
                snprintf(sub, sizeof sub, "out of memory");
            }
            snprintf(msg, msglen, "item %zu %s", n, sub);
            s_list_clear(&list);
            return -1;
        }
    replace:
        s_list_clear(S_FIELD(cfg, k, pm_config_list_t));
        *S_FIELD(cfg, k, pm_config_list_t) = list;
        return 0;
    }
    if (node->type != YAML_SCALAR_NODE) {
        snprintf(msg, msglen, "expected %s, got %s", s_type_noun(k), s_node_noun(node));
        return -1;
    }
    s_value_t v;
    if (s_is_null(node)) {
        if (k->type != S_STRING || k->def) {
            snprintf(msg, msglen, "missing value; expected %s", s_type_noun(k));
            return -1;
        }
        v.s = NULL;
    } else if (s_parse(k, (const char *) node->data.scalar.value, node->data.scalar.length, &v,
                       msg, msglen))
        return -1;
    s_store(cfg, k, &v);
    return 0;
}

static int
s_load_mapping(pm_config_t *cfg, yaml_document_t *doc, yaml_node_t *root, const char *path,
               char *err, size_t errlen)
{
    size_t first_line[S_NKEYS];
    uint64_t seen = 0;
    char msg[256], echo[S_ECHO + 8];
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(doc, pair->value);
        if (kn->type != YAML_SCALAR_NODE) {
            snprintf(msg, sizeof msg, "a key must be a word, got %s", s_node_noun(kn));
            s_error_at(err, errlen, path, kn->start_mark, NULL, msg);
            return -1;
        }
        const char *name = (const char *) kn->data.scalar.value;
        size_t len = kn->data.scalar.length;
        const s_key_t *k = s_find(name, len);
        if (!k) {
            const s_key_t *near = s_find_loose(name, len, true);
            if (near)
                snprintf(msg, sizeof msg, "unknown key (did you mean %s?)", near->key);
            else
                snprintf(msg, sizeof msg, "unknown key");
            s_error_at(err, errlen, path, kn->start_mark, s_echo(name, len, echo, sizeof echo),
                       msg);
            return -1;
        }
        size_t i = (size_t) (k - s_keys);
        if (seen & (UINT64_C(1) << i)) {
            snprintf(msg, sizeof msg, "duplicate key (first at line %zu)", first_line[i] + 1);
            s_error_at(err, errlen, path, kn->start_mark, k->key, msg);
            return -1;
        }
        seen |= UINT64_C(1) << i;
        first_line[i] = kn->start_mark.line;
        yaml_mark_t at;
        if (s_load_value(cfg, doc, k, vn, msg, sizeof msg, &at)) {
            s_error_at(err, errlen, path, at, k->key, msg);
            return -1;
        }
    }
    return 0;
}

int
pm_config_load(pm_config_t *self, const char *path, char *err, size_t errlen)
{
    assert(self && path && err);
    int rc = -1;
    char *buf = NULL;
    size_t len = 0;
    yaml_parser_t parser;
    yaml_document_t doc;
    pm_config_t tmp;
    bool parser_ok = false, doc_ok = false, tmp_ok = false;

    if (s_read_file(path, &buf, &len, err, errlen))
        goto out;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    parser_ok = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *) buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        s_syntax_error(&parser, path, buf, len, err, errlen);
        goto out;
    }
    doc_ok = true;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            s_syntax_error(&parser, path, buf, len, err, errlen);
            goto out;
        }
        yaml_node_t *extra = yaml_document_get_root_node(&next);
        yaml_mark_t mark = extra ? extra->start_mark : next.start_mark;
        yaml_document_delete(&next);
        if (extra) {
            s_error_at(err, errlen, path, mark, NULL, "only one YAML document is allowed");
            goto out;
        }
    }
    if (s_copy(&tmp, self)) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    tmp_ok = true;
    if (root && !s_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            char msg[128];
            snprintf(msg, sizeof msg, "the top level must be a mapping of key: value, got %s",
                     s_node_noun(root));
            s_error_at(err, errlen, path, root->start_mark, NULL, msg);
            goto out;
        }
        if (s_load_mapping(&tmp, &doc, root, path, err, errlen))
            goto out;
    }
    s_clear(self);
    *self = tmp;
    tmp_ok = false;
    rc = 0;
out:
    if (tmp_ok)
        s_clear(&tmp);
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    free(buf);
    return rc;
}

/* ----------------------------------------------------------- the flags */

int
pm_config_set(pm_config_t *self, const char *key, const char *value, char *err, size_t errlen)
{
    assert(self && key && err);
    char flag[S_MAX_KEY + 8], msg[256];
    const s_key_t *k = s_find_loose(key, strlen(key), false);
    if (!k) {
        char echo[S_ECHO + 8];
        s_flag_name(s_echo(key, strlen(key), echo, sizeof echo), flag, sizeof flag);
        snprintf(err, errlen, "%s: unknown key", flag);
        return -1;
    }
    s_flag_name(k->key, flag, sizeof flag);
    uint64_t bit = UINT64_C(1) << (k - s_keys);
    if (!value) {
        if (k->type != S_BOOL) {
            snprintf(err, errlen, "%s: missing value; expected %s", flag, s_type_noun(k));
            return -1;
        }
        value = "true";
    }
    size_t len = strlen(value);
    if (k->type == S_LIST) {
        pm_config_list_t *list = S_FIELD(self, k, pm_config_list_t);
        char *item = NULL;
        if (len > 0 && s_parse_string(k, value, len, &item, msg, sizeof msg)) {
            snprintf(err, errlen, "%s: %s", flag, msg);
            return -1;
        }
        if (!(self->set_by_flag & bit) || !item) {
            /* The flags' list replaces the file's; an empty value clears it. */
            pm_config_list_t fresh = {NULL, 0};
            if (item && s_list_push(&fresh, item))
                goto oom;
            s_list_clear(list);
            *list = fresh;
        } else if (s_list_push(list, item))
            goto oom;
        self->set_by_flag |= bit;
        return 0;
    oom:
        free(item);
        snprintf(err, errlen, "%s: out of memory", flag);
        return -1;
    }
    s_value_t v;
    if (s_parse(k, value, len, &v, msg, sizeof msg)) {
        snprintf(err, errlen, "%s: %s", flag, msg);
        return -1;
    }
    s_store(self, k, &v);
    self->set_by_flag |= bit;
    return 0;
}

int
pm_config_is_key(const char *key)
{
    return key && s_find_loose(key, strlen(key), false) != NULL;
}

int
pm_config_key_takes_value(const char *key)
{
    const s_key_t *k = key ? s_find_loose(key, strlen(key), false) : NULL;
    return k && k->type != S_BOOL;
}

/* --------------------------------------------------- printing and help */

/* Double-quoted YAML; s_check_text let no control character in, so only
 * the quote and the backslash need escaping. */
static void
s_print_quoted(const char *s, FILE *out)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

void
pm_config_print(const pm_config_t *self, FILE *out)
{
    assert(self && out);
    fprintf(out, "# pmesh agent configuration (pmeshd); every key can also be a --flag\n");
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        char about[160], buf[64];
        s_describe(k, about, sizeof about);
        fprintf(out, "\n# %s%s%s%s\n%s:", k->doc, *about ? " (" : "", about, *about ? ")" : "",
                k->key);
        switch (k->type) {
        case S_STRING: {
            const char *s = *S_FIELD(self, k, char *const);
            if (s) {
                fputc(' ', out);
                s_print_quoted(s, out);
                fputc('\n', out);
            } else
                fprintf(out, " null\n");
            break;
        }
        case S_INT: fprintf(out, " %" PRId64 "\n", *S_FIELD(self, k, const int64_t)); break;
        case S_DURATION:
            s_format_duration(*S_FIELD(self, k, const int64_t), buf, sizeof buf);
            fprintf(out, " %s\n", buf);
            break;
        case S_BOOL: fprintf(out, " %s\n", *S_FIELD(self, k, const bool) ? "true" : "false"); break;
        case S_ENUM: fprintf(out, " %s\n", k->words[*S_FIELD(self, k, const int)]); break;
        case S_LIST: {
            const pm_config_list_t *list = S_FIELD(self, k, const pm_config_list_t);
            if (list->len == 0)
                fprintf(out, " []\n");
            else
                fputc('\n', out);
            for (size_t j = 0; j < list->len; j++) {
                fprintf(out, "  - ");
                s_print_quoted(list->items[j], out);
                fputc('\n', out);
            }
            break;
        }
        }
    }
}

static void
s_help_left(const s_key_t *k, char *buf, size_t buflen)
{
    char flag[S_MAX_KEY + 8], meta[128];
    s_flag_name(k->key, flag, sizeof flag);
    switch (k->type) {
    case S_STRING:
    case S_LIST: snprintf(meta, sizeof meta, "%s", k->meta ? k->meta : "STRING"); break;
    case S_INT: snprintf(meta, sizeof meta, "%s", k->meta ? k->meta : "N"); break;
    case S_DURATION: snprintf(meta, sizeof meta, "%s", k->meta ? k->meta : "DURATION"); break;
    case S_BOOL: snprintf(meta, sizeof meta, "[true|false]"); break;
    case S_ENUM: s_join_words(k, meta, sizeof meta); break;
    }
    snprintf(buf, buflen, "%s %s", flag, meta);
}

void
pm_config_help(FILE *out)
{
    assert(out);
    char left[200], about[160];
    int width = 0;
    for (size_t i = 0; i < S_NKEYS; i++) {
        s_help_left(&s_keys[i], left, sizeof left);
        if ((int) strlen(left) > width)
            width = (int) strlen(left);
    }
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        s_help_left(k, left, sizeof left);
        s_describe(k, about, sizeof about);
        fprintf(out, "  %-*s  %s%s%s%s\n", width, left, k->doc, *about ? " (" : "", about,
                *about ? ")" : "");
    }
}

/* ------------------------------------------------------------- parsers */

int
pm_config_parse_int(const char *text, int64_t *out)
{
    assert(text && out);
    const char *p = text;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (*p < '0' || *p > '9')
        return -1;
    uint64_t n = 0;
    bool big = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned) (*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            big = true;
        else
            n = n * 10 + d;
    }
    const char *unit_at = p;
    while (*p == ' ')
        p++;
    static const struct {
        const char *name;
        uint64_t size;
    } units[] = {{"", 1}, {"KiB", UINT64_C(1) << 10}, {"MiB", UINT64_C(1) << 20},
                 {"GiB", UINT64_C(1) << 30}, {"TiB", UINT64_C(1) << 40}};
    uint64_t unit = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(p, units[i].name) == 0)
            unit = units[i].size;
    if (unit == 0 || (unit == 1 && p != unit_at))
        return -1; /* unknown unit, or trailing spaces with no unit */
    uint64_t limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
    if (big || n > limit / unit)
        return -2;
    n *= unit;
    *out = neg ? (n == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) n) : (int64_t) n;
    return 0;
}

int
pm_config_parse_bool(const char *text, bool *out)
{
    assert(text && out);
    if (strcmp(text, "true") == 0)
        *out = true;
    else if (strcmp(text, "false") == 0)
        *out = false;
    else
        return -1;
    return 0;
}
