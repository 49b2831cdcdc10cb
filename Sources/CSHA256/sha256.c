// SHA-256 compression: with the SHA extensions (SHA-NI: sha256rnds2, sha256msg1/2) where the CPU has them, else
// portable C. Each sample is signed over ~1.3 KB (about 21 blocks), so this is most of the signature's cost;
// written here rather than through a library so that a signature needs no allocation and no copy of the key's
// states (see Signature.swift).
#include "virtmeter_sha256.h"

#include <string.h>

#include "sha256_common.h"

void virtmeter_sha256_init(uint32_t state[8], int sha224) {
    static const uint32_t iv256[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    };
    static const uint32_t iv224[8] = {
        0xc1059ed8, 0x367cd507, 0x3070dd17, 0xf70e5939, 0xffc00b31, 0x68581511, 0x64f98fa7, 0xbefa4fa4,
    };
    memcpy(state, sha224 ? iv224 : iv256, 32);
}

static uint32_t load_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t rotr(uint32_t x, int n) { return x >> n | x << (32 - n); }

static void blocks_portable(uint32_t state[8], const uint8_t *data, size_t blocks) {
    for (; blocks > 0; blocks--, data += 64) {
        uint32_t w[64];
        for (int t = 0; t < 16; t++) w[t] = load_be32(data + 4 * t);
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ w[t - 15] >> 3;
            uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ w[t - 2] >> 10;
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
            uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
    }
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

// The SHA extensions keep the state as two vectors, ABEF and CDGH; each sha256rnds2 does two rounds and each
// 4-word group of the message schedule past the first four comes from sha256msg1/msg2. `streams` (1 or 2, a
// constant where this is inlined) messages go through side by side, their rounds interleaved: sha256rnds2 waits on
// the one before it, and a second, independent message runs in those waits (measured here: two messages take about
// as long as one).
__attribute__((target("sha,sse4.1,ssse3"), always_inline))
static inline void blocks_streams(uint32_t *state[2], const uint8_t *data[2], size_t blocks, const int streams) {
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef[2], cdgh[2];
    for (int s = 0; s < streams; s++) {
        __m128i cdab = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[s][0]), 0xB1);
        __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[s][4]), 0x1B);
        abef[s] = _mm_alignr_epi8(cdab, efgh, 8);
        cdgh[s] = _mm_blend_epi16(efgh, cdab, 0xF0);
    }
    for (size_t block = 0; block < blocks; block++) {
        __m128i abef_before[2], cdgh_before[2], w[2][4];
        for (int s = 0; s < streams; s++) {
            abef_before[s] = abef[s];
            cdgh_before[s] = cdgh[s];
        }
        // Unrolled, the schedule vectors stay in registers and the schedule runs ahead of the rounds.
#pragma clang loop unroll(full)
        for (int group = 0; group < 16; group++) {
#pragma clang loop unroll(full)
            for (int s = 0; s < streams; s++) {
                __m128i words;
                if (group < 4) {
                    const uint8_t *bytes = data[s] + 64 * block + 16 * group;
                    words = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)bytes), byteswap);
                } else {
                    // W[t] = W[t-16] + s0(W[t-15]) + W[t-7] + s1(W[t-2]), four words at a time.
                    __m128i x0 = w[s][group & 3], x1 = w[s][(group + 1) & 3];
                    __m128i x2 = w[s][(group + 2) & 3], x3 = w[s][(group + 3) & 3];
                    words = _mm_sha256msg1_epu32(x0, x1);
                    words = _mm_add_epi32(words, _mm_alignr_epi8(x3, x2, 4));
                    words = _mm_sha256msg2_epu32(words, x3);
                }
                w[s][group & 3] = words;
                __m128i message = _mm_add_epi32(words, _mm_loadu_si128((const __m128i *)&K[4 * group]));
                cdgh[s] = _mm_sha256rnds2_epu32(cdgh[s], abef[s], message);
                abef[s] = _mm_sha256rnds2_epu32(abef[s], cdgh[s], _mm_shuffle_epi32(message, 0x0E));
            }
        }
        for (int s = 0; s < streams; s++) {
            abef[s] = _mm_add_epi32(abef[s], abef_before[s]);
            cdgh[s] = _mm_add_epi32(cdgh[s], cdgh_before[s]);
        }
    }
    for (int s = 0; s < streams; s++) {
        __m128i feba = _mm_shuffle_epi32(abef[s], 0x1B);
        __m128i dchg = _mm_shuffle_epi32(cdgh[s], 0xB1);
        _mm_storeu_si128((__m128i *)&state[s][0], _mm_blend_epi16(feba, dchg, 0xF0));
        _mm_storeu_si128((__m128i *)&state[s][4], _mm_alignr_epi8(dchg, feba, 8));
    }
}

