/*
 * common/checked — sizes computed from untrusted numbers (file counts and
 * caller options), and messages that keep their reason.  Depends on nothing
 * else in the project.
 *
 * Every allocation sized by a count that came from a file or from the
 * caller goes through scf__alloc_array(): the product is checked, so a
 * count near 2^61 fails as -ENOMEM/-EOVERFLOW instead of wrapping to a few
 * bytes that later code writes past.
 */
#ifndef SCF_COMMON_CHECKED_H
#define SCF_COMMON_CHECKED_H

#include <stddef.h>
#include <stdint.h>

/* *out = a * b; 1 when that overflows 64 bits (then *out is undefined). */
static inline int scf__mul_overflows(uint64_t a, uint64_t b, uint64_t *out)
{
	return __builtin_mul_overflow(a, b, out);
}

/* *out = a + b; 1 when that overflows 64 bits. */
static inline int scf__add_overflows(uint64_t a, uint64_t b, uint64_t *out)
{
	return __builtin_add_overflow(a, b, out);
}

/*
 * malloc(n * size), at least one byte, or NULL when the product overflows
 * size_t or the allocation fails.  calloc semantics with zero = 1.
 */
void *scf__alloc_array(uint64_t n, size_t size);
void *scf__calloc_array(uint64_t n, size_t size);

/*
 * "<path>: <what>" into err, shortening the path in its middle ("...")
 * rather than cutting the reason off when the whole does not fit.
 */
void scf__path_msg(char *err, size_t errlen, const char *path, const char *what);

/*
 * Fill a caller's versioned struct (scf_info, scf_stats, scf_description:
 * a leading uint32_t size, fields only ever added at the end) from ours of
 * `len` bytes: the fields both know, never past the caller's size, which is
 * kept.  The caller checked that size against its struct's first version.
 */
void scf__copy_sized(void *out, const void *ours, size_t len);

#endif
