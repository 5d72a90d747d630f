/*
 * cli.c - the `pmesh` command.
 *
 * A thin shell over libpmesh: each subcommand connects to the local agent,
 * makes one or two blocking calls and maps the outcome to an exit code that
 * scripts can rely on (see s_usage_text). `pmesh worker` is the one long-lived
 * subcommand: it serves functions by running a command per invocation, with
 * one zmq_poll loop over the worker socket, a self-pipe for signals and the
 * pipes of every running child. It owns those children and nothing else.
 *
 * Nothing but the documented output goes to stdout.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "pjson.h"

#include <jansson.h>
#include "pmesh.h"

extern char **environ;

/* Exit codes are part of the contract; 64 and 69 come from sysexits.h so
 * that they mean what they mean elsewhere. */
#define S_EXIT_OK 0
#define S_EXIT_REFUSED 1   /* promise rejected/canceled/timed out, or the agent refused */
#define S_EXIT_PENDING 2   /* await --timeout elapsed, the promise is still pending */
#define S_EXIT_USAGE EX_USAGE             /* 64 */
#define S_EXIT_UNREACHABLE EX_UNAVAILABLE /* 69 */

/* A worker child may print at most this much as its result. The agent has its
 * own, smaller limit (max_value_bytes) and answers VALUE_TOO_LARGE; this one
 * only keeps a runaway command from eating the worker's memory. */
#define S_MAX_OUTPUT (256u * 1024 * 1024)
/* Only this much of a child's stderr is kept as the rejection reason: a
 * reason is for a person to read, not a second output channel. */
#define S_MAX_REASON (64u * 1024)
/* Upper bound on --concurrency: one pipe triple per child must fit in the
 * process's file descriptor budget with room to spare. */
#define S_MAX_CONCURRENCY 256
/* The worker loop wakes at least this often: the library learns that the
 * agent went away on a socket monitor we cannot poll, and only acts on it
 * (reconnects) when we call pm_worker_next; within a second is soon enough. */
#define S_TICK_MS 1000
/* While the agent is away there is no socket to wait on: the loop wakes this
 * often so the library can reconnect as soon as its backoff allows. */
#define S_RECONNECT_TICK_MS 50

static const char *s_socket; /* --socket; NULL lets the library pick */
static bool s_verbose;

static const char s_usage_text[] =
    "usage: pmesh [--socket PATH] COMMAND [ARGS]\n"
    "  create [--timeout DUR] [--heartbeat DUR] [--key KEY] [--label K=V]... [--token]\n"
    "         [--token-ttl DUR]    print the new id (--token: and its settle token below,\n"
    "                              refused after --token-ttl if given)\n"
    "  resolve ID [VALUE]          settle with VALUE (no VALUE: the bytes on stdin)\n"
    "  reject ID [REASON]\n"
    "  cancel ID\n"
    "  heartbeat ID\n"
    "  get ID                      print the promise as one line of JSON\n"
    "  await ID [--timeout DUR]    print the value once the promise resolves\n"
    "  then ID FUNCTION [--timeout DUR] [--on-reject FUNCTION]\n"
    "                              chain FUNCTION on ID (--on-reject: run that one with\n"
    "                              ID's reason if ID fails); print the new id\n"
    "  all|any|race|all-settled ID... [--timeout DUR]\n"
    "                              a promise settled by the IDs (a combinator); print its id\n"
    "  list [--state S] [--prefix P] [--label K=V] [--limit N] [--cursor C]\n"
    "  worker FUNCTION[,FUNCTION..] [--concurrency N] [-v] -- CMD [ARG...]\n"
    "  status                      print the agent's status as JSON\n"
    "  members [--json]            print the mesh members as a table (or JSON)\n"
    "  space force-owner SPACE --accept-data-loss\n"
    "                              make this agent the owner of id space SPACE in the\n"
    "                              configuration store although it is not in sync: what\n"
    "                              the lost owner acknowledged and this agent lacks is lost\n"
    "  --help | --version\n"
    "Options may follow the arguments; put -- before a VALUE or REASON that starts with -.\n"
    "DUR is 250ms, 30s, 5m or 2h. The socket is --socket, else $PMESH_SOCKET, else\n"
    PMESH_DEFAULT_SOCKET ".\n"
    "Exit: 0 ok; 1 rejected/canceled/timed out or refused; 2 await timed out while\n"
    "pending; 64 usage; 69 agent unreachable.\n";

/* ---- small helpers -------------------------------------------------------- */

static int
s_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pmesh: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    va_end(ap);
    fputs(s_usage_text, stderr);
    return S_EXIT_USAGE;
}

static int
s_exit_code(int err)
{
    switch (err) {
    case PM_OK:
        return S_EXIT_OK;
    case PM_ERR_WAIT_TIMEOUT:
        return S_EXIT_PENDING;
    case PM_ERR_UNREACHABLE:
        return S_EXIT_UNREACHABLE;
    default:
        return S_EXIT_REFUSED;
    }
}

/* Prints "pmesh: NAME: message" for a failed call and returns its exit code. */
static int
s_fail(pm_client_t *client, int err)
{
    const char *msg = client ? pm_client_last_error(client) : NULL;
    if (!msg || !*msg)
        msg = pm_strerror(err);
    fprintf(stderr, "pmesh: %s: %s\n", pm_err_name(err), msg);
    return s_exit_code(err);
}

static const char *
s_socket_shown(void)
{
    if (s_socket)
        return s_socket;
    const char *env = getenv("PMESH_SOCKET");
    return env && *env ? env : PMESH_DEFAULT_SOCKET;
}

/* Connects or prints why not; returns 0 or an exit code. */
static int
s_connect(pm_client_t **client_p)
{
    int rc = pm_client_connect(s_socket, client_p);
    if (rc == PM_OK)
        return 0;
    fprintf(stderr, "pmesh: %s: cannot talk to the agent at %s: %s\n", pm_err_name(rc),
            s_socket_shown(), pm_strerror(rc));
    return s_exit_code(rc);
}

static int
s_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

/* Prints a line to stdout; returns an exit code. */
static int
s_print_line(const char *text)
{
    if (!text)
        return S_EXIT_REFUSED;
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == '\n')
        len--;
    if (s_write_all(STDOUT_FILENO, text, len) != 0 || s_write_all(STDOUT_FILENO, "\n", 1) != 0) {
        fprintf(stderr, "pmesh: cannot write to stdout: %s\n", strerror(errno));
        return S_EXIT_REFUSED;
    }
    return S_EXIT_OK;
}

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} s_buf_t;

static int
s_buf_append(s_buf_t *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown)
            return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static void
s_buf_free(s_buf_t *b)
{
    free(b->data);
    *b = (s_buf_t) { 0 };
}