__attribute__((target("sha,sse4.1,ssse3")))
static void blocks_hardware(uint32_t state[8], const uint8_t *data, size_t blocks) {
    uint32_t *states[2] = {state, state};
    const uint8_t *datas[2] = {data, data};
    blocks_streams(states, datas, blocks, 1);
}

__attribute__((target("sha,sse4.1,ssse3")))
static void blocks_hardware_pair(uint32_t first[8], const uint8_t *first_data, uint32_t second[8],
                                 const uint8_t *second_data, size_t blocks) {
    uint32_t *states[2] = {first, second};
    const uint8_t *datas[2] = {first_data, second_data};
    blocks_streams(states, datas, blocks, 2);
}

static int cpu_has_sha(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    int sha = (ebx >> 29) & 1;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int sse41 = (ecx >> 19) & 1, ssse3 = (ecx >> 9) & 1;
    return sha && sse41 && ssse3;
}
#endif

// -1: not yet known. Read and written atomically: every thread signs, and tests turn the extensions off and on.
static int use_hardware = -1;

int virtmeter_sha256_hardware(void) {
#if defined(__x86_64__)
    int known = __atomic_load_n(&use_hardware, __ATOMIC_RELAXED);
    if (known < 0) {
        known = cpu_has_sha();
        __atomic_store_n(&use_hardware, known, __ATOMIC_RELAXED);
    }
    return known;
#else
    return 0;
#endif
}

void virtmeter_sha256_use_hardware(int on) {
#if defined(__x86_64__)
    __atomic_store_n(&use_hardware, on && cpu_has_sha(), __ATOMIC_RELAXED);
#else
    (void)on;
#endif
}

void virtmeter_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks) {
#if defined(__x86_64__)
    if (virtmeter_sha256_hardware()) {
        blocks_hardware(state, data, blocks);
        return;
    }
#endif
    blocks_portable(state, data, blocks);
}

static void write_digest(const uint32_t state[8], uint8_t digest[32]) {
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(state[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(state[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(state[i] >> 8);
        digest[4 * i + 3] = (uint8_t)state[i];
    }
}

void virtmeter_sha256_finish(uint32_t state[8], const uint8_t *data, size_t length, uint64_t prefix,
                             uint8_t digest[32]) {
    padded_message message;
    pad(&message, data, length, prefix);
    virtmeter_sha256_blocks(state, data, message.whole);
    virtmeter_sha256_blocks(state, message.tail, message.blocks - message.whole);
    write_digest(state, digest);
}

void virtmeter_hmac_sha256(const uint32_t inner[8], const uint32_t outer[8], const uint8_t *message, size_t length,
                           uint8_t mac[32]) {
    uint32_t state[8];
    uint8_t inner_digest[32];
    memcpy(state, inner, sizeof state);
    virtmeter_sha256_finish(state, message, length, 64, inner_digest);
    memcpy(state, outer, sizeof state);
    virtmeter_sha256_finish(state, inner_digest, 32, 64, mac);
}

void virtmeter_hmac_sha256_pair(const uint32_t inner[8], const uint32_t outer[8], const uint8_t *first,
                                size_t first_length, const uint8_t *second, size_t second_length,
                                uint8_t first_mac[32], uint8_t second_mac[32]) {
#if defined(__x86_64__)
    if (virtmeter_sha256_hardware()) {
        // Both messages' blocks go through side by side, their padded last blocks and the outer hashes (one block
        // each) too; only the blocks one has beyond the other's go alone.
        uint32_t first_state[8], second_state[8];
        uint8_t first_digest[32], second_digest[32];
        padded_message a, b;
        pad(&a, first, first_length, 64);
        pad(&b, second, second_length, 64);
        memcpy(first_state, inner, sizeof first_state);
        memcpy(second_state, inner, sizeof second_state);
        size_t common = a.whole < b.whole ? a.whole : b.whole, both = a.blocks < b.blocks ? a.blocks : b.blocks;
        blocks_hardware_pair(first_state, first, second_state, second, common);
        for (size_t k = common; k < both; k++) {
            blocks_hardware_pair(first_state, block_at(&a, k), second_state, block_at(&b, k), 1);
        }
        for (size_t k = both; k < a.blocks; k++) blocks_hardware(first_state, block_at(&a, k), 1);
        for (size_t k = both; k < b.blocks; k++) blocks_hardware(second_state, block_at(&b, k), 1);
        write_digest(first_state, first_digest);
        write_digest(second_state, second_digest);
        pad(&a, first_digest, 32, 64);
        pad(&b, second_digest, 32, 64);
        memcpy(first_state, outer, sizeof first_state);
        memcpy(second_state, outer, sizeof second_state);
        blocks_hardware_pair(first_state, a.tail, second_state, b.tail, 1);
        write_digest(first_state, first_mac);
        write_digest(second_state, second_mac);
        return;
    }
#endif
    virtmeter_hmac_sha256(inner, outer, first, first_length, first_mac);
    virtmeter_hmac_sha256(inner, outer, second, second_length, second_mac);
}
