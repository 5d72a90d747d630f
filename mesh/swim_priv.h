/*
 * swim_priv.h - what the files of the SWIM state machine share (swim.h is
 * the public side): the member table and the types behind pm_swim_t.
 *
 *   swim.c         the protocol: sending with piggybacked updates, state
 *                  changes, probing, relays, timers, validation, and
 *                  new / destroy / tick / receive / join / leave
 *   swim_table.c   the member table, suspicion timers and Lifeguard local
 *                  health, the queue of updates to piggyback, and the
 *                  read-only queries of the public API
 *   swim_config.c  configuration defaults and checks; names of states,
 *                  message types and events
 *
 * Like swim.c, none of it does I/O or reads a clock.
 */
#ifndef PM_SWIM_PRIV_H
#define PM_SWIM_PRIV_H

#include "swim.h"

#include "base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Ping-reqs this node serves at once; more are refused (and counted) so a
 * flood of ping-reqs cannot grow memory. A relay lives one probe period, and
 * a healthy mesh sends each node about indirect_checks of them per failed
 * probe, so 64 is far above normal load. */
#define PM_SWIM_MAX_RELAYS 64
/* Seed endpoints remembered; the oldest is forgotten past this. DNS for a
 * headless service returns one per agent, and a handful is plenty. */
#define PM_SWIM_MAX_SEEDS 32
/* Fixed per-update overhead assumed when filling the piggyback byte budget
 * (incarnation, state, field tags); the encoder's real overhead is smaller. */
#define PM_SWIM_UPDATE_OVERHEAD 32

typedef struct {
    uint64_t start; /* when the suspicion began, our clock */
    uint64_t min;   /* timeout once k confirmations are in */
    uint64_t max;   /* timeout with no confirmation */
    uint32_t k;     /* confirmations wanted */
    uint32_t n;     /* confirmations seen */
    uint32_t from_count;
    char **from; /* k + 1 names: who raised it, then each confirmer */
} pm_swim_susp_t;

typedef struct {
    char *name;
    char *endpoint;
    uint64_t incarnation;
    pm_swim_state_t state;
    uint8_t *meta;
    size_t meta_len;
    uint64_t state_since;
    uint64_t last_heard;
    uint64_t told_at; /* last time we corrected its view (s_tell) */
    bool told;
    bool is_self;
    pm_swim_susp_t *susp; /* non-NULL exactly while suspect */
} pm_swim_rec_t;

/* A queued update: a snapshot, so it survives the member's removal. */
typedef struct {
    char *name;
    char *endpoint;
    char *from;
    uint64_t incarnation;
    pm_swim_state_t state;
    uint8_t *meta;
    size_t meta_len;
    uint32_t transmits;
    uint64_t id; /* enqueue order: higher is newer */
} pm_swim_bcast_t;

typedef struct {
    uint64_t local_seq;  /* seq of our ping to the target */
    uint64_t origin_seq; /* seq the origin is waiting on */
    uint64_t nack_at;
    uint64_t expire_at;
    char *origin_endpoint;
    bool nack_sent;
} pm_swim_relay_t;

typedef enum { PM_SWIM_PICK_LIVE, PM_SWIM_PICK_ALIVE, PM_SWIM_PICK_DEAD } pm_swim_pick_t;

struct pm_swim {
    pm_swim_config_t cfg;
    pm_swim_send_fn *send;
    pm_swim_event_fn *event;
    void *arg;
    uint64_t rng;
    uint64_t seq;
    bool started;
    uint64_t now;

    pm_swim_rec_t **members; /* also the probe order (randomized round-robin) */
    size_t count;
    size_t cap;
    pm_swim_rec_t *self;
    size_t probe_index;
    pm_swim_rec_t **pick; /* scratch for random selections, cap entries */

    struct {
        bool active;
        bool acked;
        bool indirect_sent;
        char *target;
        uint64_t target_inc;
        uint64_t seq;
        uint64_t ack_at; /* direct ack deadline: then ping-req */
        uint64_t end_at; /* end of period: then suspect */
        uint32_t expected_nacks;
        uint32_t nacks;
    } probe;
    uint64_t next_probe_at;
    char *urgent; /* a member just reported suspect: probe it next */

    pm_swim_relay_t relays[PM_SWIM_MAX_RELAYS];
    size_t relay_count;

    pm_swim_bcast_t **bcasts;
    size_t bcast_count;
    size_t bcast_cap;
    uint64_t bcast_id;
    uint64_t last_gossip_at;
    bool gossip_now; /* we originated an update: gossip without pacing */

    uint64_t next_sync_at;
    uint64_t last_sync_at; /* the last full sync we started (or our start) */
    char *seeds[PM_SWIM_MAX_SEEDS];
    size_t seed_count;
    uint64_t next_join_at;

    uint32_t health;
    pm_swim_stats_t stats;

    pm_swim_update_t *scratch; /* outgoing update arrays */
    size_t scratch_cap;
    size_t picked[PM_SWIM_MAX_PIGGYBACK];
};

