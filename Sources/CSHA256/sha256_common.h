// What both SHA-256 files share: the round constants and a message's padding. Private to the target.
#ifndef VIRTMETER_SHA256_COMMON_H
#define VIRTMETER_SHA256_COMMON_H

#include <stdint.h>
#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

// A message as SHA-256 compresses it: its whole blocks where they lie, then its last bytes with the padding and the
// length in bits (of `prefix` bytes compressed before and the message) in one or two blocks of `tail`.
typedef struct {
    const uint8_t *data;
    size_t whole;
    size_t blocks;
    uint8_t tail[128];
} padded_message;

static inline void pad(padded_message *message, const uint8_t *data, size_t length, uint64_t prefix) {
    message->data = data;
    message->whole = length / 64;
    size_t rest = length - 64 * message->whole;
    memset(message->tail, 0, sizeof message->tail);
    memcpy(message->tail, data + 64 * message->whole, rest);
    message->tail[rest] = 0x80;
    size_t tail_length = rest < 56 ? 64 : 128;
    uint64_t bits = (prefix + length) * 8;
    for (int i = 0; i < 8; i++) message->tail[tail_length - 1 - i] = (uint8_t)(bits >> (8 * i));
    message->blocks = message->whole + tail_length / 64;
}

static inline const uint8_t *block_at(const padded_message *message, size_t index) {
    return index < message->whole ? message->data + 64 * index : message->tail + 64 * (index - message->whole);
}

#endif