/* ---- argument parsing ------------------------------------------------------
 * Options may come before or after positional arguments; "--" ends options
 * (for `worker`, what follows is the command). Both "--opt VALUE" and
 * "--opt=VALUE" work. */

typedef struct {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 if none */
    bool takes_value;
} s_spec_t;

typedef struct {
    const char *name;
    char *value;
} s_opt_t;

typedef struct {
    int pos_count;
    char **pos;
    int opt_count;
    s_opt_t *opts;
    bool has_rest; /* a "--" was seen */
    int rest_count;
    char **rest;
} s_args_t;

/* Options every subcommand accepts. */
#define S_COMMON_SPECS { "socket", 0, true }, { "help", 'h', false }

static void
s_args_free(s_args_t *a)
{
    free(a->pos);
    free(a->opts);
    *a = (s_args_t) { 0 };
}

/* Returns 0, or prints what is wrong and returns S_EXIT_USAGE. After "--",
 * arguments are positional, or (rest_is_command) a command line kept apart. */
static int
s_parse(int argc, char **argv, const s_spec_t *specs, bool rest_is_command, s_args_t *a)
{
    *a = (s_args_t) { 0 };
    a->pos = calloc((size_t) argc + 1, sizeof *a->pos);
    a->opts = calloc((size_t) argc + 1, sizeof *a->opts);
    if (!a->pos || !a->opts) {
        s_args_free(a);
        fputs("pmesh: out of memory\n", stderr);
        return S_EXIT_REFUSED;
    }
    for (int i = 0; i < argc; i++) {
        char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            a->has_rest = true;
            a->rest = argv + i + 1;
            a->rest_count = argc - i - 1;
            if (!rest_is_command)
                for (int k = i + 1; k < argc; k++)
                    a->pos[a->pos_count++] = argv[k];
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            a->pos[a->pos_count++] = arg;
            continue;
        }
        const s_spec_t *spec = NULL;
        char *value = NULL;
        if (arg[1] == '-') {
            const char *name = arg + 2;
            char *eq = strchr(name, '=');
            size_t name_len = eq ? (size_t) (eq - name) : strlen(name);
            for (const s_spec_t *s = specs; s->name; s++)
                if (strlen(s->name) == name_len && strncmp(s->name, name, name_len) == 0)
                    spec = s;
            if (spec && eq) {
                if (!spec->takes_value) {
                    s_args_free(a);
                    return s_usage_error("option --%s takes no value", spec->name);
                }
                value = eq + 1;
            }
        } else if (arg[2] == '\0') {
            for (const s_spec_t *s = specs; s->name; s++)
                if (s->short_name && s->short_name == arg[1])
                    spec = s;
        }
        if (!spec) {
            s_args_free(a);
            return s_usage_error("unknown option %s", arg);
        }
        if (spec->takes_value && !value) {
            if (i + 1 >= argc) {
                s_args_free(a);
                return s_usage_error("option --%s needs a value", spec->name);
            }
            value = argv[++i];
        }
        a->opts[a->opt_count++] = (s_opt_t) { spec->name, value };
    }
    return 0;
}

/* The last value given for an option, or NULL. */
static char *
s_opt(const s_args_t *a, const char *name)
{
    char *value = NULL;
    for (int i = 0; i < a->opt_count; i++)
        if (strcmp(a->opts[i].name, name) == 0)
            value = a->opts[i].value ? a->opts[i].value : "";
    return value;
}

static int
s_opt_count(const s_args_t *a, const char *name)
{
    int n = 0;
    for (int i = 0; i < a->opt_count; i++)
        n += strcmp(a->opts[i].name, name) == 0;
    return n;
}

/* Handles the options every subcommand shares and checks the positional
 * count. Returns -1 to go on, or an exit code. */
static int
s_common(const char *cmd, const s_args_t *a, int min_pos, int max_pos)
{
    if (s_opt(a, "help")) {
        fputs(s_usage_text, stdout);
        return S_EXIT_OK;
    }
    char *socket = s_opt(a, "socket");
    if (socket) {
        if (!*socket)
            return s_usage_error("--socket needs a path");
        s_socket = socket;
    }
    if (a->pos_count < min_pos)
        return s_usage_error("%s: missing argument", cmd);
    if (a->pos_count > max_pos)
        return s_usage_error("%s: unexpected argument '%s'", cmd, a->pos[max_pos]);
    if (a->pos_count > 0 && !*a->pos[0])
        return s_usage_error("%s: empty id or function", cmd);
    return -1;
}

/* Parses a --DUR option into *ms (left alone if the option is absent).
 * Returns -1 to go on, or S_EXIT_USAGE. */
static int
s_duration_opt(const s_args_t *a, const char *name, int64_t *ms)
{
    const char *text = s_opt(a, name);
    if (!text)
        return -1;
    int64_t v;
    if (pm_parse_duration(text, &v) != 0 || v < 0)
        return s_usage_error("--%s: bad duration '%s' (use 250ms, 30s, 5m, 2h)", name, text);
    *ms = v;
    return -1;
}

/* Splits "K=V" in place. Returns 0, or -1 if there is no '=' or K is empty. */
static int
s_split_label(char *text, pm_label_t *label)
{
    char *eq = strchr(text, '=');
    if (!eq || eq == text)
        return -1;
    *eq = '\0';
    label->key = text;
    label->value = eq + 1;
    return 0;
}

