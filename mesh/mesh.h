/*
 * mesh.h - this agent's place in the mesh: membership (SWIM, swim.c) over the
 * transport (transport.c), what every member serves (id spaces, functions and
 * free capacity, carried in gossip metadata), routing of a promise id to its
 * owner, and placement of an invocation on a member. Knows nothing of the
 * promise store: the agent asks it where things go and hands it messages.
 * Owned by the reactor thread.
 */
#ifndef PM_MESH_H
#define PM_MESH_H

#include "config.h"
#include "wire.h"

#include <stdint.h>

typedef struct pm_mesh pm_mesh_t;

typedef enum pm_route {
    PM_ROUTE_LOCAL = 0, /* this agent owns it */
    PM_ROUTE_REMOTE,    /* a live (or only suspected) member owns it */
    PM_ROUTE_LOST,      /* its owner is dead or left, and nobody took over */
    PM_ROUTE_UNKNOWN,   /* no member ever announced that id space */
} pm_route_t;

typedef enum pm_mesh_event {
    PM_MESH_UP = 1,     /* a member joined or came back */
    PM_MESH_DOWN,       /* a member is dead or left: its spaces are lost */
    PM_MESH_CHANGED,    /* a member's functions or capacity changed */
} pm_mesh_event_t;

typedef struct pm_mesh_hooks {
    /* A non-membership message from peer `from` (decoded; borrowed). */
    void (*message)(void *arg, const char *from, pm_msg_t *msg);
    /* A member changed; `name` is borrowed. */
    void (*member)(void *arg, pm_mesh_event_t ev, const char *name);
    /* A space this agent served is served elsewhere at a newer epoch. */
    void (*moved)(void *arg, const char *space);
    /* With a configuration store (contested set): another member claims a
     * space we serve at a newer epoch. Gossip decides nothing then: we keep
     * serving until the store says otherwise, and the agent asks it. */
    void (*contested)(void *arg, const char *space);
} pm_mesh_hooks_t;

/* Binds cfg->bind, starts SWIM and joins cfg->seeds. space is this agent's id
 * space. NULL on failure (logged). Caller owns the mesh. */
pm_mesh_t *pm_mesh_new(void *ctx, const pm_config_t *cfg, const char *node, const char *space,
                       const pm_mesh_hooks_t *hooks, void *arg);
/* Announces a graceful leave (if not done yet) and frees. */
void pm_mesh_destroy(pm_mesh_t **self_p);
/* The inbound socket for zmq_poll. Borrowed. */
void *pm_mesh_socket(pm_mesh_t *self);
/* Handles everything waiting on the inbound socket. */
void pm_mesh_readable(pm_mesh_t *self);
/* Drives timers (probes, suspicion, gossip, seed refresh). */
void pm_mesh_tick(pm_mesh_t *self);
/* Milliseconds until pm_mesh_tick is next needed. */
int64_t pm_mesh_timeout(pm_mesh_t *self);

/* Sends msg to member `node` (msg->from is set here). 0, or -1 if the node is
 * unknown or the frame was dropped. */
int pm_mesh_send(pm_mesh_t *self, const char *node, pm_msg_t *msg);
/* Sends an already encoded frame (its `from` must be this node) to member
 * node; type is for the counters. 0, or -1 as pm_mesh_send. */
int pm_mesh_send_raw(pm_mesh_t *self, const char *node, int type, uint8_t *buf, size_t len);
/* Where the promise with this id lives; *node (borrowed, valid until the
 * next tick) names the owner for PM_ROUTE_REMOTE. */
pm_route_t pm_mesh_route(pm_mesh_t *self, const char *id, const char **node);
/* The same for a whole id space. */
pm_route_t pm_mesh_route_space(pm_mesh_t *self, const char *space, const char **node);
/* The alive member (not this agent) with the most free slots for function,
 * or NULL if none serves it. Borrowed. */
const char *pm_mesh_place(pm_mesh_t *self, const char *function);
/* Whether member `node` is alive (or suspect). */
int pm_mesh_is_up(pm_mesh_t *self, const char *node);
/* Whether we have heard of node at all (alive, suspect, dead or left). */
int pm_mesh_knows(pm_mesh_t *self, const char *node);
/* Publishes this agent's functions and capacity (gossiped, rate-limited). */
void pm_mesh_set_functions(pm_mesh_t *self, const pm_fn_cap_t *fns, size_t n);
/* Starts serving space at epoch (a takeover): routed here from now on,
 * announced at once. */
