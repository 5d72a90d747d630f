/*
 * memnet.h - the mesh transport's seam: a network in memory that the
 * transport (transport.c) uses instead of ZeroMQ when one is current, so that
 * agents' meshes run in one process without sockets or threads, under a test
 * or the simulator. Endpoints are the strings the mesh uses ("tcp://A:P"):
 * a transport created while a memnet is current binds its endpoint in it;
 * a frame sent to an endpoint lands in that port's inbox, in order per
 * (sender, receiver) channel, like a DEALER-to-ROUTER channel. Links can be
 * cut one way or both, and frames lost at random (seeded). CURVE is not
 * modelled (the keys are ignored). Single-threaded, like the reactor.
 *
 * Time, delay, reordering, duplication (the simulator's network faults). The
 * network has a clock of its own (pm_memnet_set_now, ms; 0 until set); a
 * frame is received once its delivery time has come. Without a delay every
 * frame is due at once (as before). What the real transport can show, and so
 * what is modelled (issue 14):
 *   - delay: each frame is late by a random 0..max ms (seeded), but a link
 *     keeps its order, as ZeroMQ over one TCP connection does: a frame is
 *     never due before the previous frame of the same connection;
 *   - reordering: only across a *reconnect*. A DEALER that reconnects (or a
 *     sender that restarts on the same endpoint) opens a new connection; the
 *     receiving ROUTER fair-queues its pipes, so frames of the new connection
 *     can overtake the old connection's frames still on their way. Modelled
 *     as a new connection per link (its order restarts) on a random frame
 *     (reorder spell) and whenever a port binds (a restarted sender);
 *   - duplication: a frame delivered twice, the copy later and on a new
 *     connection, as when a sender resends after a reconnect (the agent must
 *     be idempotent for it). ZeroMQ itself never duplicates; its users'
 *     resends do.
 * A frame sent to a port that is unbound before it is due is lost with the
 * port (a killed receiver); frames sent by a port that is unbound still
 * arrive (a killed sender's frames already on the wire).
 *
 * The current network is a "current context" like the clock (clock.h): it is
 * read once, when a transport is created.
 */
#ifndef PM_MEMNET_H
#define PM_MEMNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pm_memnet pm_memnet_t;
typedef struct pm_memnet_port pm_memnet_port_t;

/* A network without ports; seed drives random loss. Caller owns it; destroy
 * it after every transport bound in it. NULL if out of memory. */
pm_memnet_t *pm_memnet_new(uint64_t seed);
void pm_memnet_destroy(pm_memnet_t **self_p);

/* Makes net the one new transports bind in (NULL: ZeroMQ again). Returns the
 * previous one. Borrowed. */
pm_memnet_t *pm_memnet_use(pm_memnet_t *net);
pm_memnet_t *pm_memnet_current(void);

/* Cuts (cut true) or heals the link from -> to (one way; call twice for
 * both). Frames sent over a cut link are lost. */
int pm_memnet_cut(pm_memnet_t *self, const char *from, const char *to, bool cut);
/* Loses each frame with probability permille / 1000. */
void pm_memnet_loss(pm_memnet_t *self, uint32_t permille);
/* The network's time (ms, never backwards): frames due by then are received. */
void pm_memnet_set_now(pm_memnet_t *self, int64_t now_ms);
/* Each frame is late by 0..max_ms (seeded; a link keeps its order). 0: none. */
void pm_memnet_delay(pm_memnet_t *self, int64_t max_ms);
/* Before each frame, a link reconnects with probability permille / 1000 (its
 * later frames may overtake its earlier ones that are still late). */
void pm_memnet_reorder(pm_memnet_t *self, uint32_t permille);
/* Each frame is delivered a second time with probability permille / 1000,
 * 0..max(delay, 50) ms after the first, on a new connection. */
void pm_memnet_dup(pm_memnet_t *self, uint32_t permille);
/* The earliest time a frame is due (INT64_MAX: none waits). */
int64_t pm_memnet_next_due(const pm_memnet_t *self);

typedef struct pm_memnet_stats {
    uint64_t sent;      /* frames handed to the network */
    uint64_t delivered; /* put in an inbox */
    uint64_t lost;      /* cut link, random loss, or nobody bound there */
    uint64_t delayed;   /* delivered late (a delay spell) */
    uint64_t reordered; /* due before a frame sent earlier on the same link */
    uint64_t duplicated; /* copies delivered a second time */
    uint64_t reconnects; /* links that opened a new connection (reorder, restart) */
} pm_memnet_stats_t;
void pm_memnet_stats(const pm_memnet_t *self, pm_memnet_stats_t *out);

/* --- for transport.c ------------------------------------------------------ */

/* Binds endpoint; NULL (errno EADDRINUSE or ENOMEM) if it cannot. */
pm_memnet_port_t *pm_memnet_bind(pm_memnet_t *self, const char *endpoint);
/* Unbinds and frees the port and its inbox. Sets *port_p to NULL. */
void pm_memnet_unbind(pm_memnet_port_t **port_p);
/* Sends buf (len bytes, malloc'd; ownership passes here) from port to
 * endpoint. 0 even when the network loses it (as a socket would queue it). */
int pm_memnet_send(pm_memnet_port_t *port, const char *endpoint, uint8_t *buf, size_t len);
/* The next frame due in port's inbox, or NULL. Caller frees. */
uint8_t *pm_memnet_recv(pm_memnet_port_t *port, size_t *len);
/* Frames due in port's inbox. */
size_t pm_memnet_waiting(const pm_memnet_port_t *port);
/* Frames due in every inbox (the simulator: is anything to receive now);
 * pm_memnet_next_due says when the late ones are. */
size_t pm_memnet_pending(const pm_memnet_t *self);

#endif
