/*
 * rand.c - the random source seam (rand.h): getrandom(2) in production, a
 * seeded xoshiro256** for tests and the simulator. The only file of the agent
 * that calls getrandom.
 */
#include "rand.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

uint64_t
pm_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t
s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
pm_rand_seeded_next(pm_rand_seeded_t *g)
{
    uint64_t *s = g->s;
    uint64_t r = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return r;
}

static void
s_seeded_bytes(void *ctx, void *buf, size_t n)
{
    pm_rand_seeded_t *g = ctx;
    uint8_t *p = buf;
    while (n) {
        uint64_t v = pm_rand_seeded_next(g);
        size_t k = n < sizeof v ? n : sizeof v;
        memcpy(p, &v, k);
        p += k;
        n -= k;
    }
}

void
pm_rand_seeded_init(pm_rand_seeded_t *g, uint64_t seed)
{
    g->rand.bytes = s_seeded_bytes;
    g->rand.ctx = g;
    uint64_t st = seed;
    for (int i = 0; i < 4; i++)
        g->s[i] = pm_splitmix64(&st);
    /* splitmix64 never yields four zeros in a row, the one state xoshiro
     * must not start from. */
}

/* --- the system source ------------------------------------------------------ */

static pthread_mutex_t s_fallback_lock = PTHREAD_MUTEX_INITIALIZER;
static pm_rand_seeded_t s_fallback;
static int s_fallback_up;

/* Without getrandom (ENOSYS) there is still an answer: a generator seeded from
 * both clocks and the pid, as the call sites did before this seam. */
static void
s_fallback_bytes(void *buf, size_t n, int err)
{
    pthread_mutex_lock(&s_fallback_lock);
    if (!s_fallback_up) {
        pm_log_warn("PM-RAND-FALLBACK", "getrandom: %s; using a generator seeded from the clock",
                    strerror(err));
        uint64_t seed = (uint64_t) pm_real_ms() ^ ((uint64_t) pm_mono_us() << 20) ^
                        ((uint64_t) getpid() << 40);
        pm_rand_seeded_init(&s_fallback, seed);
        s_fallback_up = 1;
    }
    s_seeded_bytes(&s_fallback, buf, n);
    pthread_mutex_unlock(&s_fallback_lock);
}

static void
s_sys_bytes(void *ctx, void *buf, size_t n)
{
    (void) ctx;
    uint8_t *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            s_fallback_bytes(p, n, errno);
            return;
        }
        p += r;
        n -= (size_t) r;
    }
}

const pm_rand_t pm_rand_system = {.bytes = s_sys_bytes, .ctx = 0};
static const pm_rand_t *s_cur = &pm_rand_system;

const pm_rand_t *
pm_rand_use(const pm_rand_t *r)
{
    const pm_rand_t *prev = s_cur;
    s_cur = r ? r : &pm_rand_system;
    return prev;
}

void
pm_rand_bytes(void *buf, size_t n)
{
    s_cur->bytes(s_cur->ctx, buf, n);
}

uint64_t
pm_rand_u64(void)
{
    uint64_t v;
    s_cur->bytes(s_cur->ctx, &v, sizeof v);
    return v;
}