void pm_mesh_claim(pm_mesh_t *self, const char *space, uint64_t epoch);
/* How many served spaces the metadata last published names (0: none was
 * published, e.g. too big without a configuration store). */
size_t pm_mesh_meta_spaces(const pm_mesh_t *self);
/* Stops serving space (it moved to a higher epoch elsewhere). */
void pm_mesh_unclaim(pm_mesh_t *self, const char *space);
/* Whether this agent serves space; *epoch (if not NULL) gets its epoch. */
int pm_mesh_owns(pm_mesh_t *self, const char *space, uint64_t *epoch);
/* Whether another member's full state (a push-pull sync) has reached us
 * since we started: until then our view of who serves what may be partial. */
int pm_mesh_synced(pm_mesh_t *self);
/* The spaces this agent serves (its primary first) and their epochs.
 * Borrowed until the next claim or unclaim; returns how many. */
size_t pm_mesh_served(pm_mesh_t *self, const char *const **spaces, const uint64_t **epochs);
/* The highest epoch any member announced for space (0: none). */
uint64_t pm_mesh_epoch(pm_mesh_t *self, const char *space);
/* The epoch of the claim pm_mesh_route_space routes by (another member's
 * announcement; 0: none). */
uint64_t pm_mesh_owner_epoch(pm_mesh_t *self, const char *space);
/* Member `node`'s primary id space and every space it served, with epochs,
 * as last announced (also after it died). Borrowed until the next tick;
 * returns the number of spaces. */
size_t pm_mesh_spaces_of(pm_mesh_t *self, const char *node, const char **primary,
                         const char *const **spaces, const uint64_t **epochs);
/* The members that back up node's spaces: the first n alive members (this
 * agent included, node excluded) by rendezvous hash on node's primary
 * space. Fills out with borrowed names; returns how many. */
size_t pm_mesh_backups(pm_mesh_t *self, const char *node, const char *primary, size_t n,
                       const char **out);
/* Announces the members that hold a full copy of our spaces (in order: the
 * first alive one takes over if we die), each with its primary space at the
 * time (a restarted member under the same name holds no copy). */
void pm_mesh_set_backups(pm_mesh_t *self, const char *const *names, const char *const *spaces,
                         size_t n);
/* The backups member `node` last announced (also after it died). Fills out
 * (and spaces, if not NULL: each one's primary then, "" if not announced)
 * with borrowed names; returns how many. */
size_t pm_mesh_backups_of(pm_mesh_t *self, const char *node, const char **out,
                          const char **spaces, size_t n);
/* Member node's primary id space as last announced (ours for this agent), or
 * NULL if unknown. Borrowed until the next tick. */
const char *pm_mesh_primary_of(pm_mesh_t *self, const char *node);
/* This agent's node name. Borrowed. */
const char *pm_mesh_self(pm_mesh_t *self);

/* The seam of the transport's send: every frame this mesh sends (encoded,
 * buf malloc'd and handed over) goes to fn instead of the transport, e.g. to
 * drop, delay or reorder frames in a test or a simulation; fn returns 0, or
 * -1 if it dropped the frame. pm_mesh_transmit hands a frame on to the
 * transport. fn NULL: the transport again. */
typedef int(pm_mesh_send_fn)(void *arg, const char *endpoint, uint8_t *buf, size_t len);
void pm_mesh_set_sender(pm_mesh_t *self, pm_mesh_send_fn *fn, void *arg);
int pm_mesh_transmit(pm_mesh_t *self, const char *endpoint, uint8_t *buf, size_t len);

/* Corks the mesh: what is sent from now on waits, one queue per peer, until
 * pm_mesh_uncork sends each queue as one frame (outbox.c). The agent corks
 * it for each turn of its loop. */
void pm_mesh_cork(pm_mesh_t *self);
void pm_mesh_uncork(pm_mesh_t *self);

/* Tells the mesh we are going: peers mark us left without suspicion. */
void pm_mesh_leave(pm_mesh_t *self);

/* Member table as a JSON array (caller frees). */
char *pm_mesh_members_json(pm_mesh_t *self);
/* Fills the mesh part of a status snapshot (stats.h): members by state,
 * messages and bytes by type in and out, SWIM and transport events. */
struct pm_stats;
void pm_mesh_stats_fill(pm_mesh_t *self, struct pm_stats *out);
/* Alive members including self. */
size_t pm_mesh_alive(pm_mesh_t *self);

#endif
