// SHA-256 (FIPS 180-4) for the sample signature (HMAC-SHA256) and ceilometer's SHA-224 host hash: the CPU's SHA
// extensions where it has them, else portable C. The state is the eight chaining words; the caller keeps it.
#ifndef VIRTMETER_SHA256_H
#define VIRTMETER_SHA256_H

#include <stddef.h>
#include <stdint.h>

/// Sets `state` to SHA-256's initial value (`sha224` non-zero: SHA-224's).
void virtmeter_sha256_init(uint32_t state[8], int sha224);

/// Compresses `blocks` 64-byte blocks of `data` into `state`.
void virtmeter_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);

/// Hashes the last `length` bytes of a message into `state` and writes the digest (32 bytes, big-endian words) to
/// `digest`. `prefix` is the number of bytes compressed into `state` before (a multiple of 64).
void virtmeter_sha256_finish(uint32_t state[8], const uint8_t *data, size_t length, uint64_t prefix,
                             uint8_t digest[32]);

/// HMAC-SHA256 of `message` with the key's precomputed states: `inner` after the key ^ ipad block, `outer` after the
/// key ^ opad block. Writes the 32-byte code to `mac`.
void virtmeter_hmac_sha256(const uint32_t inner[8], const uint32_t outer[8], const uint8_t *message, size_t length,
                           uint8_t mac[32]);

/// The HMAC-SHA256 codes of two messages at once (as two calls of `virtmeter_hmac_sha256`): with the SHA
/// extensions their blocks go through side by side, which costs about what one message does.
void virtmeter_hmac_sha256_pair(const uint32_t inner[8], const uint32_t outer[8], const uint8_t *first,
                                size_t first_length, const uint8_t *second, size_t second_length,
                                uint8_t first_mac[32], uint8_t second_mac[32]);

/// The HMAC-SHA256 codes of `count` messages, 32 bytes each back to back at `macs`, as `count` calls of
/// `virtmeter_hmac_sha256` give them: 11 to 16 of them at once with AVX-512, 16 lanes side by side, where the CPU has
/// it, else two at a time.
void virtmeter_hmac_sha256_batch(const uint32_t inner[8], const uint32_t outer[8], const uint8_t *const messages[],
                                 const size_t lengths[], int count, uint8_t *macs);

/// Whether the SHA extensions are used; `virtmeter_sha256_use_hardware(0)` turns them off (for tests of the
/// portable code), `1` back on where the CPU has them.
int virtmeter_sha256_hardware(void);
void virtmeter_sha256_use_hardware(int on);

#endif
