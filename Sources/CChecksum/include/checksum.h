#ifndef VIRTMETER_CHECKSUM_H
#define VIRTMETER_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli) of `length` bytes at `data`, continuing from `crc` (0 to start). Uses the CPU's crc32
/// instruction where it has one (SSE 4.2; three streams at once joined with PCLMULQDQ for long buffers), else a table.
uint32_t virtmeter_crc32c(uint32_t crc, const void *data, size_t length);

/// The same as `virtmeter_crc32c`, always through the table: what runs without SSE 4.2 (for tests).
uint32_t virtmeter_crc32c_portable(uint32_t crc, const void *data, size_t length);

#endif
