/*
 * mesh_priv.h - the mesh's state, shared by mesh.c (membership, metadata,
 * sending, receiving, routing, lifecycle) and owners.c (the spaces this
 * agent serves and the backups of every member). Nothing here is public.
 */
#ifndef PM_MESH_PRIV_H
#define PM_MESH_PRIV_H

#include "frameq.h"
#include "mesh.h"
#include "swim.h"
#include "transport.h"

#include <czmq.h>

/* Capacity changes with every invocation; gossiping each change would flood
 * the mesh, so metadata is republished at most this often. */
#define PM_MESH_META_PERIOD_MS 500
/* Message kinds counted: envelope types, plus one per SWIM message type. */
#define PM_MESH_KINDS (PM_MSG_TYPE_COUNT + PM_SWIM_MSG_TYPES)

typedef struct pm_mesh_peer {
    char *name;
    char *endpoint;
    int state; /* pm_swim_state_t */
    pm_fn_cap_t *fns;
    size_t n_fns;
    char **spaces;
    uint64_t *epochs;
    size_t n_spaces;
    char *primary;
    char **backups;
    char **backup_spaces; /* each backup's primary when announced ("" if not sent) */
    size_t n_backups;
} pm_mesh_peer_t;

/* A frame from a sender we cannot answer yet (mesh.c, s_early_hold). */
typedef struct pm_mesh_early {
    struct pm_mesh_early *next;
    char *from;
    uint8_t *buf;
    size_t len;
    uint64_t at; /* monotonic ms it arrived */
} pm_mesh_early_t;

/* The frames for one endpoint sent while the mesh is corked (outbox.c). */
typedef struct pm_mesh_outq {
    char *endpoint;
    pm_frameq_t q;
} pm_mesh_outq_t;

/* Who serves a space, and at which epoch. */
typedef struct pm_mesh_owner {
    char *node;
    uint64_t epoch;
} pm_mesh_owner_t;

struct pm_mesh {
    pm_mesh_send_fn *sender; /* NULL: the transport (see pm_mesh_set_sender) */
    void *sender_arg;
    char *node;
    char *space;
    char *advertise;
    pm_swim_t *swim;
    pm_transport_t *transport;
    zhashx_t *peers;  /* name -> pm_mesh_peer_t (owned) */
    zhashx_t *owners; /* space -> pm_mesh_owner_t: who serves it, at which epoch */
    char **mine;      /* spaces this agent serves: its own first */
    char **my_backups;
    char **my_backup_spaces;
    size_t n_my_backups;
    uint64_t *mine_epochs;
    size_t n_mine;
    zhashx_t *lost;   /* space -> "" : owners dead or gone */
    pm_mesh_hooks_t hooks;
    void *arg;
    char **seeds;
    size_t n_seeds;
    int64_t seed_refresh;
    uint64_t next_resolve;
    pm_fn_cap_t *fns; /* ours, published */
    size_t n_fns;
    int meta_dirty;
    /* With a configuration store, gossip only hints at owners (the store
     * routes the rest, relay.c): metadata too big for SWIM announces as many
     * spaces as fit, our own first, instead of nothing. */
    int meta_trim;
    size_t meta_trimmed; /* spaces left out of the last metadata (logged on change) */
    size_t meta_spaces;  /* spaces in the metadata last published (0: none published) */
    uint64_t meta_at;
    int left;
    uint64_t sent[PM_MESH_KINDS], recv[PM_MESH_KINDS];
    uint64_t sent_bytes[PM_MESH_KINDS], recv_bytes[PM_MESH_KINDS];
    uint64_t unknown_peer, bad_frames, untrusted, swim_dropped;
    uint64_t last_stranger_join;
    /* Frames (oldest first) from members whose address we have not learnt
     * yet: delivered once SWIM tells us where they are, so that what we
     * answer reaches them; dropped after a bound. */
    pm_mesh_early_t *early, **early_tail;
    size_t n_early, early_bytes;
    int curve;
    uint64_t place_rng;
    /* Corked (pm_mesh_cork): frames wait in one queue per endpoint and leave
     * as one batch each at pm_mesh_uncork (outbox.c). */
    int corked;
    pm_mesh_outq_t *outq;
    size_t n_outq, cap_outq;
};

/* Publishes our metadata now (claims, backups, functions). */
void pm_mesh_publish_meta(pm_mesh_t *self, uint64_t now);
/* Hands one encoded frame (malloc'd, owned from here) to the transport or
 * the seam's sender, now: 0, or -1 if it was dropped. */
int pm_mesh_transmit_now(pm_mesh_t *self, const char *endpoint, uint8_t *buf, size_t len);
/* outbox.c: queues a frame for endpoint while corked (0, or -1: dropped);
 * sends every queue, each as one frame; frees the queues (unsent frames
 * too). */
int pm_mesh_outbox_add(pm_mesh_t *self, const char *endpoint, uint8_t *buf, size_t len);
void pm_mesh_outbox_flush(pm_mesh_t *self);
/* Drops what waits for endpoint (its member is dead or moved: as the
 * transport drops what it still queues for it, pm_transport_forget). */
void pm_mesh_outbox_drop(pm_mesh_t *self, const char *endpoint);
void pm_mesh_outbox_free(pm_mesh_t *self);
/* Frees the list of our announced backups. */
void pm_mesh_free_backups(pm_mesh_t *self);

#endif