static int
s_parse_uint(const char *text, unsigned long max, unsigned long *out)
{
    if (!text || !*text || *text == '-' || *text == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || *end || v == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* ---- one-shot subcommands --------------------------------------------------- */

static int
s_cmd_create(int argc, char **argv)
{
    static const s_spec_t specs[] = {
        S_COMMON_SPECS,          { "timeout", 0, true }, { "heartbeat", 0, true },
        { "key", 0, true },      { "label", 0, true },   { "token", 0, false },
        { "token-ttl", 0, true }, { NULL, 0, false },
    };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_create_opts_t opts = { 0 };
    char *token = NULL;
    if (s_opt(&a, "token"))
        opts.token_p = &token;
    pm_label_t *labels = NULL;
    pm_client_t *client = NULL;
    char *id = NULL;
    if ((rc = s_common("create", &a, 0, 0)) >= 0)
        goto out;
    if ((rc = s_duration_opt(&a, "timeout", &opts.timeout_ms)) >= 0)
        goto out;
    if ((rc = s_duration_opt(&a, "heartbeat", &opts.heartbeat_ms)) >= 0)
        goto out;
    if ((rc = s_duration_opt(&a, "token-ttl", &opts.token_ttl_ms)) >= 0)
        goto out;
    if (opts.token_ttl_ms && !opts.token_p) {
        rc = s_usage_error("create: --token-ttl needs --token");
        goto out;
    }
    opts.idempotency_key = s_opt(&a, "key");
    if (opts.idempotency_key && !*opts.idempotency_key) {
        rc = s_usage_error("create: --key needs a value");
        goto out;
    }
    labels = calloc((size_t) a.opt_count + 1, sizeof *labels);
    if (!labels) {
        rc = s_fail(NULL, PM_ERR_INTERNAL);
        goto out;
    }
    for (int i = 0; i < a.opt_count; i++) {
        if (strcmp(a.opts[i].name, "label") != 0)
            continue;
        if (s_split_label(a.opts[i].value, &labels[opts.label_count]) != 0) {
            rc = s_usage_error("create: bad label '%s' (use KEY=VALUE)", a.opts[i].value);
            goto out;
        }
        opts.label_count++;
    }
    opts.labels = labels;
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err = pm_create(client, &opts, &id, NULL);
    if (err == PM_OK && opts.token_p && !token) {
        /* The promise exists; say why there is no token rather than print
         * half of what was asked for. */
        fprintf(stderr, "pmesh: create: %s was created, but the agent has no token secret "
                        "(token_secret_file) to make a settle token\n", id);
        rc = S_EXIT_REFUSED;
    } else if (err == PM_OK) {
        rc = s_print_line(id);
        if (rc == S_EXIT_OK && token)
            rc = s_print_line(token); /* second line: the settle token */
    } else {
        rc = s_fail(client, err);
    }
out:
    free(token);
    free(id);
    pm_client_destroy(&client);
    free(labels);
    s_args_free(&a);
    return rc;
}

/* resolve, reject, cancel, heartbeat: no output, exit code says it all. */
static int
s_cmd_settle(const char *cmd, int argc, char **argv)
{
    static const s_spec_t specs[] = { S_COMMON_SPECS, { NULL, 0, false } };
    bool with_arg = strcmp(cmd, "resolve") == 0 || strcmp(cmd, "reject") == 0;
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_client_t *client = NULL;
    s_buf_t input = { 0 };
    if ((rc = s_common(cmd, &a, 1, with_arg ? 2 : 1)) >= 0)
        goto out;
    const char *id = a.pos[0];
    const char *arg = a.pos_count > 1 ? a.pos[1] : NULL;
    if (strcmp(cmd, "resolve") == 0 && !arg) {
        /* Read the value before connecting: a slow producer on stdin must not
         * hold a session open on the agent. */
        char chunk[65536];
        for (;;) {
            ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                fprintf(stderr, "pmesh: resolve: cannot read stdin: %s\n", strerror(errno));
                rc = S_EXIT_REFUSED;
                goto out;
            }
            if (n == 0)
                break;
            if (s_buf_append(&input, chunk, (size_t) n) != 0) {
                rc = s_fail(NULL, PM_ERR_INTERNAL);
                goto out;
            }
        }
    }
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err;
    if (strcmp(cmd, "resolve") == 0)
        err = arg ? pm_resolve(client, id, arg, strlen(arg))
                  : pm_resolve(client, id, input.data ? input.data : "", input.len);
    else if (strcmp(cmd, "reject") == 0)
        err = pm_reject(client, id, arg ? arg : "");
    else if (strcmp(cmd, "cancel") == 0)
        err = pm_cancel(client, id);
    else
        err = pm_heartbeat(client, id);
    rc = err == PM_OK ? S_EXIT_OK : s_fail(client, err);
out:
    s_buf_free(&input);
    pm_client_destroy(&client);
    s_args_free(&a);
    return rc;
}

static int
s_cmd_get(int argc, char **argv)
{
    static const s_spec_t specs[] = { S_COMMON_SPECS, { NULL, 0, false } };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_client_t *client = NULL;
    pm_promise_t *p = NULL;
    char *json = NULL;
    if ((rc = s_common("get", &a, 1, 1)) >= 0)
        goto out;
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err = pm_get(client, a.pos[0], &p);
    if (err != PM_OK) {
        rc = s_fail(client, err);
        goto out;
    }
    json = pm_promise_to_json(p);
    rc = s_print_line(json);
out:
    free(json);
    pm_promise_destroy(&p);
    pm_client_destroy(&client);
    s_args_free(&a);
    return rc;
}

static void
s_print_state_reason(const pm_promise_t *p)
{
    char state[32];
    snprintf(state, sizeof state, "%s", pm_state_name(p->state));
    for (char *c = state; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char) (*c - 'a' + 'A');
    if (p->reason && *p->reason)
        fprintf(stderr, "%s: %s\n", state, p->reason);
    else
        fprintf(stderr, "%s\n", state);
}

static int
s_cmd_await(int argc, char **argv)
{
    static const s_spec_t specs[] = { S_COMMON_SPECS, { "timeout", 0, true },
                                      { NULL, 0, false } };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_client_t *client = NULL;
    pm_promise_t *p = NULL;
    int64_t timeout_ms = -1;
    if ((rc = s_common("await", &a, 1, 1)) >= 0)
        goto out;
    if ((rc = s_duration_opt(&a, "timeout", &timeout_ms)) >= 0)
        goto out;
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err = pm_await(client, a.pos[0], timeout_ms, &p);
    if (err == PM_ERR_WAIT_TIMEOUT) {
        fprintf(stderr, "pmesh: WAIT_TIMEOUT: %s is still pending after %s\n", a.pos[0],
                s_opt(&a, "timeout") ? s_opt(&a, "timeout") : "the wait");
        rc = S_EXIT_PENDING;
        goto out;
    }
    if (err != PM_OK || !p) {
        rc = s_fail(client, err != PM_OK ? err : PM_ERR_INTERNAL);
        goto out;
    }
    if (p->state == PM_STATE_RESOLVED) {
        if (s_write_all(STDOUT_FILENO, p->value ? (const void *) p->value : "", p->value_len)
            != 0) {
            fprintf(stderr, "pmesh: cannot write to stdout: %s\n", strerror(errno));
            rc = S_EXIT_REFUSED;
        } else
            rc = S_EXIT_OK;
    } else if (p->state == PM_STATE_PENDING) {
        /* The agent answered an await with a pending promise: treat it as the
         * wait running out, the only way that can be read. */
        fprintf(stderr, "pmesh: WAIT_TIMEOUT: %s is still pending\n", a.pos[0]);
        rc = S_EXIT_PENDING;
    } else {
        s_print_state_reason(p);
        rc = S_EXIT_REFUSED;
    }
out:
    pm_promise_destroy(&p);
    pm_client_destroy(&client);
    s_args_free(&a);
    return rc;
}

static int
s_cmd_then(int argc, char **argv)
{
    static const s_spec_t specs[] = { S_COMMON_SPECS, { "timeout", 0, true },
                                      { "on-reject", 0, true }, { NULL, 0, false } };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_client_t *client = NULL;
    char *new_id = NULL;
    int64_t timeout_ms = 0;
    if ((rc = s_common("then", &a, 2, 2)) >= 0)
        goto out;
    if (!*a.pos[1]) {
        rc = s_usage_error("then: empty function name");
        goto out;
    }
    const char *on_reject = s_opt(&a, "on-reject");
    if (on_reject && !*on_reject) {
        rc = s_usage_error("then: empty --on-reject function name");
        goto out;
    }
    if ((rc = s_duration_opt(&a, "timeout", &timeout_ms)) >= 0)
        goto out;
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err = pm_then_catch(client, a.pos[0], a.pos[1], on_reject, timeout_ms, &new_id);
    rc = err == PM_OK ? s_print_line(new_id) : s_fail(client, err);
out:
    free(new_id);
    pm_client_destroy(&client);
    s_args_free(&a);
    return rc;
}

/* all | any | race | all-settled ID... [--timeout DUR]: prints the new id. */
static int
s_cmd_combine(const char *cmd, int argc, char **argv)
{
    static const s_spec_t specs[] = { S_COMMON_SPECS, { "timeout", 0, true },
                                      { NULL, 0, false } };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_client_t *client = NULL;
    char *new_id = NULL;
    int64_t timeout_ms = 0;
    if ((rc = s_common(cmd, &a, 1, INT_MAX)) >= 0)
        goto out;
    for (int i = 0; i < a.pos_count; i++)
        if (!*a.pos[i]) {
            rc = s_usage_error("%s: empty id", cmd);
            goto out;
        }
    if ((rc = s_duration_opt(&a, "timeout", &timeout_ms)) >= 0)
        goto out;
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err = pm_combine(client, pm_combinator_parse(cmd), (const char *const *) a.pos,
                         (size_t) a.pos_count, timeout_ms, &new_id);
    rc = err == PM_OK ? s_print_line(new_id) : s_fail(client, err);
out:
    free(new_id);
    pm_client_destroy(&client);
    s_args_free(&a);
    return rc;
}

static int
s_cmd_list(int argc, char **argv)
{
    static const s_spec_t specs[] = {
        S_COMMON_SPECS,         { "state", 0, true }, { "prefix", 0, true },
        { "label", 0, true },   { "limit", 0, true }, { "cursor", 0, true },
        { NULL, 0, false },
    };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_client_t *client = NULL;
    pm_promise_list_t *list = NULL;
    pm_list_opts_t opts = { 0 };
    if ((rc = s_common("list", &a, 0, 0)) >= 0)
        goto out;
    const char *state = s_opt(&a, "state");
    if (state && !(opts.state = pm_state_parse(state))) {
        rc = s_usage_error("list: unknown state '%s'", state);
        goto out;
    }
    opts.prefix = s_opt(&a, "prefix");
    if (s_opt_count(&a, "label") > 1) {
        rc = s_usage_error("list: at most one --label");
        goto out;
    }
    char *label = s_opt(&a, "label");
    if (label) {
        pm_label_t l;
        if (s_split_label(label, &l) != 0) {
            rc = s_usage_error("list: bad label '%s' (use KEY=VALUE)", label);
            goto out;
        }
        opts.label_key = l.key;
        opts.label_value = l.value;
    }
    const char *limit = s_opt(&a, "limit");
    if (limit) {
        unsigned long n;
        if (s_parse_uint(limit, UINT32_MAX, &n) != 0) {
            rc = s_usage_error("list: bad --limit '%s'", limit);
            goto out;
        }
        opts.limit = (uint32_t) n;
    }
    opts.cursor = s_opt(&a, "cursor");
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err = pm_list(client, &opts, &list);
    if (err != PM_OK) {
        rc = s_fail(client, err);
        goto out;
    }
    rc = S_EXIT_OK;
    for (size_t i = 0; i < list->count && rc == S_EXIT_OK; i++) {
        char *json = pm_promise_to_json(list->items[i]);
        rc = s_print_line(json);
        free(json);
    }
    if (rc == S_EXIT_OK && list->cursor && *list->cursor) {
        json_t *obj = json_pack("{s:s}", "cursor", list->cursor);
        char *json = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        rc = s_print_line(json);
        free(json);
        json_decref(obj);
    }
out:
    pm_promise_list_destroy(&list);
    pm_client_destroy(&client);
    s_args_free(&a);
    return rc;
}

static int
s_cmd_status(int argc, char **argv)
{
    static const s_spec_t specs[] = { S_COMMON_SPECS, { NULL, 0, false } };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_client_t *client = NULL;
    char *json = NULL;
    if ((rc = s_common("status", &a, 0, 0)) >= 0)
        goto out;
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err = pm_status(client, &json);
    rc = err == PM_OK ? s_print_line(json) : s_fail(client, err);
out:
    free(json);
    pm_client_destroy(&client);
    s_args_free(&a);
    return rc;
}

/* `pmesh space force-owner SPACE --accept-data-loss`: the operator accepts
 * the loss of what a space's lost owner acknowledged and this agent lacks.
 * The agent at --socket does it (pm_space_force_owner): with its own
 * configuration store client (its TLS settings) it re-reads the record and
 * makes itself the owner at the next epoch with an empty in-sync set (one
 * CAS), serves the space and logs PM-COORD-FORCED. */
static int
s_cmd_space(int argc, char **argv)
{
    static const s_spec_t specs[] = { S_COMMON_SPECS, { "accept-data-loss", 0, false },
                                      { NULL, 0, false } };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_client_t *client = NULL;
    char *json = NULL;
    json_t *res = NULL;
    if ((rc = s_common("space", &a, 2, 2)) >= 0)
        goto out;
    if (strcmp(a.pos[0], "force-owner") != 0) {
        rc = s_usage_error("space: unknown subcommand '%s' (force-owner)", a.pos[0]);
        goto out;
    }
    const char *space = a.pos[1];
    if (!s_opt(&a, "accept-data-loss")) {
        rc = s_usage_error("space force-owner: changes the lost owner of %s acknowledged that "
                           "this agent lacks are lost; say --accept-data-loss", space);
        goto out;
    }
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err = pm_space_force_owner(client, space, 1, &json);
    if (err != PM_OK) {
        const char *msg = pm_client_last_error(client);
        fprintf(stderr, "pmesh: space force-owner: %s: %s\n", pm_err_name(err),
                msg && *msg ? msg : pm_strerror(err));
        rc = s_exit_code(err);
        goto out;
    }
    res = json_loads(json, 0, NULL);
    const char *owner = json_string_value(json_object_get(res, "owner"));
    const char *was = json_string_value(json_object_get(res, "was_owner"));
    fprintf(stderr, "pmesh: FORCED: id space %s is owned by %s at epoch %lld (was %s at epoch "
            "%lld); what that owner acknowledged and %s lacks is lost\n", space,
            owner ? owner : "?", (long long) json_integer_value(json_object_get(res, "epoch")),
            was && *was ? was : "nobody",
            (long long) json_integer_value(json_object_get(res, "was_epoch")),
            owner ? owner : "this agent");
    rc = S_EXIT_OK;
out:
    json_decref(res);
    free(json);
    pm_client_destroy(&client);
    s_args_free(&a);
    return rc;
}

/* `pmesh members`: the member table, one line per member. */
static int
s_cmd_members(int argc, char **argv)
{
    static const s_spec_t specs[] = { S_COMMON_SPECS, { "json", 0, false }, { NULL, 0, false } };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, false, &a);
    if (rc)
        return rc;
    pm_client_t *client = NULL;
    char *json = NULL;
    json_t *arr = NULL;
    if ((rc = s_common("members", &a, 0, 0)) >= 0)
        goto out;
    if ((rc = s_connect(&client)) != 0)
        goto out;
    int err = pm_members(client, &json);
    if (err != PM_OK) {
        rc = s_fail(client, err);
        goto out;
    }
    if (s_opt(&a, "json")) {
        rc = s_print_line(json);
        goto out;
    }
    arr = json_loads(json, 0, NULL);
    if (!json_is_array(arr)) {
        fputs("pmesh: members: the agent sent something that is not a list\n", stderr);
        rc = S_EXIT_REFUSED;
        goto out;
    }
    printf("%-20s %-26s %-8s %14s %11s  %s\n", "NODE", "ENDPOINT", "STATE", "INCARNATION",
           "LAST-HEARD", "FUNCTIONS");
    size_t i;
    json_t *m;
    json_array_foreach(arr, i, m) {
        char heard[32], fns[512] = "";
        json_int_t ago = json_integer_value(json_object_get(m, "last_heard_ms_ago"));
        if (json_is_true(json_object_get(m, "self")))
            snprintf(heard, sizeof heard, "self");
        else if (ago < 0)
            snprintf(heard, sizeof heard, "never");
        else
            snprintf(heard, sizeof heard, "%lldms ago", (long long) ago);
        size_t j;
        json_t *f;
        size_t used = 0;
        json_array_foreach(json_object_get(m, "functions"), j, f) {
            int n = snprintf(fns + used, sizeof fns - used, "%s%s(%lld/%lld)", used ? "," : "",
                             json_string_value(json_object_get(f, "name")),
                             (long long) json_integer_value(json_object_get(f, "free")),
                             (long long) json_integer_value(json_object_get(f, "total")));
            if (n < 0 || (size_t) n >= sizeof fns - used)
                break;
            used += (size_t) n;
        }
        printf("%-20s %-26s %-8s %14lld %11s  %s\n",
               json_string_value(json_object_get(m, "node")),
               json_string_value(json_object_get(m, "endpoint")),
               json_string_value(json_object_get(m, "state")),
               (long long) json_integer_value(json_object_get(m, "incarnation")), heard,
               used ? fns : "-");
    }
    rc = S_EXIT_OK;
out:
    json_decref(arr);
    free(json);
    pm_client_destroy(&client);
    s_args_free(&a);
    return rc;
}

