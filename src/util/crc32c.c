#include "util/crc32c.h"

#include "util/endian.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HAVE_X86_CRC 1
#endif

/* Reflected Castagnoli polynomial. */
#define POLY 0x82F63B78u

/* slice[k][b]: the register after feeding byte b followed by k zero bytes
 * into a zero register, which lets the software path fold 8 bytes per step. */
static uint32_t slice[8][256];
static pthread_once_t slice_once = PTHREAD_ONCE_INIT;

static void slice_init_cb(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int bit = 0; bit < 8; bit++)
            c = (c >> 1) ^ (POLY & (0u - (c & 1u)));
        slice[0][b] = c;
    }
    for (int k = 1; k < 8; k++) {
        for (int b = 0; b < 256; b++) {
            uint32_t prev = slice[k - 1][b];
            slice[k][b] = (prev >> 8) ^ slice[0][prev & 0xffu];
        }
    }
}

/* `reg` is the raw shift register (not inverted). */
static uint32_t update_sw(uint32_t reg, const uint8_t *p, size_t len)
{
    while (len >= 8) {
        uint32_t lo = reg ^ le_get32(p);
        uint32_t hi = le_get32(p + 4);
        reg = slice[7][lo & 0xffu] ^ slice[6][(lo >> 8) & 0xffu] ^ slice[5][(lo >> 16) & 0xffu] ^
              slice[4][lo >> 24] ^ slice[3][hi & 0xffu] ^ slice[2][(hi >> 8) & 0xffu] ^
              slice[1][(hi >> 16) & 0xffu] ^ slice[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    for (; len > 0; len--, p++)
        reg = (reg >> 8) ^ slice[0][(reg ^ *p) & 0xffu];
    return reg;
}

uint32_t crc32c_extend_sw(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&slice_once, slice_init_cb);
    return ~update_sw(~crc, data, len);
}

#ifdef HAVE_X86_CRC
/* The crc32 instruction consumes a 64-bit operand least significant byte
 * first, which on x86 is memory order, so a plain (unaligned) load is right. */
__attribute__((target("sse4.2"))) static uint32_t update_hw(uint32_t reg, const uint8_t *p,
                                                            size_t len)
{
    uint64_t wide = reg;
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof(word));
        wide = _mm_crc32_u64(wide, word);
        p += 8;
        len -= 8;
    }
    reg = (uint32_t)wide;
    for (; len > 0; len--, p++)
        reg = _mm_crc32_u8(reg, *p);
    return reg;
}
#endif

bool crc32c_hw_available(void)
{
#ifdef HAVE_X86_CRC
    return __builtin_cpu_supports("sse4.2") != 0;
#else
    return false;
#endif
}

uint32_t crc32c_extend(uint32_t crc, const void *data, size_t len)
{
#ifdef HAVE_X86_CRC
    if (crc32c_hw_available())
        return ~update_hw(~crc, data, len);
#endif
    return crc32c_extend_sw(crc, data, len);
}

uint32_t crc32c(const void *data, size_t len)
{
    return crc32c_extend(0, data, len);
}
