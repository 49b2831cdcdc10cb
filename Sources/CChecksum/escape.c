// The envelope escape: a record's sample JSON written as the content of the `oslo.message` string. It runs over every
// byte that goes on the bus, and sample JSON has a quote every 5 to 8 bytes, so it expands 8 bytes per step with one
// shuffle (SSSE3) instead of looking for the next special byte.
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
    vectorised = __builtin_cpu_supports("ssse3");
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
#endif

size_t virtmeter_escape_nested(const uint8_t *json, size_t length, uint8_t *out) {
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
