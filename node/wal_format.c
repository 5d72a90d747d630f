/*
 * wal_format.c - the WAL's bytes (see wal_format.h): CRC32C, record frames,
 * the scan for an intact frame after damage, and file names. Pure: no I/O;
 * the CRC table is built once, on first use.
 */
#include "wal_format.h"

#include <endian.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* --- CRC32C, slicing by 8 ------------------------------------------------- */

static uint32_t s_crc_tab[8][256];
static pthread_once_t s_crc_once = PTHREAD_ONCE_INIT;

static void
s_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1))); /* reflected Castagnoli */
        s_crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            s_crc_tab[t][i] = (s_crc_tab[t - 1][i] >> 8) ^ s_crc_tab[0][s_crc_tab[t - 1][i] & 0xff];
}

/* crc is the running (inverted) register: start at ~0, finish with ~. */
static uint32_t
s_crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w = le64toh(w) ^ crc;
        crc = s_crc_tab[7][w & 0xff] ^ s_crc_tab[6][(w >> 8) & 0xff] ^
              s_crc_tab[5][(w >> 16) & 0xff] ^ s_crc_tab[4][(w >> 24) & 0xff] ^
              s_crc_tab[3][(w >> 32) & 0xff] ^ s_crc_tab[2][(w >> 40) & 0xff] ^
              s_crc_tab[1][(w >> 48) & 0xff] ^ s_crc_tab[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = s_crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

uint32_t
pm_wal_crc32c(const void *p, size_t n)
{
    pthread_once(&s_crc_once, s_crc_init);
    return ~s_crc_update(~0u, p, n);
}

void
pm_wal_crc_init(void)
{
    pthread_once(&s_crc_once, s_crc_init);
}

/* Checksum of a frame: its len and lsn fields, then the payload. */
static uint32_t
s_frame_crc(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
    uint32_t c = s_crc_update(~0u, hdr, 4);
    c = s_crc_update(c, hdr + 8, 8);
    return ~s_crc_update(c, payload, len);
}

void
pm_wal_frame_put(uint8_t *out, uint64_t lsn, const void *rec, size_t len)
{
    pm_wal_put32(out, (uint32_t) len);
    pm_wal_put64(out + 8, lsn);
    if (len)
        memcpy(out + PM_WAL_FRAME_HDR, rec, len);
    pm_wal_put32(out + 4, s_frame_crc(out, out + PM_WAL_FRAME_HDR, len));
}

/* Checks the frame at p (n bytes left in the file) expecting LSN want. NULL if
 * good (length in *len), else what is wrong; *crc_ok says whether the frame was
 * intact and only its LSN was wrong. */
const char *
pm_wal_frame_check(const uint8_t *p, size_t n, uint64_t want, uint32_t *len, bool *crc_ok)
{
    *crc_ok = false;
    if (n < PM_WAL_FRAME_HDR)
        return "short record header";
    uint32_t l = pm_wal_get32(p);
    if (l > PM_WAL_MAX_RECORD)
        return "record length over the limit";
    if ((size_t) l > n - PM_WAL_FRAME_HDR)
        return "short record payload";
    if (s_frame_crc(p, p + PM_WAL_FRAME_HDR, l) != pm_wal_get32(p + 4))
        return "bad checksum";
    *crc_ok = true;
    if (pm_wal_get64(p + 8) != want)
        return "LSN out of sequence";
    *len = l;
    return NULL;
}

/* First offset in [from, n) holding an intact frame with an LSN after `after`
 * (a record a crash could not have left there unless it was written later);
 * -1 if none. The LSN test comes first because it rejects zeros and most
 * garbage without checksumming. */
int64_t
pm_wal_find_intact(const uint8_t *map, size_t from, size_t n, uint64_t after)
{
    if (n < PM_WAL_FRAME_HDR)
        return -1;
    uint64_t most = after + (n - from) / PM_WAL_FRAME_HDR + 1;
    for (size_t q = from; q + PM_WAL_FRAME_HDR <= n; q++) {
        uint64_t lsn = pm_wal_get64(map + q + 8);
        if (lsn <= after || lsn > most)
            continue;
        uint32_t l = pm_wal_get32(map + q);
        if (l > PM_WAL_MAX_RECORD || (size_t) l > n - q - PM_WAL_FRAME_HDR)
            continue;
        if (s_frame_crc(map + q, map + q + PM_WAL_FRAME_HDR, l) == pm_wal_get32(map + q + 4))
            return (int64_t) q;
    }
    return -1;
}

/* --- file names ------------------------------------------------------------ */

void
pm_wal_seg_name(char *out, size_t n, uint64_t base)
{
    snprintf(out, n, "wal-%016" PRIx64 ".log", base);
}

void
pm_wal_snap_name(char *out, size_t n, uint64_t lsn, bool tmp)
{
    snprintf(out, n, "snap-%016" PRIx64 ".snap%s", lsn, tmp ? ".tmp" : "");
}

/* Parses "<prefix><16 hex><suffix>" exactly. */
bool
pm_wal_parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *out)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (strlen(name) != pl + 16 + sl || strncmp(name, prefix, pl) || strcmp(name + pl + 16, suffix))
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[pl + i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t) d;
    }
    *out = v;
    return true;
}

