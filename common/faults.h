/*
 * common/faults — fault injection for the tests, compiled in only when
 * SCF_FAULT_INJECTION is defined (the test build of the library; never the
 * shipped one).  Every allocation of the library goes through these
 * wrappers there, so a test can fail the Nth allocation; reads completed by
 * io_uring pass through a hook that can turn them into EIO, short reads,
 * -EAGAIN or stalls.  Included last by every library source file.
 */
#ifndef SCF_COMMON_FAULTS_H
#define SCF_COMMON_FAULTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What a read-fault hook may do to a completion: return the new result. */
/* `file` is the index of the read's file in its loader's collection. */
typedef int (*scf__read_fault_fn)(void *ctx, uint32_t file, uint64_t file_off, uint32_t len,
                                  int res);

#ifdef SCF_FAULT_INJECTION
/* Fail the allocation that comes `n` allocations from now (0: never). */
void scf__fault_alloc_after(uint64_t n);
/* Allocations failed so far, and made so far, since the last reset. */
uint64_t scf__fault_alloc_failed(void);
uint64_t scf__fault_alloc_count(void);
void *scf__fi_malloc(size_t n);
void *scf__fi_calloc(size_t n, size_t size);
void *scf__fi_realloc(void *p, size_t n);
char *scf__fi_strdup(const char *s);
int scf__fi_fail_now(void);
/* Hook every read completion of every loader opened from now on (NULL: none). */
void scf__fault_read_hook(scf__read_fault_fn fn, void *ctx);
int scf__fault_read(uint32_t file, uint64_t file_off, uint32_t len, int res);

#define malloc(n) scf__fi_malloc(n)
#define calloc(n, s) scf__fi_calloc(n, s)
#define realloc(p, n) scf__fi_realloc(p, n)
#define strdup(s) scf__fi_strdup(s)
#define SCF__FAULT_READ(file, off, len, res) scf__fault_read(file, off, len, res)
#define SCF__FAULT_MMAP() scf__fi_fail_now()
#else
#define SCF__FAULT_READ(file, off, len, res) (res)
#define SCF__FAULT_MMAP() 0
#endif

#endif