/* ---- worker ------------------------------------------------------------------
 * One zmq_poll loop: the worker socket (only while a slot is free), a
 * self-pipe that signal handlers write to, and for every running child its
 * stdin (while input remains), stdout and stderr. All pipe ends the worker
 * holds are non-blocking, so a child that writes a lot, or reads its input
 * slowly, never blocks the loop. */

typedef struct {
    pm_invocation_t *inv; /* NULL: the slot is free */
    pid_t pid;
    int in_fd; /* -1 once closed */
    int out_fd;
    int err_fd;
    size_t in_off;
    s_buf_t out;
    s_buf_t err;
    bool out_overflow;
    int64_t started_ms;
} s_child_t;

typedef struct {
    pm_worker_t *worker;
    uint64_t session; /* the worker's session when we last looked (0: away) */
    const char *functions; /* as given, for log lines */
    char **cmd; /* NULL-terminated */
    s_child_t *slots;
    int concurrency;
    int active;
    bool stopping;
    int exit_code;
} s_pool_t;

static volatile sig_atomic_t s_stop_requested;
static int s_wake_fd = -1; /* write end of the self-pipe */

static void
s_on_signal(int sig)
{
    int saved = errno;
    if (sig != SIGCHLD)
        s_stop_requested = 1;
    if (write(s_wake_fd, "x", 1) < 0) {
        /* Full pipe: a wake-up is already pending, which is all we need. */
    }
    errno = saved;
}

