/*
 * relay.h - requests for promises other members own: relayed to the owner
 * and answered when its reply comes back; parked while a takeover is
 * coming (or, just started, while we have not heard of the space), then
 * sent where the space went or run here if it came to us.
 */
#ifndef PM_RELAY_H
#define PM_RELAY_H

#include "agent_priv.h"

/* A subscription (PM_RELAY_SUB: an await or a combinator's input on a
 * promise another member owns) is sent again this often until the owner
 * answers: the request, or the owner's state of it, may have been lost (a
 * cut link drops what was queued; an owner that took us for dead closed our
 * session and its waiters with it). The owner keeps one waiter per
 * subscription however often it hears it, and does not answer a repeat
 * that comes within max(2 x this period, 1 s) of its answer again
 * (waiters.c). The default of the sub_resend key. */
#define PM_RELAY_SUB_RESEND_MS 500

/* The resend period of a subscription here: sub_resend, or the default. */
int64_t pm_relay_sub_resend_ms(const pm_agent_t *self);

/* zhashx destructor of the relays table. */
void pm_relay_destructor(void **item);
/* A relay of kind to node about promise pid (filed; its timer set: for a
 * subscription, the next resend). */
pm_relay_t *pm_relay_new(pm_agent_t *self, pm_relay_kind_t kind, const char *node,
                         const char *pid);
/* The relay with this id (a reply's req_id, a subscription's rw->relay), or NULL. */
pm_relay_t *pm_relay_find(pm_agent_t *self, uint64_t id);
/* Sends m to node as relay r (m's req_id becomes the relay's). */
int pm_relay_send(pm_agent_t *self, pm_relay_t *r, const pm_msg_t *m);
/* Subscription r asks its owner for early copies of these outcomes (1 <<
 * state, fanin.h) from now on: sent again now, unless parked. */
void pm_relay_sub_widen(pm_agent_t *self, pm_relay_t *r, unsigned states);
/* Relays a client's request to the promise's owner; the owner's reply goes
 * back to the client with the client's req_id. */
int pm_relay_forward(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, const char *node);
/* A reply from another agent to one of our relays. */
void pm_relay_on_peer_reply(pm_agent_t *self, const char *from, pm_msg_t *m);
/* Ends a relay with a typed error: its client hears err, its subscribers
 * all hear err, a relayed settle is simply dropped. */
void pm_relay_fail(pm_agent_t *self, pm_relay_t *r, int err);
/* A relay's timer fired: the owner did not answer, or nobody took its space over. */
void pm_relay_expired(pm_agent_t *self, pm_relay_t *r);
/* Parks r until its space is served somewhere (pm_relay_unpark), or forward_timeout. */
/* Parks relay r with m (as r sends it: its req_id, from us) kept to be sent
 * when the space is served somewhere (pm_relay_unpark). */
void pm_relay_park_msg(pm_agent_t *self, pm_relay_t *r, const pm_msg_t *m);
void pm_relay_park(pm_agent_t *self, pm_relay_t *r);
/* Parked requests whose space is now served somewhere go there. */
void pm_relay_unpark(pm_agent_t *self);
/* Routes a client's request on a promise that may live elsewhere. Returns 1
 * when handled here (relayed or refused in *err), 0 when it is local. */
int pm_relay_route(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono, int *err);

/* Where a request on id goes: pm_mesh_route, with the owner the
 * configuration store records (if alive) over gossip's. */
pm_route_t pm_relay_route_of(pm_agent_t *self, const char *id, const char **node);

#endif
