/*
 * engine/pinned — memory for output arenas and staging.  Output arenas are
 * page-locked (mmap + mlock) so a consumer can DMA from them, or come from
 * the caller's allocator (cudaHostAlloc, a framework's pinned pool).  When
 * RLIMIT_MEMLOCK is too low, arenas stay unlocked and `pinned` says so.
 * Thread: whichever thread grows an arena (I/O thread or decode worker);
 * the struct is read-only after init except the atomic flag.
 */
#ifndef SCF_ENGINE_PINNED_H
#define SCF_ENGINE_PINNED_H

#include <stddef.h>

#include "scfetch.h"

typedef struct scf__pinned {
	scf_allocator user;   /* used when user.alloc != NULL */
	int try_lock;         /* 0 with SCF_F_NO_PIN */
	int all_locked;       /* atomic: cleared by the first failed mlock */
} scf__pinned;

void scf__pinned_init(scf__pinned *pa, const scf_allocator *user, int try_lock);
/* Output arena of `size` bytes; NULL on failure. */
void *scf__pinned_alloc(scf__pinned *pa, size_t size);
void scf__pinned_free(scf__pinned *pa, void *p, size_t size);

/* Page-aligned plain memory (staging for O_DIRECT reads). */
void *scf__pages_alloc(size_t size);
void scf__pages_free(void *p, size_t size);

#endif
