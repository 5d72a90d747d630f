/*
 * wal_format.h - the bytes of the write-ahead log (the format itself is
 * described in wal.h): segment and snapshot headers, record frames and their
 * CRC32C, file names. Pure: no I/O, no globals but the CRC table (built
 * once, thread-safe).
 */
#ifndef PM_WAL_FORMAT_H
#define PM_WAL_FORMAT_H

#include "wal.h"

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Segment header: magic + first LSN. */
#define PM_WAL_SEG_MAGIC "PMWAL001"
#define PM_WAL_SEG_HDR 16
/* Record frame header: len, crc, lsn. */
#define PM_WAL_FRAME_HDR 16
/* Snapshot header and footer: magic, u64, crc, zero pad. */
#define PM_WAL_SNAP_MAGIC "PMWSNAP1"
#define PM_WAL_SNAP_END "PMWSEND1"
#define PM_WAL_SNAP_HDR 24
#define PM_WAL_SNAP_FTR 24

/* --- little-endian fields -------------------------------------------------- */

static inline void
pm_wal_put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static inline void
pm_wal_put64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static inline uint32_t
pm_wal_get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static inline uint64_t
pm_wal_get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

/* Builds the CRC32C table; pm_wal_frame_put and the checks need it (as does
 * pm_wal_crc32c, which calls this itself). Idempotent, thread-safe. */
void pm_wal_crc_init(void);

/* Writes the frame of record rec (len bytes) with LSN lsn to out, which has
 * PM_WAL_FRAME_HDR + len bytes. */
void pm_wal_frame_put(uint8_t *out, uint64_t lsn, const void *rec, size_t len);

/* Checks the frame at p (n bytes left in the file) expecting LSN want. NULL if
 * good (length in *len), else what is wrong; *crc_ok says whether the frame was
 * intact and only its LSN was wrong. */
const char *pm_wal_frame_check(const uint8_t *p, size_t n, uint64_t want, uint32_t *len,
                               bool *crc_ok);

/* First offset in [from, n) of map holding an intact frame with an LSN after
 * `after`; -1 if none. */
int64_t pm_wal_find_intact(const uint8_t *map, size_t from, size_t n, uint64_t after);

/* "wal-<16 hex>.log" of the segment whose first LSN is base. */
void pm_wal_seg_name(char *out, size_t n, uint64_t base);

/* "snap-<16 hex>.snap" (".snap.tmp" while written) of the snapshot at lsn. */
void pm_wal_snap_name(char *out, size_t n, uint64_t lsn, bool tmp);

/* Parses "<prefix><16 hex><suffix>" exactly into *out. */
bool pm_wal_parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *out);

#endif