static void
s_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* F_GETFL/F_SETFL on a pipe end we just made cannot fail. */
static void
s_set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Reads what is there now; closes the pipe at EOF or on error. */
static void
s_child_read(int *fd, s_buf_t *buf, size_t max, bool *overflow)
{
    char chunk[65536];
    while (*fd >= 0) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            s_close(fd);
            return;
        }
        size_t room = buf->len < max ? max - buf->len : 0;
        size_t take = (size_t) n < room ? (size_t) n : room;
        if (take < (size_t) n && overflow)
            *overflow = true;
        if (take > 0 && s_buf_append(buf, chunk, take) != 0 && overflow)
            *overflow = true;
    }
}

static void
s_child_write(s_child_t *c)
{
    while (c->in_fd >= 0 && c->in_off < c->inv->input_len) {
        ssize_t n = write(c->in_fd, c->inv->input + c->in_off, c->inv->input_len - c->in_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            /* EPIPE: the command does not read its input; that is its call. */
            s_close(&c->in_fd);
            return;
        }
        c->in_off += (size_t) n;
    }
    s_close(&c->in_fd);
}

/* Strips leading and trailing white space in place. */
static char *
s_trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n'
                       || s[len - 1] == '\r'))
        s[--len] = '\0';
    return s;
}

static void
s_log_invocation(const s_child_t *c, const char *outcome, const char *detail)
{
    if (!s_verbose)
        return;
    fprintf(stderr, "pmesh worker: %s %s -> %s (attempt %" PRIu32 ") %s in %" PRId64 " ms%s%s\n",
            c->inv->function, c->inv->invocation_id, c->inv->target_id, c->inv->attempt,
            outcome, pm_mono_ms() - c->started_ms, detail ? ": " : "", detail ? detail : "");
}

