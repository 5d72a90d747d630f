/*
 * pmeshd.c - the agent's entry point: flags and config file into one
 * pm_config_t, logging, signals, then the reactor (agent.c).
 *
 * Exit codes: 0 clean shutdown, 64 usage error, 78 configuration error (bad
 * file or flag value, before anything is bound), 1 could not start.
 */
#include "agent.h"
#include "auth.h"
#include "config.h"
#include "http.h"
#include "httpfn.h"
#include "log.h"
#include "pmesh.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EX_USAGE 64
#define EX_CONFIG 78

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: pmeshd [--config FILE] [--check] [--KEY VALUE]...\n"
            "\n"
            "The pmesh agent: owns the promises created on this node and serves functions\n"
            "over a ZeroMQ socket at a filesystem path.\n"
            "\n"
            "  --config FILE   read settings from a YAML file (flags override it)\n"
            "  --check         validate the configuration, print the effective config, exit\n"
            "  --keygen DIR    create the mesh's CURVE keypair in DIR (mesh.pub, mesh.key)\n"
            "  --help          this text\n"
            "  --version       print the version\n"
            "\n"
            "Every configuration key is also a flag:\n");
    pm_config_help(out);
}

/* Finds --config FILE / --config=FILE anywhere in argv. */
static const char *
s_config_path(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}

