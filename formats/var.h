/*
 * formats/var — the gene axis of an AnnData file: a hash of the var index
 * (gene names), so that the files of a collection can be checked to share
 * one gene axis without holding every name.  Thread: the caller of scf_open().
 */
#ifndef SCF_FORMATS_VAR_H
#define SCF_FORMATS_VAR_H

#include <stdint.h>

/*
 * FNV-1a hash of the var index that goes with matrix `key` (raw/var for
 * raw/X, var otherwise) and the number of names.  Returns 1 when found, 0
 * when the file has no readable string index (then nothing can be
 * compared), -ENOMEM when out of memory.
 */
int scf__var_hash(const char *path, const char *key, uint64_t *hash, uint64_t *n);

#endif