/* Reports the result of a finished invocation and frees its slot. */
static void
s_child_done(s_pool_t *pool, s_child_t *c, int status, const char *spawn_error)
{
    /* Whatever the child wrote before it exited is in the pipes now. */
    s_child_read(&c->out_fd, &c->out, S_MAX_OUTPUT, &c->out_overflow);
    s_child_read(&c->err_fd, &c->err, S_MAX_REASON, NULL);
    s_close(&c->out_fd);
    s_close(&c->err_fd);
    s_close(&c->in_fd);

    char why[128];
    const char *reason = NULL;
    if (spawn_error)
        reason = spawn_error;
    else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        reason = c->err.data ? s_trim(c->err.data) : "";
        if (!*reason) {
            if (WIFSIGNALED(status))
                snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(status));
            else
                snprintf(why, sizeof why, "exit status %d", WEXITSTATUS(status));
            reason = why;
        }
    } else if (c->out_overflow) {
        snprintf(why, sizeof why, "output larger than %u bytes", S_MAX_OUTPUT);
        reason = why;
    }

    char refused[256];
    int err = reason ? pm_worker_fail(pool->worker, c->inv, reason)
                     : pm_worker_complete(pool->worker, c->inv, c->out.data ? c->out.data : "",
                                          c->out.len);
    if (!reason && (err == PM_ERR_VALUE_TOO_LARGE || err == PM_ERR_BAD_REQUEST)) {
        /* The agent will not take this result; the target must still settle,
         * so reject it with why rather than leave it pending forever. */
        snprintf(refused, sizeof refused, "result of %zu bytes refused: %s: %s", c->out.len,
                 pm_err_name(err), pm_strerror(err));
        reason = refused;
        err = pm_worker_fail(pool->worker, c->inv, reason);
    }
    if (err == PM_OK) {
        if (reason)
            s_log_invocation(c, "failed", reason);
        else {
            char detail[64];
            snprintf(detail, sizeof detail, "%zu bytes", c->out.len);
            s_log_invocation(c, "ok", detail);
        }
    } else if (err == PM_ERR_NOT_HOLDER || err == PM_ERR_UNREACHABLE) {
        /* The agent went away while the command ran: the result has nowhere
         * to go; the agent invokes the function again (PROTOCOL.md). */
        fprintf(stderr, "pmesh worker: dropped the result of invocation %s (%s): its session "
                "with the agent ended; the agent hands it out again\n",
                c->inv->invocation_id, pm_err_name(err));
    } else {
        fprintf(stderr, "pmesh worker: cannot report invocation %s: %s: %s\n",
                c->inv->invocation_id, pm_err_name(err), pm_strerror(err));
    }
    pm_invocation_destroy(&c->inv);
    s_buf_free(&c->out);
    s_buf_free(&c->err);
    c->pid = 0;
    pool->active--;
}

/* The environment of a child: ours, with the invocation's variables set.
 * Built before spawning, since nothing may allocate between fork and exec. */
static char **
s_child_env(char **owned, size_t owned_count)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + owned_count + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < owned_count && !replaced; j++) {
            size_t name_len = (size_t) (strchr(owned[j], '=') - owned[j]) + 1;
            replaced = strncmp(environ[i], owned[j], name_len) == 0;
        }
        if (!replaced)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < owned_count; j++)
        env[k++] = owned[j];
    return env;
}

/* Appends "NAME=value" to owned[]; false if memory runs out. */
static bool
s_env_add(char **owned, size_t *count, const char *name, const char *value)
{
    char *entry;
    if (asprintf(&entry, "%s=%s", name, value ? value : "") < 0)
        return false;
    owned[(*count)++] = entry;
    return true;
}

/* Starts the command for an invocation in a free slot. Takes ownership of
 * *inv_p. If the command cannot be started the invocation fails at once. */
static void
s_child_start(s_pool_t *pool, pm_invocation_t **inv_p)
{
    s_child_t *c = NULL;
    for (int i = 0; i < pool->concurrency && !c; i++)
        if (!pool->slots[i].inv)
            c = &pool->slots[i];
    assert(c); /* callers take work only while a slot is free */
    *c = (s_child_t) { .inv = *inv_p, .in_fd = -1, .out_fd = -1, .err_fd = -1 };
    *inv_p = NULL;
    c->started_ms = pm_mono_ms();
    pool->active++;

    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
    char *owned[4] = { NULL, NULL, NULL, NULL };
    size_t owned_count = 0;
    char **env = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_ok = false, attr_ok = false;
    char spawn_error[512] = "";
    int e;

    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        snprintf(spawn_error, sizeof spawn_error, "worker cannot make pipes: %s",
                 strerror(errno));
        goto out;
    }
    bool env_ok = s_env_add(owned, &owned_count, "PMESH_INVOCATION_ID", c->inv->invocation_id)
                  && s_env_add(owned, &owned_count, "PMESH_TARGET_ID", c->inv->target_id)
                  && s_env_add(owned, &owned_count, "PMESH_FUNCTION", c->inv->function)
                  && (!s_socket || s_env_add(owned, &owned_count, "PMESH_SOCKET", s_socket))
                  && (env = s_child_env(owned, owned_count)) != NULL;
    if (!env_ok) {
        snprintf(spawn_error, sizeof spawn_error, "worker out of memory");
        goto out;
    }
    if ((e = posix_spawn_file_actions_init(&fa)) == 0)
        fa_ok = true;
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
    if (!e && (e = posix_spawnattr_init(&attr)) == 0)
        attr_ok = true;
    if (!e) {
        /* Own process group: a Ctrl-C meant for the worker must not kill the
         * invocations it has promised to finish. Signals we catch or ignore
         * go back to their defaults, and the mask is cleared. */
        sigset_t none, dflt;
        sigemptyset(&none);
        sigemptyset(&dflt);
        sigaddset(&dflt, SIGPIPE);
        sigaddset(&dflt, SIGTERM);
        sigaddset(&dflt, SIGINT);
        sigaddset(&dflt, SIGCHLD);
        e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
                                                | POSIX_SPAWN_SETPGROUP);
        if (!e)
            e = posix_spawnattr_setsigmask(&attr, &none);
        if (!e)
            e = posix_spawnattr_setsigdefault(&attr, &dflt);
        if (!e)
            e = posix_spawnattr_setpgroup(&attr, 0);
    }
    if (!e)
        e = posix_spawnp(&c->pid, pool->cmd[0], fa_ok ? &fa : NULL, &attr, pool->cmd, env);
    if (e) {
        snprintf(spawn_error, sizeof spawn_error, "cannot run %s: %s", pool->cmd[0],
                 strerror(e));
        goto out;
    }
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = err[0];
    in[1] = out[0] = err[0] = -1;
    s_set_nonblock(c->in_fd);
    s_set_nonblock(c->out_fd);
    s_set_nonblock(c->err_fd);
    if (c->inv->input_len == 0)
        s_close(&c->in_fd);
    if (s_verbose)
        fprintf(stderr, "pmesh worker: %s %s started pid %d\n", c->inv->function,
                c->inv->invocation_id, (int) c->pid);
