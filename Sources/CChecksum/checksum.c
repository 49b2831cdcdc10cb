// The spool's record checksum, CRC-32C, in C: the CPU's crc32 instruction (SSE 4.2) takes 8 bytes at a time, and
// Swift cannot reach it. Every sample (about 1.3 KB) is checksummed once on the way to disk and once on the way back.
// One crc32 waits for the one before (3 cycles), so a long buffer is cut in three streams computed side by side and
// joined with carry-less multiplies (PCLMULQDQ): about three times as fast.
#include "checksum.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

// The product of two polynomials modulo the CRC's, both bit-reflected (bit 31 is x^0).
static uint32_t multiply(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m) product ^= b;
        b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
    }
    return product;
}

// x^n modulo the CRC's polynomial, bit-reflected.
static uint32_t power(uint64_t n) {
    uint32_t result = 1u << 31, square = 1u << 30;
    for (; n; n >>= 1) {
        if (n & 1) result = multiply(result, square);
        square = multiply(square, square);
    }
    return result;
}

// The three streams' block sizes (multiples of 8): long blocks while the buffer holds three, then short ones.
enum { long_block = 4096, short_block = 256 };
// For each size, the operators that append 1 and 2 blocks of zeros to a CRC: x^(8 * bytes - 33) (see `shift`).
static uint32_t long_shift[2], short_shift[2];
static int hardware, interleaved;

static void make_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? POLY ^ (c >> 1) : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++) table[t][n] = table[0][table[t - 1][n] & 0xFF] ^ (table[t - 1][n] >> 8);
    for (int blocks = 1; blocks <= 2; blocks++) {
        long_shift[blocks - 1] = power(8ull * long_block * blocks - 33);
        short_shift[blocks - 1] = power(8ull * short_block * blocks - 33);
    }
#if defined(__x86_64__)
    hardware = __builtin_cpu_supports("sse4.2");
    interleaved = hardware && __builtin_cpu_supports("pclmul");
#endif
}

static uint32_t crc_software(uint32_t crc, const uint8_t *p, size_t length) {
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = table[7][word & 0xFF] ^ table[6][(word >> 8) & 0xFF] ^ table[5][(word >> 16) & 0xFF]
            ^ table[4][(word >> 24) & 0xFF] ^ table[3][(word >> 32) & 0xFF] ^ table[2][(word >> 40) & 0xFF]
            ^ table[1][(word >> 48) & 0xFF] ^ table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--) crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
static inline uint64_t load(const uint8_t *p) {
    uint64_t word;
    memcpy(&word, p, 8);
    return word;
}

// `crc` followed by n zero bytes, given `operator` = x^(8n - 33): the carry-less product is crc * x^(8n - 33) shifted
// up by one bit (as crc32 reads a 64-bit word), and crc32 of it multiplies by x^32 and reduces.
__attribute__((target("sse4.2,pclmul"))) static inline uint32_t shift(uint32_t crc, uint32_t operator) {
    __m128i product = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)crc), _mm_cvtsi32_si128((int)operator), 0);
    return (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(product));
}

// While three blocks of `block` bytes remain: CRC each block apart (the first from `crc`, the others from 0) and join
// them: crc(A B C) = crc(A) shifted by 2 blocks ^ crc(B) shifted by 1 ^ crc(C).
__attribute__((target("sse4.2,pclmul"))) static inline uint32_t crc_streams(
    uint32_t crc, const uint8_t **p, size_t *length, size_t block, const uint32_t operators[2]) {
    while (*length >= 3 * block) {
        uint64_t a = crc, b = 0, c = 0;
        const uint8_t *next = *p, *end = *p + block;
        for (; next < end; next += 8) {
            a = _mm_crc32_u64(a, load(next));
            b = _mm_crc32_u64(b, load(next + block));
            c = _mm_crc32_u64(c, load(next + 2 * block));
        }
        crc = shift((uint32_t)a, operators[1]) ^ shift((uint32_t)b, operators[0]) ^ (uint32_t)c;
        *p += 3 * block;
        *length -= 3 * block;
    }
    return crc;
}

__attribute__((target("sse4.2,pclmul"))) static uint32_t crc_interleaved(uint32_t crc, const uint8_t **p,
                                                                         size_t *length) {
    crc = crc_streams(crc, p, length, long_block, long_shift);
    return crc_streams(crc, p, length, short_block, short_shift);
}

__attribute__((target("sse4.2"))) static uint32_t crc_hardware(uint32_t crc, const uint8_t *p, size_t length) {
    if (interleaved && length >= 3 * short_block) crc = crc_interleaved(crc, &p, &length);
    uint64_t c = crc;
    while (length >= 8) {
        c = _mm_crc32_u64(c, load(p));
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (length--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

uint32_t virtmeter_crc32c(uint32_t crc, const void *data, size_t length) {
    pthread_once(&once, make_tables);
#if defined(__x86_64__)
    if (hardware) return ~crc_hardware(~crc, data, length);
#endif
    return ~crc_software(~crc, data, length);
}

uint32_t virtmeter_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    pthread_once(&once, make_tables);
    return ~crc_software(~crc, data, length);
}
