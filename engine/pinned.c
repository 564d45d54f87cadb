/*
 * engine/pinned — page-locked arenas and page-aligned staging.
 * Thread: any; the only shared state is the all_locked flag (atomic).
 */
#include "engine/pinned.h"

#include <sys/mman.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

void scf__pinned_init(scf__pinned *pa, const scf_allocator *user, int try_lock)
{
	pa->user = *user;
	pa->try_lock = try_lock && !user->alloc;
	pa->all_locked = pa->try_lock || user->alloc;
}

void *scf__pages_alloc(size_t size)
{
	if (SCF__FAULT_MMAP())
		return NULL;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void scf__pages_free(void *p, size_t size)
{
	if (p)
		munmap(p, size);
}

void *scf__pinned_alloc(scf__pinned *pa, size_t size)
{
	void *p;

	if (pa->user.alloc)
		return SCF__FAULT_MMAP() ? NULL : pa->user.alloc(pa->user.opaque, size);
	p = scf__pages_alloc(size);
	if (p && pa->try_lock && mlock(p, size) != 0)
		__atomic_store_n(&pa->all_locked, 0, __ATOMIC_RELAXED);
	return p;
}

void scf__pinned_free(scf__pinned *pa, void *p, size_t size)
{
	if (!p)
		return;
	if (pa->user.alloc) {
		if (pa->user.free)
			pa->user.free(pa->user.opaque, p, size);
		return;
	}
	/* munmap drops any lock with the mapping. */
	scf__pages_free(p, size);
}