int
main(int argc, char **argv)
{
    int check = 0;
    char err[512];
    pm_config_t *cfg = pm_config_new();
    if (!cfg)
        return 1;
    const char *path = s_config_path(argc, argv);
    if (path && pm_config_load(cfg, path, err, sizeof err) != 0) {
        fprintf(stderr, "pmeshd: %s\n", err);
        pm_config_destroy(&cfg);
        return EX_CONFIG;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            s_usage(stdout);
            pm_config_destroy(&cfg);
            return 0;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("pmeshd %s\n", PMESH_VERSION);
            pm_config_destroy(&cfg);
            return 0;
        }
        if (strcmp(arg, "--check") == 0) {
            check = 1;
            continue;
        }
        if (strcmp(arg, "--keygen") == 0) {
            /* Makes the mesh's CURVE keypair (for the Kubernetes Secret). */
            if (i + 1 >= argc) {
                fprintf(stderr, "pmeshd: --keygen needs a directory\n");
                pm_config_destroy(&cfg);
                return EX_USAGE;
            }
            int rc = pm_auth_generate_keys(argv[i + 1], err, sizeof err);
            if (rc != 0)
                fprintf(stderr, "pmeshd: --keygen: %s\n", err);
            else
                printf("%s/mesh.pub\n%s/mesh.key\n", argv[i + 1], argv[i + 1]);
            pm_config_destroy(&cfg);
            return rc ? 1 : 0;
        }
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(arg, "--config=", 9) == 0)
            continue;
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "pmeshd: unexpected argument '%s' (see --help)\n", arg);
            pm_config_destroy(&cfg);
            return EX_USAGE;
        }
        char key[128];
        const char *value = NULL;
        const char *eq = strchr(arg + 2, '=');
        size_t klen = eq ? (size_t) (eq - arg - 2) : strlen(arg + 2);
        snprintf(key, sizeof key, "%.*s", (int) klen, arg + 2);
        if (strcmp(key, "seed") == 0) /* --seed is repeatable; the key is the list */
            snprintf(key, sizeof key, "seeds");
        if (!pm_config_is_key(key)) {
            fprintf(stderr, "pmeshd: unknown flag '--%s' (see --help)\n", key);
            pm_config_destroy(&cfg);
            return EX_USAGE;
        }
        if (eq)
            value = eq + 1;
        else if (pm_config_key_takes_value(key)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pmeshd: --%s needs a value\n", key);
                pm_config_destroy(&cfg);
                return EX_USAGE;
            }
            value = argv[++i];
        }
        if (pm_config_set(cfg, key, value, err, sizeof err) != 0) {
            fprintf(stderr, "pmeshd: %s\n", err);
            pm_config_destroy(&cfg);
            return EX_CONFIG;
        }
    }

    /* Resolve what the config leaves to the environment. */
    char host[256] = "";
    const char *node = cfg->node;
    if (!node || !*node)
        node = getenv("NODE_NAME");
    if (!node || !*node) {
        gethostname(host, sizeof host - 1);
        node = host;
    }
    const char *socket_path = cfg->socket;
    if (!socket_path || !*socket_path)
        socket_path = getenv("PMESH_SOCKET");
    if (!socket_path || !*socket_path)
        socket_path = PMESH_DEFAULT_SOCKET;
    if (!*node || strlen(node) > 63 || strspn(node, "abcdefghijklmnopqrstuvwxyz"
                                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                                           strlen(node)) {
        fprintf(stderr, "pmeshd: node name '%s' must be 1-63 of [A-Za-z0-9._-]\n", node);
        pm_config_destroy(&cfg);
        return EX_CONFIG;
    }
    if (cfg->bind && *cfg->bind) {
        /* The mesh is encrypted unless the operator says otherwise. */
        pm_mesh_keys_t keys;
        if (cfg->mesh_key_dir && *cfg->mesh_key_dir) {
            if (pm_auth_load_keys(cfg->mesh_key_dir, &keys, err, sizeof err) != 0) {
                fprintf(stderr, "pmeshd: mesh_key_dir: %s\n", err);
                pm_config_destroy(&cfg);
                return EX_CONFIG;
            }
        } else if (!cfg->insecure) {
            fprintf(stderr, "pmeshd: bind: a mesh needs --mesh-key-dir DIR (CURVE; make keys "
                            "with pmeshd --keygen DIR), or --insecure to run it unencrypted\n");
            pm_config_destroy(&cfg);
            return EX_CONFIG;
        }
    }
    /* Issue 11: with backups, who owns an id space is decided in a
     * configuration store; without one, gossip decides, and a split can
     * lose acknowledged data. That takes an explicit flag. */
    int coord_needed = cfg->bind && *cfg->bind && cfg->replicas >= 2;
    int has_coord = cfg->coordination && *cfg->coordination;
    if (has_coord && strncmp(cfg->coordination, "etcd://", 7) != 0 &&
        strcmp(cfg->coordination, "mem://") != 0) {
        fprintf(stderr, "pmeshd: coordination: '%.64s' is not etcd://HOST:PORT[,HOST:PORT...]\n",
                cfg->coordination);
        pm_config_destroy(&cfg);
        return EX_CONFIG;
    }
    if (has_coord && !(cfg->bind && *cfg->bind))
        fprintf(stderr, "pmeshd: coordination is set without a mesh (bind): not used\n");
    if (cfg->min_in_sync >= cfg->replicas) {
        fprintf(stderr, "pmeshd: min_in_sync %lld must be below replicas %lld (it counts "
                        "backups)\n", (long long) cfg->min_in_sync, (long long) cfg->replicas);
        pm_config_destroy(&cfg);
        return EX_CONFIG;
    }
    if (coord_needed && !has_coord && !cfg->unsafe_no_coordination && !check) {
        fprintf(stderr, "pmeshd: a mesh with replicas >= 2 needs --coordination "
                        "etcd://HOST:PORT (who owns each id space is decided there), or "
                        "--unsafe-no-coordination to accept that a network split can lose "
                        "acknowledged data\n");
        pm_config_destroy(&cfg);
        return EX_CONFIG;
    }
    for (size_t i = 0; i < cfg->http_functions.len; i++) {
        pm_httpfn_spec_t spec;
        if (pm_httpfn_parse(cfg->http_functions.items[i], &spec, err, sizeof err) != 0) {
            fprintf(stderr, "pmeshd: http_functions: %s\n", err);
            pm_config_destroy(&cfg);
            return EX_CONFIG;
        }
    }
    if (check) {
        fprintf(stdout, "# pmeshd %s: configuration is valid\n# node: %s, socket: %s\n",
                PMESH_VERSION, node, socket_path);
        pm_config_print(cfg, stdout);
        pm_config_destroy(&cfg);
        return 0;
    }

    pm_log_setup(cfg->log_level, cfg->log_format, node);
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* SIGHUP reloads the gateway's API keys (read from a signalfd there);
     * blocked everywhere so that it never kills the agent. */
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    pm_agent_t *agent = pm_agent_new(cfg, node, socket_path);
    if (!agent) {
        pm_config_destroy(&cfg);
        return 1;
    }
    /* HTTP functions are served by a thread that is a worker of this agent:
     * start it once the socket is bound, stop it before the agent goes. */
    pm_httpfn_t *httpfn = NULL;
    if (cfg->http_functions.len &&
        !(httpfn = pm_httpfn_start(cfg, socket_path, err, sizeof err))) {
        pm_log_error("PM-HTTPFN-START", "%s", err);
        pm_config_destroy(&cfg);
        pm_agent_destroy(&agent);
        return 1;
    }
    /* The HTTP gateway is a client of this agent on its own threads. It is
     * stopped after the agent is gone, so nothing it waits for can hang. */
    pm_http_t *http = NULL;
    if (((cfg->http && *cfg->http) || (cfg->http_public && *cfg->http_public)) &&
        !(http = pm_http_new(cfg, socket_path))) {
        pm_config_destroy(&cfg);
        pm_httpfn_stop(&httpfn);
        pm_agent_destroy(&agent);
        return 1;
    }
    pm_config_destroy(&cfg);
    int rc = pm_agent_run(agent);
    pm_httpfn_stop(&httpfn);
    pm_agent_destroy(&agent);
    pm_http_destroy(&http);
    return rc;
}