out:
    for (int i = 0; i < 2; i++) {
        s_close(&in[i]);
        s_close(&out[i]);
        s_close(&err[i]);
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (attr_ok)
        posix_spawnattr_destroy(&attr);
    free(env);
    for (size_t j = 0; j < owned_count; j++)
        free(owned[j]);
    if (*spawn_error)
        s_child_done(pool, c, 0, spawn_error);
}

/* Takes invocations while a slot is free. */
static void
s_pool_take(s_pool_t *pool)
{
    while (!pool->stopping && pool->active < pool->concurrency) {
        pm_invocation_t *inv = NULL;
        int err = pm_worker_next(pool->worker, 0, &inv);
        if (err == PM_ERR_WAIT_TIMEOUT)
            return;
        if (err != PM_OK) {
            fprintf(stderr, "pmesh worker: %s: %s\n", pm_err_name(err), pm_strerror(err));
            pool->stopping = true;
            pool->exit_code = s_exit_code(err) == S_EXIT_UNREACHABLE ? S_EXIT_UNREACHABLE
                                                                      : S_EXIT_REFUSED;
            return;
        }
        s_child_start(pool, &inv);
    }
}

/* Says on stderr when the agent went away and when the worker is back. */
static void
s_pool_watch_session(s_pool_t *pool)
{
    uint64_t now = pm_worker_session(pool->worker);
    if (now == pool->session)
        return;
    if (!now)
        fprintf(stderr, "pmesh worker: lost the agent at %s; reconnecting\n", s_socket_shown());
    else
        fprintf(stderr, "pmesh worker: reconnected to the agent at %s (session %" PRIu64
                "); serving %s again\n", s_socket_shown(), now, pool->functions);
    pool->session = now;
}

/* The poll loop. Returns the exit code. */
static int
s_pool_run(s_pool_t *pool, int wake_rd)
{
    /* Per child: stdin, stdout, stderr; plus the self-pipe and the worker. */
    size_t max_items = (size_t) pool->concurrency * 3 + 2;
    zmq_pollitem_t *items = calloc(max_items, sizeof *items);
    s_child_t **owner = calloc(max_items, sizeof *owner);
    if (!items || !owner) {
        free(items);
        free(owner);
        fputs("pmesh worker: out of memory\n", stderr);
        return S_EXIT_REFUSED;
    }
    for (;;) {
        if (s_stop_requested && !pool->stopping) {
            pool->stopping = true;
            if (s_verbose)
                fprintf(stderr, "pmesh worker: stopping, %d invocation(s) in flight\n",
                        pool->active);
        }
        if (pool->stopping && pool->active == 0)
            break;
        /* The library may already hold invocations that arrived while it
         * waited for something else (the ack of a result): those will never
         * make the socket readable again, so ask before sleeping. */
        s_pool_take(pool);
        s_pool_watch_session(pool);
        if (pool->stopping && pool->active == 0)
            break;

        memset(owner, 0, max_items * sizeof *owner);
        int n = 0;
        items[n++] = (zmq_pollitem_t) { .fd = wake_rd, .events = ZMQ_POLLIN };
        int worker_item = -1;
        void *wsock = pm_worker_socket(pool->worker);
        long tick = S_TICK_MS;
        if (!pool->stopping && pool->active < pool->concurrency) {
            if (wsock) {
                worker_item = n;
                items[n++] = (zmq_pollitem_t) { .socket = wsock, .events = ZMQ_POLLIN };
            } else {
                tick = S_RECONNECT_TICK_MS; /* the agent is away: try again soon */
            }
        }
        for (int i = 0; i < pool->concurrency; i++) {
            s_child_t *c = &pool->slots[i];
            if (!c->inv)
                continue;
            if (c->in_fd >= 0) {
                owner[n] = c;
                items[n++] = (zmq_pollitem_t) { .fd = c->in_fd, .events = ZMQ_POLLOUT };
            }
            if (c->out_fd >= 0) {
                owner[n] = c;
                items[n++] = (zmq_pollitem_t) { .fd = c->out_fd, .events = ZMQ_POLLIN };
            }
            if (c->err_fd >= 0) {
                owner[n] = c;
                items[n++] = (zmq_pollitem_t) { .fd = c->err_fd, .events = ZMQ_POLLIN };
            }
        }
        if (zmq_poll(items, n, tick) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "pmesh worker: zmq_poll: %s\n", zmq_strerror(errno));
            pool->stopping = true;
            pool->exit_code = S_EXIT_REFUSED;
            /* Without a poll there is no way to wait for the children's
             * pipes; fall through to reaping, which blocks if it has to. */
            for (int i = 0; i < pool->concurrency; i++) {
                s_child_t *c = &pool->slots[i];
                int status = 0;
                if (c->inv && c->pid > 0 && waitpid(c->pid, &status, 0) == c->pid)
                    s_child_done(pool, c, status, NULL);
            }
            break;
        }

        char drain[64];
        while (read(wake_rd, drain, sizeof drain) > 0)
            ;
        /* Any event on a pipe (data, hang-up, error) means "try it now";
         * the non-blocking read or write says what actually happened. */
        for (int i = 0; i < n; i++) {
            s_child_t *c = owner[i];
            if (!c || !items[i].revents || !c->inv)
                continue;
            if (items[i].fd == c->in_fd)
                s_child_write(c);
            else if (items[i].fd == c->out_fd)
                s_child_read(&c->out_fd, &c->out, S_MAX_OUTPUT, &c->out_overflow);
            else if (items[i].fd == c->err_fd)
                s_child_read(&c->err_fd, &c->err, S_MAX_REASON, NULL);
        }

        /* A child is done when it has exited; its output is then complete in
         * the pipes (a grandchild holding them open must not keep us waiting). */
        for (int i = 0; i < pool->concurrency; i++) {
            s_child_t *c = &pool->slots[i];
            int status = 0;
            if (!c->inv || c->pid <= 0)
                continue;
            pid_t r = waitpid(c->pid, &status, WNOHANG);
            if (r == c->pid)
                s_child_done(pool, c, status, NULL);
            else if (r < 0 && errno == ECHILD)
                s_child_done(pool, c, 0, "worker lost track of the command");
        }

        if (worker_item >= 0 && (items[worker_item].revents & ZMQ_POLLIN))
            s_pool_take(pool);
    }
    free(items);
    free(owner);
    return pool->exit_code;
}

