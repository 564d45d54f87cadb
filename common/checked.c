/*
 * common/checked — overflow-checked allocation, path-shortening messages and
 * the copy into a caller-sized struct.
 */
#include "common/checked.h"

#include <stdio.h>
#include <string.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

void *scf__alloc_array(uint64_t n, size_t size)
{
	uint64_t bytes;

	if (scf__mul_overflows(n ? n : 1, size ? size : 1, &bytes) || bytes > SIZE_MAX / 2)
		return NULL;
	return malloc((size_t)bytes);
}

void *scf__calloc_array(uint64_t n, size_t size)
{
	uint64_t bytes;

	if (scf__mul_overflows(n ? n : 1, size ? size : 1, &bytes) || bytes > SIZE_MAX / 2)
		return NULL;
	return calloc((size_t)(n ? n : 1), size ? size : 1);
}

void scf__copy_sized(void *out, const void *ours, size_t len)
{
	uint32_t size;

	memcpy(&size, out, sizeof(size));
	size_t n = size < len ? size : len;
	if (n > sizeof(size))
		memcpy((char *)out + sizeof(size), (const char *)ours + sizeof(size),
		       n - sizeof(size));
}

void scf__path_msg(char *err, size_t errlen, const char *path, const char *what)
{
	size_t plen = strlen(path), wlen = strlen(what);

	if (!err || errlen == 0)
		return;
	if (plen + 2 + wlen < errlen || errlen < 64) {
		snprintf(err, errlen, "%s: %s", path, what);
		return;
	}
	/* Keep the reason whole (up to most of the buffer), then as much of the
	 * path's start and end as is left: the file name is at the end. */
	size_t room = errlen - 1;
	size_t wkeep = wlen < room - 40 ? wlen : room - 40;
	size_t pkeep = room - wkeep - 2 - 3; /* ": " and "..." */
	size_t head = pkeep / 3, tail = pkeep - head;
	if (plen <= pkeep) {
		head = plen;
		tail = 0;
	}
	snprintf(err, errlen, "%.*s%s%s: %.*s", (int)head, path, tail ? "..." : "",
	         tail ? path + plen - tail : "", (int)wkeep, what);
}
