/*
 * transport.h - agent-to-agent frames over ZeroMQ. One ROUTER receives from
 * every peer; one DEALER per peer endpoint sends to it, so everything this
 * agent sends to one peer travels one FIFO channel and is applied in order.
 * Knows nothing of what the frames mean (mesh.c does).
 *
 * The seam: a transport created while an in-memory network is current
 * (memnet.h) binds there instead, with no socket (pm_transport_socket is
 * NULL): tests and the simulator then drive pm_transport_recv themselves.
 */
#ifndef PM_TRANSPORT_H
#define PM_TRANSPORT_H

#include "auth.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pm_transport pm_transport_t;

typedef struct pm_transport_stats {
    uint64_t frames_out, bytes_out;
    uint64_t frames_in, bytes_in;
    uint64_t dropped_out; /* peer queue full or socket error */
    uint64_t bad_in;      /* inbound frames with the wrong shape */
    uint64_t auth_refused;      /* peers without the mesh key (ZAP) */
    uint64_t handshakes_failed; /* peers that failed the CURVE handshake */
} pm_transport_stats_t;

/* Binds a ROUTER at `bind` (tcp://ADDR:PORT) in ctx; with keys, every
 * channel is CURVE and only holders of the mesh key get in (keys NULL:
 * plain, --insecure). NULL with the reason logged on failure. Caller owns
 * the transport. */
pm_transport_t *pm_transport_new(void *ctx, const char *bind, int64_t max_frame,
                                 const pm_mesh_keys_t *keys);
void pm_transport_destroy(pm_transport_t **self_p);
/* The inbound socket, for zmq_poll; NULL on an in-memory network. Borrowed. */
void *pm_transport_socket(pm_transport_t *self);
/* Queues buf (len bytes, malloc'd; ownership passes here) to endpoint,
 * connecting on first use. 0, or -1 if it had to be dropped. */
int pm_transport_send(pm_transport_t *self, const char *endpoint, uint8_t *buf, size_t len);
/* Next inbound frame body, or NULL if none is waiting. Caller frees. */
uint8_t *pm_transport_recv(pm_transport_t *self, size_t *len);
/* Drops the channel to endpoint and whatever is still queued on it. */
void pm_transport_forget(pm_transport_t *self, const char *endpoint);
void pm_transport_stats(const pm_transport_t *self, pm_transport_stats_t *out);

#endif
