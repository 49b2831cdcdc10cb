#ifndef VIRTMETER_ESCAPE_H
#define VIRTMETER_ESCAPE_H

#include <stddef.h>
#include <stdint.h>

/// Writes the `length` bytes at `json` (a record's sample dicts, separated by "\n") at `out` as the content of a JSON
/// string: a backslash before every quote and backslash, and ", " for every "\n". `out` has room for `2 * length`
/// bytes; nothing is written past them (bytes past the returned count may be overwritten). Returns the bytes
/// written. Uses SSSE3 shuffles (8 bytes per step) where the CPU has them, else `virtmeter_escape_nested_portable`.
size_t virtmeter_escape_nested(const uint8_t *json, size_t length, uint8_t *out);

/// The same as `virtmeter_escape_nested`, a byte at a time through a table: what runs without SSSE3 (for tests).
size_t virtmeter_escape_nested_portable(const uint8_t *json, size_t length, uint8_t *out);

/// 1 when `virtmeter_escape_nested` uses the SSSE3 shuffles on this CPU, else 0.
int virtmeter_escape_nested_vectorised(void);

#endif
