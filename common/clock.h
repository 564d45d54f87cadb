/*
 * common/clock — the monotonic clock in nanoseconds, for the waits and the
 * decode and assembly times scf_stats reports.  Depends on nothing else in
 * the project.
 */
#ifndef SCF_COMMON_CLOCK_H
#define SCF_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t scf__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#endif
