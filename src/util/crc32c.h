/* crc32c: CRC-32C (Castagnoli) checksums for log records and checkpoints. */
#ifndef LKV_UTIL_CRC32C_H
#define LKV_UTIL_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * All values are finalised CRCs (initial value ~0, final xor ~0, as in
 * RFC 3720), so crc32c("123456789") == 0xE3069283 and the values can be
 * stored on disk and compared directly. Thread-safe; never fails.
 */

/* CRC-32C of `len` bytes at `data` (data may be NULL when len is 0). */
uint32_t crc32c(const void *data, size_t len);

/* Continues a CRC: crc32c_extend(crc32c(a), b) == crc32c(a || b), and
 * crc32c_extend(0, b) == crc32c(b), because 0 is the CRC of no bytes.
 * Lets a writer checksum scattered pieces (iovecs) without copying them. */
uint32_t crc32c_extend(uint32_t crc, const void *data, size_t len);

/* Internal, for tests and benchmarks: the portable table-driven path that
 * crc32c_extend() uses when the CPU lacks SSE4.2. Same contract. */
uint32_t crc32c_extend_sw(uint32_t crc, const void *data, size_t len);

/* Internal, for tests: whether crc32c_extend() uses the crc32 instruction. */
bool crc32c_hw_available(void);

#endif