static int
s_cmd_worker(int argc, char **argv)
{
    static const s_spec_t specs[] = {
        S_COMMON_SPECS,
        { "concurrency", 'c', true },
        { "verbose", 'v', false },
        { NULL, 0, false },
    };
    s_args_t a;
    int rc = s_parse(argc, argv, specs, true, &a);
    if (rc)
        return rc;
    char *functions_text = NULL;
    const char **functions = NULL;
    size_t function_count = 0;
    s_pool_t pool = { .exit_code = S_EXIT_OK };
    int wake[2] = { -1, -1 };
    sigset_t block, old_mask;
    bool masked = false;

    if ((rc = s_common("worker", &a, 1, 1)) >= 0)
        goto out;
    if (!a.has_rest || a.rest_count < 1 || !*a.rest[0]) {
        rc = s_usage_error("worker: missing -- CMD [ARG...]");
        goto out;
    }
    if (s_opt(&a, "verbose"))
        s_verbose = true;
    unsigned long concurrency = 1;
    const char *conc = s_opt(&a, "concurrency");
    if (conc && s_parse_uint(conc, S_MAX_CONCURRENCY, &concurrency) != 0) {
        rc = s_usage_error("worker: --concurrency must be 1..%d", S_MAX_CONCURRENCY);
        goto out;
    }
    functions_text = strdup(a.pos[0]);
    functions = calloc(strlen(a.pos[0]) / 2 + 2, sizeof *functions);
    if (!functions_text || !functions) {
        rc = s_fail(NULL, PM_ERR_INTERNAL);
        goto out;
    }
    char *save = NULL;
    for (char *f = strtok_r(functions_text, ",", &save); f; f = strtok_r(NULL, ",", &save))
        functions[function_count++] = f;
    if (function_count == 0 || strstr(a.pos[0], ",,") || a.pos[0][0] == ','
        || a.pos[0][strlen(a.pos[0]) - 1] == ',') {
        rc = s_usage_error("worker: bad function list '%s'", a.pos[0]);
        goto out;
    }
    /* A child's pipes must not land on fd 0, 1 or 2 of this process, or
     * dup2-ing them into place in the child would shuffle them. */
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) {
            rc = s_fail(NULL, PM_ERR_INTERNAL);
            goto out;
        }
    pool.concurrency = (int) concurrency;
    pool.cmd = a.rest;
    pool.slots = calloc(concurrency, sizeof *pool.slots);
    if (!pool.slots || pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = s_fail(NULL, PM_ERR_INTERNAL);
        goto out;
    }

    /* Signals are blocked while the library starts its threads, so that they
     * inherit the mask and every signal reaches this thread's handler and
     * its self-pipe. A child's death is a SIGCHLD, which wakes the poll too. */
    s_wake_fd = wake[1];
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    masked = true;
    struct sigaction sa = { .sa_handler = s_on_signal, .sa_flags = SA_RESTART | SA_NOCLDSTOP };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    /* A child that exits without reading all its input must not kill us. */
    signal(SIGPIPE, SIG_IGN);

    int err = pm_worker_new(s_socket, functions, function_count, pool.concurrency, &pool.worker);
    if (err != PM_OK) {
        fprintf(stderr, "pmesh worker: %s: cannot register with the agent at %s: %s\n",
                pm_err_name(err), s_socket_shown(), pm_strerror(err));
        rc = s_exit_code(err);
        goto out;
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    masked = false;
    pool.session = pm_worker_session(pool.worker);
    pool.functions = a.pos[0];
    if (s_verbose)
        fprintf(stderr, "pmesh worker: serving %s with concurrency %d\n", a.pos[0],
                pool.concurrency);
    rc = s_pool_run(&pool, wake[0]);
    if (s_verbose)
        fprintf(stderr, "pmesh worker: stopped\n");
out:
    if (masked)
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    pm_worker_destroy(&pool.worker);
    s_close(&wake[0]);
    s_close(&wake[1]);
    free(pool.slots);
    free(functions);
    free(functions_text);
    s_args_free(&a);
    return rc;
}

/* ---- main ----------------------------------------------------------------- */

int
main(int argc, char **argv)
{
    int i = 1;
    /* Options before the subcommand. */
    while (i < argc && argv[i][0] == '-') {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(s_usage_text, stdout);
            return S_EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("pmesh %s\n", PMESH_VERSION);
            return S_EXIT_OK;
        }
        if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
            s_verbose = true;
            i++;
        } else if (strcmp(arg, "--socket") == 0) {
            if (i + 1 >= argc || !*argv[i + 1])
                return s_usage_error("--socket needs a path");
            s_socket = argv[i + 1];
            i += 2;
        } else if (strncmp(arg, "--socket=", 9) == 0) {
            if (!arg[9])
                return s_usage_error("--socket needs a path");
            s_socket = arg + 9;
            i++;
        } else
            return s_usage_error("unknown option %s", arg);
    }
    if (i >= argc)
        return s_usage_error("missing command");
    const char *cmd = argv[i];
    int sub_argc = argc - i - 1;
    char **sub_argv = argv + i + 1;
    if (strcmp(cmd, "create") == 0)
        return s_cmd_create(sub_argc, sub_argv);
    if (strcmp(cmd, "resolve") == 0 || strcmp(cmd, "reject") == 0
        || strcmp(cmd, "cancel") == 0 || strcmp(cmd, "heartbeat") == 0)
        return s_cmd_settle(cmd, sub_argc, sub_argv);
    if (strcmp(cmd, "get") == 0)
        return s_cmd_get(sub_argc, sub_argv);
    if (strcmp(cmd, "await") == 0)
        return s_cmd_await(sub_argc, sub_argv);
    if (strcmp(cmd, "then") == 0)
        return s_cmd_then(sub_argc, sub_argv);
    if (strcmp(cmd, "all") == 0 || strcmp(cmd, "any") == 0 || strcmp(cmd, "race") == 0 ||
        strcmp(cmd, "all-settled") == 0)
        return s_cmd_combine(cmd, sub_argc, sub_argv);
    if (strcmp(cmd, "list") == 0)
        return s_cmd_list(sub_argc, sub_argv);
    if (strcmp(cmd, "worker") == 0)
        return s_cmd_worker(sub_argc, sub_argv);
    if (strcmp(cmd, "status") == 0)
        return s_cmd_status(sub_argc, sub_argv);
    if (strcmp(cmd, "members") == 0)
        return s_cmd_members(sub_argc, sub_argv);
    if (strcmp(cmd, "space") == 0)
        return s_cmd_space(sub_argc, sub_argv);
    if (strcmp(cmd, "help") == 0) {
        fputs(s_usage_text, stdout);
        return S_EXIT_OK;
    }
    return s_usage_error("unknown command '%s'", cmd);
}
