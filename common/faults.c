/*
 * common/faults — the test build's allocation and read fault injector.
 * Its state is process-wide on purpose: it stands for the environment
 * (malloc, the disk), which is process-wide too.  Compiled empty otherwise.
 */
#ifdef SCF_FAULT_INJECTION
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/faults.h"

#undef malloc
#undef calloc
#undef realloc
#undef strdup

static _Atomic uint64_t countdown, failed, made;
static _Atomic(scf__read_fault_fn) read_fn;
static void *_Atomic read_ctx;

void scf__fault_alloc_after(uint64_t n)
{
	atomic_store(&failed, 0);
	atomic_store(&made, 0);
	atomic_store(&countdown, n);
}

uint64_t scf__fault_alloc_failed(void) { return atomic_load(&failed); }
uint64_t scf__fault_alloc_count(void) { return atomic_load(&made); }

/* 1 when this allocation is the one chosen to fail. */
int scf__fi_fail_now(void)
{
	uint64_t c = atomic_load(&countdown);

	atomic_fetch_add(&made, 1);
	while (c > 0) {
		if (atomic_compare_exchange_weak(&countdown, &c, c - 1)) {
			if (c == 1) {
				atomic_fetch_add(&failed, 1);
				return 1;
			}
			return 0;
		}
	}
	return 0;
}

void *scf__fi_malloc(size_t n) { return scf__fi_fail_now() ? NULL : malloc(n); }
void *scf__fi_calloc(size_t n, size_t s) { return scf__fi_fail_now() ? NULL : calloc(n, s); }
void *scf__fi_realloc(void *p, size_t n) { return scf__fi_fail_now() ? NULL : realloc(p, n); }
char *scf__fi_strdup(const char *s) { return scf__fi_fail_now() ? NULL : strdup(s); }

void scf__fault_read_hook(scf__read_fault_fn fn, void *ctx)
{
	atomic_store(&read_ctx, ctx);
	atomic_store(&read_fn, fn);
}

int scf__fault_read(uint32_t file, uint64_t file_off, uint32_t len, int res)
{
	scf__read_fault_fn fn = atomic_load(&read_fn);
	return fn ? fn(atomic_load(&read_ctx), file, file_off, len, res) : res;
}
#else
typedef int scf__faults_unused; /* ISO C wants something in a translation unit */
#endif