/* ---- helpers (inline: they run on every message) ----------------------------- */

static inline uint64_t
pm_swim_rand(pm_swim_t *s)
{
    /* splitmix64: tiny, full period, good enough to pick probe targets */
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline size_t
pm_swim_rand_below(pm_swim_t *s, size_t n)
{
    return n ? (size_t) (pm_swim_rand(s) % n) : 0;
}

/* Out of memory stops the agent (base.h), also under NDEBUG. */
static inline void *
pm_swim_xalloc(size_t size)
{
    return pm_xcalloc(1, size, "membership");
}

static inline char *
pm_swim_xstrdup(const char *str)
{
    size_t len = strlen(str);
    char *p = pm_swim_xalloc(len + 1);
    memcpy(p, str, len);
    return p;
}

static inline uint8_t *
pm_swim_xmemdup(const void *src, size_t len)
{
    if (len == 0)
        return NULL;
    uint8_t *p = pm_swim_xalloc(len);
    memcpy(p, src, len);
    return p;
}

static inline bool
pm_swim_streq(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static inline bool
pm_swim_empty(const char *str)
{
    return str == NULL || *str == '\0';
}

/* 0 if str is an acceptable name/endpoint: 1..max printable-ASCII-or-UTF-8 bytes. */
static inline int
pm_swim_check_str(const char *str, size_t max, bool required)
{
    if (str == NULL)
        return required ? -1 : 0;
    size_t len = strnlen(str, max + 1);
    if (len > max || (required && len == 0))
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) str[i];
        if (c < 0x20 || c == 0x7f)
            return -1;
    }
    return 0;
}

static inline uint32_t
pm_swim_ceil_log2(uint64_t x)
{
    uint32_t bits = 0;
    while (bits < 63 && (1ULL << bits) < x)
        bits++;
    return bits;
}

/* ---- the member table (swim_table.c) ---------------------------------------- */

/* The member named name, NULL if none. */
pm_swim_rec_t *pm_swim_find(const pm_swim_t *s, const char *name);
/* Not known to have failed or left. */
bool pm_swim_live(const pm_swim_rec_t *m);
/* Live members, self included: the N of the formulas. */
size_t pm_swim_live_count(const pm_swim_t *s);
bool pm_swim_has_live_peer(const pm_swim_t *s);
/* Tells the caller's event callback about m. */
void pm_swim_emit(pm_swim_t *s, pm_swim_event_t ev, const pm_swim_rec_t *m);
/* Adds a member at a random place in the probe order. */
pm_swim_rec_t *pm_swim_member_add(pm_swim_t *s, const char *name, const char *endpoint,
                                  uint64_t inc, const uint8_t *meta, size_t meta_len);
void pm_swim_member_remove(pm_swim_t *s, size_t i);
void pm_swim_member_free(pm_swim_rec_t **m_p);
/* Fills s->pick with up to k distinct random members (never self, never
 * exclude) of the kind asked for; returns how many. */
size_t pm_swim_pick_random(pm_swim_t *s, size_t k, const char *exclude, pm_swim_pick_t kind);

/* ---- timing: Lifeguard local health and suspicion timers (swim_table.c) -------- */

/* The probe period and timeout, scaled by local health. */
uint64_t pm_swim_period_scaled(const pm_swim_t *s);
uint64_t pm_swim_probe_timeout(const pm_swim_t *s);
void pm_swim_health_add(pm_swim_t *s, int delta);
/* A suspicion raised by from; its deadline runs from max down to min as
 * independent confirmations (pm_swim_susp_confirm: true if new) come in. */
pm_swim_susp_t *pm_swim_susp_new(pm_swim_t *s, const char *from);
bool pm_swim_susp_confirm(pm_swim_susp_t *susp, const char *from);
uint64_t pm_swim_susp_deadline(const pm_swim_susp_t *susp);
void pm_swim_susp_free(pm_swim_susp_t **susp_p);

/* ---- the broadcast queue: updates to piggyback (swim_table.c) ------------------ */

/* Queues m's current record, replacing any older queued update about it. */
void pm_swim_enqueue(pm_swim_t *s, const pm_swim_rec_t *m, const char *from);
void pm_swim_bcast_remove(pm_swim_t *s, size_t i);
void pm_swim_bcast_free(pm_swim_bcast_t **b_p);
/* Bytes an update takes out of the piggyback budget. */
size_t pm_swim_update_size(const pm_swim_update_t *u);
/* A queued update, or a member's record, as the update sent. */
void pm_swim_bcast_view(const pm_swim_bcast_t *b, pm_swim_update_t *u);
void pm_swim_record_view(const pm_swim_rec_t *m, pm_swim_update_t *u, const char *from);
/* qsort order of queued updates: fewest transmissions first, then newest. */
int pm_swim_bcast_cmp(const void *a, const void *b);
/* Room for want updates in s->scratch. */
void pm_swim_scratch_reserve(pm_swim_t *s, size_t want);

#endif
