/*
 * config_keys.c - the table of the agent's configuration keys (config_priv.h):
 * for each, its type, where it goes in pm_config_t, its default, its range
 * and its --help text. config.c drives parsing, defaults, --help and
 * printing from it.
 */
#include "config_priv.h"
#include "pmesh.h"

#define s_check_node pm_config_check_node

/* Same order and numbers as enum pm_log_level and enum pm_log_format in log.h. */
static const char *const s_log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const s_log_formats[] = {"text", "json", NULL};
/* Same order and numbers as pm_fsync_mode_t in wal.h. */
static const char *const s_fsync_modes[] = {"always", "batch", "never", NULL};
static const char *const s_fanin_copies[] = {"decisive", "every", NULL};

#define S_AT(field) offsetof(pm_config_t, field)

const s_key_t pm_config_keys[] = {
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
    /* 10 s: a reply held until its change is durable here and on the
     * in-sync backups is answered UNAVAILABLE ("may or may not have
     * happened") when that takes longer, rather than never: a backup cut off
     * while the configuration store cannot record the smaller set (pmesh-sim
     * seed 1535) would otherwise hold it for as long as both last. */
    {.key = "held_reply_timeout", .type = S_DURATION, .offset = S_AT(held_reply_timeout),
     .def = "10s", .min = 100, .max = 600000,
     .doc = "how long a reply may wait for its change to be durable on the backups before "
            "it is answered UNAVAILABLE (the change may or may not have happened)"},
    /* 500 ms: a subscription whose request or waiter was lost (a cut link,
     * an owner that took us for dead) is back within half a second. An owner
     * does not answer a repeat within max(2 x this period, 1 s) of its answer
     * again (waiters.c): how long a lost answer may wait for a resend. */
    {.key = "sub_resend", .type = S_DURATION, .offset = S_AT(sub_resend), .def = "500ms",
     .min = 10, .max = 60000,
     .doc = "an await or combinator input on another member's promise is sent again this "
            "often until its owner answers; the owner answers a repeat at most once per "
            "max(2 x this, 1s)"},
    /* 10 s: a pipelined then or create that mints an input can reach the
     * input's owner after the combinator's subscription (a takeover parks
     * both and sends them again in no particular order). Past this wait the
     * combinator asks the owner for a final answer (fanins.c). */
    {.key = "fanin_not_found_wait", .type = S_DURATION, .offset = S_AT(fanin_not_found_wait),
     .def = "10s", .min = 1, .max = 3600000,
     .doc = "how long a combinator waits for an input that does not exist (yet) before its "
            "owner records it as rejected NOT_FOUND, for good"},
    /* true: an input's owner sends a combinator's agent the outcome at once
     * (marked tentative) as well as once durable, and the combinator's
     * continuation starts on it; its result still waits for the durable
     * answers (fanins.c, place.c). One more mesh message per input. */
    {.key = "fanin_early", .type = S_BOOL, .offset = S_AT(fanin_early), .def = "true",
     .doc = "start a combinator's continuation on its inputs' outcomes before they are "
            "durable (its result waits until they are); false: one mesh message per input, "
            "the continuation starts one replication round trip later"},
    /* decisive: an input's owner sends an early copy only of the outcomes
     * that would decide the combinator (a failure for all, a resolve for
     * any, every one for race and for the input it waits for last):
     * about one settlement message per input. every: of every outcome of
     * every input, two messages each, but early starts also when the last
     * inputs settle within a replication round trip of each other. */
    {.key = "fanin_early_copies", .type = S_ENUM, .offset = S_AT(fanin_early_copies),
     .def = "decisive", .words = s_fanin_copies,
     .doc = "with fanin_early, which outcomes an input's owner sends early: decisive (those "
            "that would decide the combinator, and every one of the input it waits for last: "
            "one message per input plus one) or every (two messages per input)"},
    /* true: an invocation placed on a member carries the continuations
     * chained after its target; the member starts each on the previous
     * one's result if one of its workers serves it (place.c). */
    {.key = "chain_forward", .type = S_BOOL, .offset = S_AT(chain_forward), .def = "true",
     .doc = "hand the continuations chained after an invocation's target on with it, so the "
            "member running it starts the next step on its result without a round trip to "
            "the owner (results still settle only through the owner)"},
    /* true: what one turn of the agent's loop sends one peer leaves as one
     * frame (mesh/outbox.c). */
    {.key = "mesh_batch", .type = S_BOOL, .offset = S_AT(mesh_batch), .def = "true",
     .doc = "send what one turn of the agent's loop has for a peer as one frame (fewer "
            "messages, encryptions and wake-ups under load; nothing waits for a timer)"},
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

const size_t pm_config_nkeys = sizeof pm_config_keys / sizeof pm_config_keys[0];
_Static_assert(sizeof pm_config_keys / sizeof pm_config_keys[0] <= 64,
               "set_by_flag has one bit per key");
