#ifndef VIRTMETER_ESCAPE_H
#define VIRTMETER_ESCAPE_H

#include <stddef.h>
#include <stdint.h>

/// Writes the `length` bytes at `json` (a record's sample dicts, separated by "\n") at `out` as the content of a JSON
/// string: a backslash before every quote and backslash, and ", " for every "\n". `out` has room for `2 * length`
/// bytes; nothing is written past them (bytes past the returned count may be overwritten). Returns the bytes
/// written. Uses AVX-512 VBMI2 byte expands (32 bytes per step, with BMI2) where the CPU has them, else SSSE3 shuffles
/// (8 bytes per step, `virtmeter_escape_nested_ssse3`), else `virtmeter_escape_nested_portable`.
size_t virtmeter_escape_nested(const uint8_t *json, size_t length, uint8_t *out);

/// The same as `virtmeter_escape_nested`, a byte at a time through a table: what runs without SSSE3 (for tests).
size_t virtmeter_escape_nested_portable(const uint8_t *json, size_t length, uint8_t *out);

/// The same as `virtmeter_escape_nested`, with SSSE3 shuffles even where the CPU has AVX-512 (portably without
/// SSSE3): for tests.
size_t virtmeter_escape_nested_ssse3(const uint8_t *json, size_t length, uint8_t *out);

/// What `virtmeter_escape_nested` uses on this CPU: 2 the AVX-512 expands, 1 the SSSE3 shuffles, 0 the portable loop.
int virtmeter_escape_nested_vectorised(void);

#endif
