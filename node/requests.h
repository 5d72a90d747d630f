/*
 * requests.h - the requests served from our own store: create (ids minted
 * here or under a client's lease), settle, list and status.
 */
#ifndef PM_REQUESTS_H
#define PM_REQUESTS_H

#include "agent_priv.h"

/* Whether id was minted under session s's lease. */
int pm_req_minted_by(const pm_session_t *s, const char *id);
/* Whether the space of id is one this agent took over (serves, and is not
 * its primary): the agent that lost it, and that agent's clients, still mint
 * there, and only they do. */
int pm_req_owned_space(pm_agent_t *self, const char *id);
/* The new promise of a then or a combinator: new_id (the caller minted it;
 * refused with BAD_REQUEST unless allowed) or one minted here, created
 * pending with timeout_ms; its id into id[cap], the promise into *q. */
int pm_req_create_new(pm_agent_t *self, const char *new_id, int allowed, int64_t timeout_ms,
                      int64_t now, char *id, size_t cap, pm_prom_t **q);
/* Whether we serve the id space of id now (no mesh: every id is ours). */
int pm_req_serves(pm_agent_t *self, const char *id);
/* Mints a new id in our primary space. */
void pm_req_mint(pm_agent_t *self, char *out, size_t cap);
/* CREATE: mints (or checks the client's) id and creates the promise. */
int pm_req_do_create(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now);
/* SETTLE: resolves, rejects or cancels a promise of ours. */
int pm_req_do_settle(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now);
/* Settles a promise of ours as SETTLE message m says (its value, or its
 * reason with the default for an empty one), checked against the limits;
 * answers nobody. */
int pm_req_settle(pm_agent_t *self, const pm_msg_t *m, int64_t now);
/* LIST: one page of our promises. */
int pm_req_do_list(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m);
/* The agent's one status snapshot (stats.h): every counter, gauge and
 * histogram it reports, filled here and only here. pm_stats_clear it. */
struct pm_stats;
void pm_req_stats(pm_agent_t *self, struct pm_stats *out);
/* STATUS: the snapshot as JSON (`pmesh status`) and packed (the gateway's
 * /metrics) in one reply. */
void pm_req_do_status(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m);

#endif
