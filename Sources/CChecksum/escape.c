// The envelope escape: a record's sample JSON written as the content of the `oslo.message` string. It runs over every
// byte that goes on the bus, and sample JSON has a quote every 5 to 8 bytes, so it expands a block per step instead of
// looking for the next special byte: 32 bytes with one byte expand (AVX-512 VBMI2, the slots placed with BMI2) where
// the CPU has it, else 8 bytes with one shuffle (SSSE3), else a byte at a time through a table.
#include "escape.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// The portable loop's table, one load per byte: the two bytes each input byte stores (low 16 bits, in memory order; a
// plain byte stores itself twice and its copy is overwritten by the next byte) and how far it advances (bits 16 on).
static uint32_t entries[256];
// The shuffle's table, indexed by the 8-bit mask of the special bytes among 8 input bytes: where each of up to 16
// output bytes comes from in a vector holding the 8 bytes (0-7, the newline already a space) and their prefixes
// (8-15: a backslash or a comma). A special byte's prefix comes right before it; unused slots are 0x80 (zero).
static uint8_t spread[256][16] __attribute__((aligned(16)));
static uint8_t specials[256];
// The path taken: 2 AVX-512 VBMI2 with BMI2, 1 SSSE3, 0 the portable loop.
static int vectorised;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void make_tables(void) {
    for (int byte = 0; byte < 256; byte++) {
        int special = byte == '"' || byte == '\\' || byte == '\n';
        uint8_t pair[2] = {byte == '\n' ? ',' : special ? '\\' : (uint8_t)byte, byte == '\n' ? ' ' : (uint8_t)byte};
        uint16_t stored;
        memcpy(&stored, pair, 2);
        entries[byte] = stored | (uint32_t)(1 + special) << 16;
    }
    for (int mask = 0; mask < 256; mask++) {
        int slot = 0;
        memset(spread[mask], 0x80, 16);
        for (int index = 0; index < 8; index++) {
            if (mask & 1 << index) spread[mask][slot++] = (uint8_t)(8 + index);
            spread[mask][slot++] = (uint8_t)index;
        }
        specials[mask] = (uint8_t)(slot - 8);
    }
#if defined(__x86_64__)
    // Every CPU with AVX-512 has SSSE3 as well: 2 stands for both.
    int avx512 = __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("bmi2");
    vectorised = avx512 ? 2 : __builtin_cpu_supports("ssse3");
#endif
}

static size_t escape_portable(const uint8_t *json, size_t length, uint8_t *out) {
    size_t position = 0;
    for (size_t index = 0; index < length; index++) {
        uint32_t entry = entries[json[index]];
        uint16_t stored = (uint16_t)entry;
        memcpy(out + position, &stored, 2);
        position += entry >> 16;
    }
    return position;
}

#if defined(__x86_64__)
// The input's 16 or 8 bytes at `bytes` with prefixes: `low` and `high` are the shuffle's sources for bytes 0-7 and
// 8-15, `mask` has a bit for each special byte.
struct expanded {
    __m128i low, high;
    unsigned mask;
};

__attribute__((target("ssse3"))) static inline struct expanded expand(__m128i bytes) {
    const __m128i backslash = _mm_set1_epi8('\\');
    __m128i newline = _mm_cmpeq_epi8(bytes, _mm_set1_epi8('\n'));
    __m128i escaped = _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('"')), _mm_cmpeq_epi8(bytes, backslash));
    __m128i text = _mm_xor_si128(bytes, _mm_and_si128(newline, _mm_set1_epi8('\n' ^ ' ')));
    __m128i prefix = _mm_or_si128(_mm_and_si128(escaped, backslash), _mm_and_si128(newline, _mm_set1_epi8(',')));
    struct expanded result = {
        _mm_unpacklo_epi64(text, prefix), _mm_unpackhi_epi64(text, prefix),
        (unsigned)_mm_movemask_epi8(_mm_or_si128(escaped, newline)),
    };
    return result;
}

// Stores the 8 bytes of `source` (with their prefixes) spread for `mask` at `out`: 16 bytes, of which the first
// 8 + popcount(mask) count. Returns that count.
__attribute__((target("ssse3"))) static inline size_t store(__m128i source, unsigned mask, uint8_t *out) {
    __m128i control = _mm_load_si128((const __m128i *)spread[mask]);
    _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(source, control));
    return 8 + specials[mask];
}

