/*
 * agent_new.c - an agent built (its store, WAL and journal, mesh, replica,
 * configuration store client, workers, and its local socket and signals)
 * and taken apart. The reactor that runs it is agent.c.
 */
#include "agent_priv.h"
#include "agent_step.h"
#include "fanins.h"
#include "isr_agent.h"
#include "localsock.h"
#include "mint.h"
#include "place.h"
#include "rand.h"
#include "relay.h"
#include "requests.h"
#include "session.h"
#include "takeover.h"
#include "thens.h"
#include "waiters.h"

#include <sodium.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int
s_mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

/* A socket file left by a dead agent is removed; one that answers belongs to
 * a live agent and is not stolen. */
static int
s_claim_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        pm_log_error("PM-AGENT-SOCKET", "%s exists and is not a socket", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int live = fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    if (live) {
        pm_log_error("PM-AGENT-SOCKET", "another agent is serving %s", path);
        return -1;
    }
    unlink(path);
    return 0;
}

/* sim_ctx NULL: a real agent (its own ZeroMQ context, signals, the local
 * socket). Otherwise driven by the simulator (agent_step.h): no socket, no
 * signalfd, the caller's context, and nothing waits on the wall clock. */
static pm_agent_t *
s_new(const pm_config_t *cfg, const char *node, const char *socket_path, void *sim_ctx)
{
    if (strlen(socket_path) >= sizeof(((struct sockaddr_un *) 0)->sun_path)) {
        pm_log_error("PM-AGENT-SOCKET", "socket path too long (%zu bytes, max %zu): %s",
                     strlen(socket_path), sizeof(((struct sockaddr_un *) 0)->sun_path) - 1,
                     socket_path);
        return NULL;
    }
    pm_agent_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->sigfd = -1;
    self->node = strdup(node);
    self->socket_path = strdup(socket_path);
    self->max_value_bytes = (size_t) cfg->max_value_bytes;
    self->client_timeout = cfg->client_timeout;
    self->max_waiters = (size_t) cfg->max_waiters_per_client;
    self->max_fanin = (size_t) cfg->max_fanin_inputs;
    self->list_limit = (uint32_t) cfg->list_limit;
    self->started_mono = self->last_sweep = pm_mono_ms();
    /* Relay ids start at a random point: a reply meant for our previous run
     * (a peer that did not notice the restart) cannot match a relay of this
     * one. */
    self->next_relay = pm_rand_u64() >> 1;
    self->started_real = pm_real_ms();
    /* Session ids differ from the last run's (a worker that reconnects to a
     * restarted agent tells its new session from the old one by its id:
     * pm_worker_session). */
    pm_agent_clock(self);

    pm_store_limits_t limits = {.max_value_bytes = self->max_value_bytes,
                                .max_labels = (size_t) cfg->max_labels,
                                .max_id_bytes = PM_WIRE_MAX_NAME};
    self->store = pm_store_new(&limits);
    self->timers = pm_timers_new();
    self->sessions = zhashx_new();
    self->by_id = zhashx_new();
    self->sim = sim_ctx != NULL;
    self->ctx = sim_ctx ? sim_ctx : zmq_ctx_new();
    if (!self->store || !self->timers || !self->sessions || !self->by_id || !self->ctx)
        goto fail;
    zhashx_set_destructor(self->sessions, pm_session_destructor);

    /* With a data dir the id space is the one the WAL remembers, and each
     * start is a new generation (so ids minted now never repeat old ones);
     * without one, a random boot tag makes the space new on every start. */
    pm_journal_state_t st = {0};
    self->generation = 1;
    self->retention = cfg->retention;
    self->retire_interval = cfg->retire_interval;
    self->next_retire = pm_mono_ms() + cfg->retire_interval;
    self->replicas = (int) cfg->replicas;
    int mesh_on = cfg->bind && *cfg->bind;
    int replicated = mesh_on && self->replicas >= 2;
    if (replicated && !(cfg->coordination && *cfg->coordination)) {
        snprintf(self->coord_desc, sizeof self->coord_desc,
                 "none (a split can lose acknowledged data)");
        pm_log_warn("PM-COORD-NONE", "no configuration store (--unsafe-no-coordination): "
                    "gossip decides who owns each id space, and a network split can lose "
                    "acknowledged data");
    }
    if ((cfg->data_dir && *cfg->data_dir) || replicated) {
        char err[512];
        const char *dir = cfg->data_dir && *cfg->data_dir ? cfg->data_dir : NULL;
        self->journal = pm_journal_open(dir, cfg->fsync, self->ctx, pm_agent_journal_send, self, err,
                                        sizeof err);
        /* A predecessor killed a moment ago may still be exiting (its last
         * threads hold the lock): give it up to 5 s before refusing. */
        for (int i = 0; i < 50 && !self->sim && !self->journal && strstr(err, "in use"); i++) {
            usleep(100 * 1000);
            self->journal = pm_journal_open(dir, cfg->fsync, self->ctx, pm_agent_journal_send, self,
                                            err, sizeof err);
        }
        if (!self->journal) {
            pm_log_error("PM-WAL-OPEN", "%s", err);
            goto fail;
        }
        if (pm_journal_replay(self->journal, self->store, &st, err, sizeof err) != 0) {
            pm_log_error("PM-WAL-CORRUPT", "refusing to start: %s", err);
            pm_journal_state_free(&st);
            goto fail;
        }
        self->generation = st.generation + 1;
        /* Session ids differ from the last run's, so a worker that
         * reconnects tells its new session from the old one by its id
         * (pm_worker_session); small, as leases carry them. */
        self->next_session = (self->generation - 1) % 4096 * 65536;
    }
    int coordinated = replicated && cfg->coordination && *cfg->coordination;
    uint64_t boot = 0;
    if (st.space[0] && !replicated) {
        snprintf(self->space, sizeof self->space, "%.100s", st.space);
    } else {
        boot = pm_rand_u64() & 0xffffffffffULL;
        if (!boot)
            boot = 1; /* with a store, the tag is the process id: never 0 */
        pm_id_space_name(self->space, sizeof self->space, node, boot);
        /* With backups, the spaces we served may have been taken over while
         * we were down: new promises go to a new space, and the old ones are
         * resumed only if nobody announces them within takeover_grace. */
        /* With a configuration store, a new process takes nothing back by
         * itself: the store says who owns those spaces (R5, isr.h). */
        if (st.space[0] && !coordinated)
            pm_claims_add(&self->probation, st.space, 1);
        for (size_t i = 0; i < st.claimed_count && !coordinated; i++)
            pm_claims_add(&self->probation, st.claimed[i].space, st.claimed[i].epoch);
        for (size_t i = 0; i < st.claimed_count; i++)
            pm_claims_add(&self->served_before, st.claimed[i].space, st.claimed[i].epoch);
    }
    if (self->journal)
        pm_journal_set_record_hook(self->journal, pm_takeover_on_record, self);
    /* With a store and a synced data dir, new ids go to the space the
     * process before us minted in, once it is ours again (mint.h). */
    pm_mint_start(self, &st,
                  coordinated && cfg->data_dir && *cfg->data_dir && cfg->fsync != 2,
                  cfg->takeover_grace);
    if (self->journal) {
        pm_store_set_listener(self->store, pm_agent_store_changed, self);
    }
    self->rthens = zhashx_new();
    self->stale_tail = zhashx_new();
    zhashx_set_destructor(self->stale_tail, pm_takeover_stale_destructor);
    if (!self->rthens)
        goto fail;
    zhashx_set_destructor(self->rthens, pm_then_rthen_destructor);
    if (mesh_on) {
        pm_mesh_hooks_t mh = {.message = pm_agent_on_peer_message, .member = pm_takeover_on_member,
                              .moved = pm_takeover_on_moved,
                              .contested = coordinated ? pm_takeover_on_contested : NULL};
        self->mesh = pm_mesh_new(self->ctx, cfg, node, self->space, &mh, self);
        if (!self->mesh) {
            pm_journal_state_free(&st);
            goto fail;
        }
        self->backup = pm_backup_new();
        if (!self->backup) {
            pm_journal_state_free(&st);
            goto fail;
        }
        if (replicated) {
            pm_replica_hooks_t rh = {.full_state = pm_takeover_full_state,
                                     .fenced = pm_takeover_on_fenced};
            /* The stream id: random, so a restarted owner's stream is new. */
            uint64_t stream = pm_rand_u64();
            /* With a store, the stream id is the process id the store
             * records: the tag of our primary space, which peers read. */
            if (coordinated)
                stream = boot;
            self->replica = pm_replica_new(self->mesh, self->space, self->replicas, &rh, self,
                                           stream, pm_mono_ms());
            if (!self->replica) {
                pm_journal_state_free(&st);
                goto fail;
            }
            if (coordinated) {
                char err[512];
                int min = cfg->min_in_sync >= 0 ? (int) cfg->min_in_sync : self->replicas - 1;
                /* The process before us on this data dir: what it acknowledged
                 * is in the WAL we replayed (unless fsync never), so we may
                 * stand in for it in an in-sync set (isr.h). */
                uint64_t prev = cfg->data_dir && *cfg->data_dir && cfg->fsync != 2 &&
                                        st.space[0]
                                    ? pm_replica_pid_of(st.space)
                                    : 0;
                pm_isr_config_t ic = {.url = cfg->coordination,
                                      .prefix = cfg->coordination_prefix,
                                      .mem = pm_agent_coord_mem, .zmq_ctx = self->ctx,
                                      .node = node, .primary = self->space, .pid = boot,
                                      .prev = prev, .min_in_sync = min,
                                      .mint = self->mint_pending ? self->mint : NULL,
                                      .mint_prev = self->mint_prev,
                                      .ca_file = cfg->coordination_ca_file,
                                      .cert_file = cfg->coordination_cert_file,
                                      .key_file = cfg->coordination_key_file};
                self->isr = pm_isr_new(&ic, &pm_isr_agent_env, self, err, sizeof err);
                if (!self->isr) {
                    pm_log_error("PM-COORD-CONFIG", "%s", err);
                    pm_journal_state_free(&st);
                    goto fail;
                }
                snprintf(self->coord_desc, sizeof self->coord_desc, "%.150s",
                         cfg->coordination);
                pm_isr_start(self->isr);
            }
            /* Only our new space is ours until the grace period says more;
             * a space we had taken over before is treated like our old one. */
            char keep[PM_WIRE_MAX_NAME + 2];
            pm_id_space_prefix(keep, sizeof keep, self->space);
            pm_store_passivate(self->store, keep, 1);
            self->probation_until = pm_mono_ms() + cfg->takeover_grace;
            self->probation_alone = pm_mono_ms() + PM_AGENT_ALONE_GRACES * cfg->takeover_grace;
            for (size_t i = 0; i < self->probation.n; i++)
                pm_log_info("PM-SPACE-PROBATION", "restarted: id space %s (epoch %llu) is "
                            "resumed after %lld ms, once another member's state has reached "
                            "us, unless some agent serves it; new promises go to %s",
                            self->probation.v[i].space,
                            (unsigned long long) self->probation.v[i].epoch,
                            (long long) cfg->takeover_grace, self->space);
        }
    }

    pm_workers_hooks_t hooks = {.send = pm_agent_workers_send, .settle = pm_place_settle_anywhere,
                                .pending = pm_place_target_pending};
    self->workers = pm_workers_new(self->space, &hooks, self);
    self->relays = zhashx_new();
    self->rwaits = zhashx_new();
    self->relay_timers = pm_timers_new();
    if (!self->workers || !self->relays || !self->rwaits || !self->relay_timers) {
        pm_journal_state_free(&st);
        goto fail;
    }
    zhashx_set_destructor(self->relays, pm_relay_destructor);
    zhashx_set_destructor(self->rwaits, pm_waiter_rwait_destructor);
    self->forward_timeout = cfg->forward_timeout;
    self->held_reply_timeout = cfg->held_reply_timeout;
    self->sub_resend = cfg->sub_resend;
    self->fanin_not_found_wait = cfg->fanin_not_found_wait;
    self->fanin_early = cfg->fanin_early;
    self->fanin_early_every = cfg->fanin_early_copies == PM_FANIN_COPIES_EVERY;
    self->chain_forward = cfg->chain_forward;
    self->mesh_batch = cfg->mesh_batch;
    if (cfg->token_secret_file && *cfg->token_secret_file) {
        char err[512];
        if (pm_token_load_secret(cfg->token_secret_file, &self->token_key, &self->token_key_len,
                                 err, sizeof err) != 0) {
            pm_log_error("PM-TOKEN-SECRET", "%s", err);
            pm_journal_state_free(&st);
            goto fail;
        }
    }
    if (self->journal) {
        size_t n = pm_then_restore(self, &st);
        pm_log_info("PM-AGENT-RECOVERED", "generation %llu of id space %s: %zu promises "
                    "(%zu pending), %zu continuations, %llu records in %lld ms",
                    (unsigned long long) self->generation, self->space,
                    pm_store_count(self->store, 0), pm_store_count(self->store, PM_STATE_PENDING),
                    n, (unsigned long long) st.records, (long long) st.recovery_ms);
    }
    pm_journal_state_free(&st);
    if (self->sim)
        return self;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    self->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (self->sigfd < 0)
        goto fail;

    if (s_mkdirs(socket_path) < 0) {
        pm_log_error("PM-AGENT-SOCKET", "cannot create the directory of %s: %s", socket_path,
                     strerror(errno));
        goto fail;
    }
    if (s_claim_path(socket_path) < 0)
        goto fail;
    self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
    int one = 1, zero = 0, hwm = PM_AGENT_SNDHWM;
    /* Frames up to 4x the value limit are read and refused with
     * VALUE_TOO_LARGE; beyond that libzmq cuts the connection before
     * buffering (libpmesh refuses such values itself, knowing the limit). */
    int64_t maxmsg = 4 * (int64_t) self->max_value_bytes + 64 * 1024;
    zmq_setsockopt(self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* Frames larger than the largest legal request are cut off by libzmq
     * before they are buffered. */
    zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    char ep[4200];
    snprintf(ep, sizeof ep, "ipc://%s", socket_path);
    mode_t old = umask(0117); /* socket file 0660 from the start */
    int rc = zmq_bind(self->router, ep);
    umask(old);
    if (rc < 0) {
        pm_log_error("PM-AGENT-SOCKET", "cannot bind %s: %s", ep, zmq_strerror(errno));
        goto fail;
    }
    chmod(socket_path, 0660);
    return self;
fail:
    pm_agent_destroy(&self);
    return NULL;
}

pm_agent_t *
pm_agent_new(const pm_config_t *cfg, const char *node, const char *socket_path)
{
    return s_new(cfg, node, socket_path, NULL);
}

pm_agent_t *
pm_agent_sim_new(const pm_config_t *cfg, const char *node, void *zmq_ctx)
{
    if (!zmq_ctx)
        return NULL;
    return s_new(cfg, node, "sim", zmq_ctx);
}

void
pm_agent_destroy(pm_agent_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_agent_t *self = *self_p;
    self->stopping = 1; /* the journal's close releases held messages: no invocation then */
    if (self->sessions) {
        pm_session_t *s;
        while ((s = zhashx_first(self->sessions)))
            pm_session_close(self, s, "agent stopping");
    }
    while (self->thens) {
        pm_then_t *t = self->thens;
        pm_watch_cancel(&t->watch);
        pm_then_unlink(self, t);
        pm_then_free(t);
    }
    pm_then_destroy_remote(self);
    pm_fanins_destroy_all(self);
    while (self->delegs) {
        pm_deleg_t *d = self->delegs;
        pm_place_deleg_unlink(self, d);
        pm_place_deleg_free(d);
    }
    if (self->journal) {
        /* Replies the backups have not acknowledged are no acknowledgement. */
        pm_fail_ctx_t ctx = {self, PM_ERR_AGENT_SHUTTING_DOWN,
                            pm_strerror(PM_ERR_AGENT_SHUTTING_DOWN)};
        pm_journal_fail_unreplicated(self->journal, pm_agent_fail_held, &ctx);
    }
    pm_journal_close(&self->journal); /* releases what it held while the sockets live */
    pm_isr_destroy(&self->isr);
    pm_replica_destroy(&self->replica);
    zhashx_destroy(&self->rthens);
    zhashx_destroy(&self->stale_tail);
    pm_claims_free(&self->probation);
    pm_claims_free(&self->served_before);
    pm_backup_destroy(&self->backup);
    if (self->token_key)
        sodium_memzero(self->token_key, self->token_key_len);
    free(self->token_key);
    pm_workers_destroy(&self->workers);
    pm_mesh_destroy(&self->mesh);
    /* The timer heap points into the relays: it goes first. */
    pm_timers_destroy(&self->relay_timers);
    zhashx_destroy(&self->relays);
    zhashx_destroy(&self->rwaits);
    zhashx_destroy(&self->sub_answers);
    pm_local_queues_free(self);
    zhashx_destroy(&self->by_id);
    zhashx_destroy(&self->sessions);
    pm_timers_destroy(&self->timers);
    pm_store_destroy(&self->store);
    if (self->router) {
        zmq_close(self->router);
        unlink(self->socket_path);
    }
    if (self->ctx && !self->sim)
        zmq_ctx_term(self->ctx);
    if (self->sigfd >= 0)
        close(self->sigfd);
    free(self->node);
    free(self->socket_path);
    free(self);
    *self_p = NULL;
}