// Each step's 16-byte store starts at most at twice the input's offset and covers 8 input bytes, so it ends within
// twice the input bytes consumed: no store passes `out + 2 * length`. The last 0-7 bytes go the portable way.
__attribute__((target("ssse3"))) static size_t escape_ssse3(const uint8_t *json, size_t length, uint8_t *out) {
    size_t index = 0, position = 0;
    for (; index + 16 <= length; index += 16) {
        struct expanded e = expand(_mm_loadu_si128((const __m128i *)(json + index)));
        position += store(e.low, e.mask & 0xFF, out + position);
        position += store(e.high, e.mask >> 8, out + position);
    }
    if (index + 8 <= length) {
        struct expanded e = expand(_mm_loadl_epi64((const __m128i *)(json + index)));
        position += store(e.low, e.mask & 0xFF, out + position);
        index += 8;
    }
    return position + escape_portable(json + index, length - index, out + position);
}

#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2,bmi2,popcnt")))

// Escapes the 32 bytes of `bytes` (at the end fewer: those whose slots are in `present`, the rest zero) into the first
// `*count` bytes of the result. Each input byte i has two output slots: 2i its prefix, taken when the byte is special,
// and 2i + 1 the byte itself. Packing the taken slots in order, those of bytes are where the expand puts the input's
// bytes, and the others are the prefixes.
TARGET_AVX512 static inline __m512i escape32(__m256i bytes, uint64_t present, size_t *count) {
    // A byte is special when it equals its low nibble's entry: the quote's, backslash's and newline's differ, the
    // others are 0x80 (no byte below 0x80 equals it, and a byte from 0x80 on looks up zero). One shuffle and one
    // compare instead of three compares: the compares share a port with the expand.
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-128, -128, '"', -128, -128, -128, -128, -128, -128, -128, '\n', -128, '\\', -128, -128, -128));
    uint32_t special = _mm256_cmpeq_epi8_mask(_mm256_shuffle_epi8(table, bytes), bytes);
    uint64_t taken = present | _pdep_u64(special, 0x5555555555555555);
    *count = (size_t)_mm_popcnt_u64(taken);
    // A prefix slot is filled with a backslash by the expand itself, and is a comma when a newline follows it.
    __m512i out = _mm512_mask_expand_epi8(_mm512_set1_epi8('\\'), _pext_u64(0xAAAAAAAAAAAAAAAA, taken),
                                          _mm512_zextsi256_si512(bytes));
    // Newlines only separate sample dicts (one in some 1,300 bytes): the fix-up is skipped for most blocks.
    __mmask64 newline = _mm512_cmpeq_epi8_mask(out, _mm512_set1_epi8('\n'));
    if (newline) {
        out = _mm512_mask_mov_epi8(out, newline, _mm512_set1_epi8(' '));
        out = _mm512_mask_mov_epi8(out, newline >> 1, _mm512_set1_epi8(','));
    }
    return out;
}

// Each step's 64-byte store starts at most at twice the input's offset and covers 32 input bytes, so it ends within
// twice the input bytes consumed: no store passes `out + 2 * length`. The last 0-31 bytes are loaded and stored
// under masks, which write only the bytes that count.
TARGET_AVX512 static size_t escape_avx512(const uint8_t *json, size_t length, uint8_t *out) {
    size_t index = 0, position = 0, count;
    for (; index + 32 <= length; index += 32) {
        __m512i escaped = escape32(_mm256_loadu_si256((const __m256i *)(json + index)), 0xAAAAAAAAAAAAAAAA, &count);
        _mm512_storeu_si512(out + position, escaped);
        position += count;
    }
    if (index < length) {
        unsigned rest = (unsigned)(length - index);
        __m256i bytes = _mm256_maskz_loadu_epi8(_bzhi_u32(~0u, rest), json + index);
        __m512i escaped = escape32(bytes, _pdep_u64(_bzhi_u32(~0u, rest), 0xAAAAAAAAAAAAAAAA), &count);
        _mm512_mask_storeu_epi8(out + position, _bzhi_u64(~0ull, (unsigned)count), escaped);
        position += count;
    }
    return position;
}
#endif

size_t virtmeter_escape_nested(const uint8_t *json, size_t length, uint8_t *out) {
    pthread_once(&once, make_tables);
#if defined(__x86_64__)
    if (vectorised == 2) return escape_avx512(json, length, out);
    if (vectorised) return escape_ssse3(json, length, out);
#endif
    return escape_portable(json, length, out);
}

size_t virtmeter_escape_nested_ssse3(const uint8_t *json, size_t length, uint8_t *out) {
    pthread_once(&once, make_tables);
#if defined(__x86_64__)
    if (vectorised) return escape_ssse3(json, length, out);
#endif
    return escape_portable(json, length, out);
}

size_t virtmeter_escape_nested_portable(const uint8_t *json, size_t length, uint8_t *out) {
    pthread_once(&once, make_tables);
    return escape_portable(json, length, out);
}

int virtmeter_escape_nested_vectorised(void) {
    pthread_once(&once, make_tables);
    return vectorised;
}
