/*
 * scfetch — stream shuffled minibatches of single-cell matrices from .h5ad
 * files far larger than memory, through io_uring.
 *
 * The one public header.  A loader is opened on one file, or on a
 * collection of files sharing one gene axis, and one matrix (`X`,
 * `layers/<name>`, `raw/X`); scf_next() hands out minibatches whose
 * buffers stay valid until scf_release().  Every function returns 0 (or a
 * documented positive status) on success and a negative errno, or one of
 * the SCF_E_* codes below, on failure; scf_errmsg() then holds a sentence
 * naming the file, the dataset and what was wrong.
 */
#ifndef SCFETCH_H
#define SCFETCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SCF_BUILDING_LIBRARY)
#define SCF_API __attribute__((visibility("default")))
#else
#define SCF_API
#endif

#define SCF_VERSION_MAJOR 0
#define SCF_VERSION_MINOR 1
#define SCF_VERSION_PATCH 0
#define SCF_VERSION_NUMBER \
	(SCF_VERSION_MAJOR * 10000 + SCF_VERSION_MINOR * 100 + SCF_VERSION_PATCH)

/* Runtime version, SCF_VERSION_NUMBER of the library actually linked. */
SCF_API unsigned scf_version(void);

/*
 * Library-specific error codes, returned negated beside the errno values.
 * One list generates both the enum and scf_strerror().
 */
#define SCF_ERRNO_MAP(X)                                                       \
	X(CORRUPT, 4001, "file is corrupt or inconsistent")                    \
	X(UNSUPPORTED, 4002, "layout, filter or encoding not supported")       \
	X(NOT_H5AD, 4003, "not an HDF5/AnnData file or matrix not found")      \
	X(BUFFERS_HELD, 4004, "all output buffers are held by the consumer")

enum scf_error {
#define SCF__ERR_ENUM(name, code, text) SCF_E_##name = -(code),
	SCF_ERRNO_MAP(SCF__ERR_ENUM)
#undef SCF__ERR_ENUM
};

/* Static text for any code this library returns (errno values included). */
SCF_API const char *scf_strerror(int code);

/* scf_next() returns this once after the last batch of each epoch. */
#define SCF_END_OF_EPOCH 1

enum scf_strategy {
	SCF_STRATEGY_DEFAULT = 0,         /* = BLOCK_SHUFFLING */
	SCF_STRATEGY_STREAMING = 1,       /* rows in file order */
	SCF_STRATEGY_BLOCK_SHUFFLING = 2, /* shuffled blocks of block_size rows */
	SCF_STRATEGY_BLOCK_WEIGHTED = 3,  /* each epoch draws total_size rows by weight,
	                                     then shuffles blocks of the sorted draw */
	SCF_STRATEGY_CLASS_BALANCED = 4   /* BLOCK_WEIGHTED with weights 1 / class size
	                                     of obs column balance_obs */
};

enum scf_fetch_shuffle {
	SCF_FETCH_SHUFFLE_DEFAULT = 0, /* on for BLOCK_SHUFFLING, off for STREAMING */
	SCF_FETCH_SHUFFLE_ON = 1,
	SCF_FETCH_SHUFFLE_OFF = 2
};

enum scf_output {
	SCF_OUTPUT_CSR = 0,  /* indptr/indices/data */
	SCF_OUTPUT_DENSE = 1 /* data holds n_rows x n_cols float32, row-major */
};

/* scf_options.flags */
#define SCF_F_DROP_LAST (1u << 0) /* leave out a random remainder of rows each epoch
                                      (whole blocks only) and every short last batch */
#define SCF_F_BUFFERED  (1u << 1) /* use the page cache instead of O_DIRECT */
#define SCF_F_NO_PIN    (1u << 2) /* do not mlock() output buffers */
#define SCF_F_NO_REPLACEMENT (1u << 3) /* weighted strategies draw without replacement */
#define SCF_F_EVEN_RANKS (1u << 4) /* every rank gets the same number of batches: the
                                      epoch's last fetches that cannot be dealt
                                      evenly (and a short last fetch) are dropped */
#define SCF_F_LOG1P     (1u << 5) /* deliver log(1 + x) of every value (after
                                      normalize_total when both are set) */
#define SCF_F_PREAD     (1u << 6) /* read with a small pool of pread() threads instead
                                      of io_uring (chosen anyway, and said so by
                                      scf_io_backend(), when io_uring is refused;
                                      also SCFETCH_IO=pread in the environment) */
#define SCF_F_NO_INDEX_CACHE (1u << 7) /* neither use nor write an index cache: parse
                                      the file's chunk indexes at every open */
#define SCF_F_NO_CHUNK_CACHE (1u << 8) /* decode every filtered chunk a fetch needs,
                                      even when a recent fetch decoded it */
#define SCF_F_PARTIAL_INFLATE (1u << 9) /* inflate a deflate-only chunk just up to the
                                      last byte a fetch uses (about half the work for
                                      scattered rows); the zlib Adler-32 of a chunk
                                      inflated in part is not checked */
#define SCF_F_BALANCE_SUBSET (1u << 10) /* CLASS_BALANCED with indices: count classes
                                      among the rows sampled, not in the whole
                                      column (scDataset's way, the default) */
#define SCF_F__ALL      ((1u << 11) - 1)

/*
 * Allocator for output buffers, so that a framework can supply page-locked
 * or device-registered memory.  alloc returns NULL on failure.  When no
 * allocator is given the library mmap()s and mlock()s its own.  Both
 * callbacks run on the library's decode threads and inside scf_close(), so
 * they must be thread-safe.
 */
typedef struct scf_allocator {
	void *(*alloc)(void *opaque, size_t size);
	void (*free)(void *opaque, void *ptr, size_t size);
	void *opaque;
} scf_allocator;

/*
 * Options.  Set `size` to sizeof(scf_options); any field left 0 takes its
 * default; reserved fields must be 0 (else -EINVAL).  Fields are only ever
 * added at the end (before `reserved`): a caller built against an older
 * header passes a smaller size and the newer fields read as 0.
 */
typedef struct scf_options {
	uint32_t size;              /* sizeof(scf_options) */
	uint32_t flags;             /* SCF_F_* */
	const char *matrix;         /* "X" (default), "layers/counts", "raw/X" */
	uint32_t strategy;          /* enum scf_strategy */
	uint32_t fetch_shuffle;     /* enum scf_fetch_shuffle */
	uint32_t output;            /* enum scf_output */
	uint32_t batch_size;        /* rows per batch, 1..1<<20, default 64 */
	uint32_t block_size;        /* rows per block, 1..1<<30, default 16 */
	uint32_t fetch_factor;      /* batches per fetch, 1..1<<16, default 16 */
	uint64_t seed;              /* base seed; epoch e uses seed + 1000*e */
	uint32_t epoch;             /* first epoch, default 0 */
	uint32_t rank;              /* this process's rank, < world_size */
	uint32_t world_size;        /* ranks in the job, default 1 */
	uint32_t worker;            /* data-loader worker of this rank, < num_workers */
	uint32_t num_workers;       /* workers per rank, default 1 */
	uint32_t fetches_in_flight; /* fetches being read at once, 1..64, default 3 */
	uint32_t queue_depth;       /* io_uring entries, 4..4096, default 128 */
	uint32_t max_read;          /* largest single read in bytes, 4 KiB..64 MiB, default 1 MiB */
	uint32_t coalesce_gap;      /* merge extents closer than this many bytes, default 32 KiB;
	                               UINT32_MAX = never merge */
	uint32_t threads;           /* assembly/decode threads, 1..256, default online cores */
	scf_allocator allocator;    /* all NULL = built-in pinned allocator */
	const char *const *obs;     /* obs columns delivered with each row (categorical,
	                               integer, boolean or float), e.g. {"cell_type"};
	                               at most 64 */
	uint32_t n_obs;             /* entries in obs */
	uint32_t n_columns;         /* entries in columns */
	const int32_t *columns;     /* deliver only these genes (var indices), in this
	                               order, renumbered 0..n_columns-1; NULL: all */
	const uint64_t *indices;    /* sample only these rows (unique, any order), e.g. a
	                               train split; NULL: all rows */
	uint64_t n_indices;
	const double *weights;      /* BLOCK_WEIGHTED: one weight >= 0 per row, or, when
	                               indices are given, per entry of indices or per
	                               row: n_weights entries.  Without replacement
	                               more rows than have weight > 0 are drawn in
	                               rounds (rows repeat across rounds only) */
	uint64_t total_size;        /* weighted strategies: rows per epoch, at most
	                               SCF_MAX_TOTAL_SIZE (default: as many as there are
	                               rows to sample from) */
	const char *balance_obs;    /* CLASS_BALANCED: the obs column of the classes
	                               (categorical: code -1 is never drawn; integer:
	                               every value is a class) */
	uint64_t n_weights;         /* entries in weights: the number of rows, or
	                               n_indices when indices are given (-EINVAL
	                               otherwise).  Callers built against a header
	                               without this field are trusted (per entry of
	                               indices). */
	double normalize_total;     /* > 0: scale each row so that its values sum to
	                               this (library-size normalisation, e.g. 1e4),
	                               summed over all genes before column selection;
	                               rows summing to 0 stay 0.  Done in the decode
	                               threads, with SCF_F_LOG1P after it. */
	const char *index_dir;      /* directory for index caches; NULL: $SCFETCH_INDEX_DIR,
	                               else beside the file when its directory is
	                               writable, else $XDG_CACHE_HOME/scfetch
	                               (~/.cache/scfetch) */
	uint64_t chunk_cache_bytes; /* memory for decoded filtered chunks kept across
	                               fetches, default 256 MiB (0 = default) */
	uint64_t reserved[8];       /* must be 0 */
} scf_options;

/* Largest total_size: 2^40 rows drawn per epoch. */
#define SCF_MAX_TOTAL_SIZE (1ULL << 40)

/* Kinds of obs column (scf_obs_kind). */
#define SCF_HAVE_OBS_VALUES 1
enum scf_obs_kind {
	SCF_OBS_CATEGORICAL = 0, /* codes into scf_obs_categories(); -1 missing */
	SCF_OBS_INT = 1,         /* integer or boolean values, int64 without loss */
	SCF_OBS_FLOAT = 2        /* float32/float64 values, as float64 */
};

/* A minibatch.  Every pointer stays valid until scf_release(). */
typedef struct scf_batch {
	uint64_t n_rows;      /* rows in this batch (<= batch_size) */
	uint64_t n_cols;      /* genes */
	uint64_t nnz;         /* stored entries (CSR) */
	int64_t *indptr;      /* CSR: n_rows + 1 offsets, indptr[0] == 0; NULL for dense */
	int32_t *indices;     /* CSR: nnz column ids; NULL for dense */
	float *data;          /* CSR: nnz values; dense: n_rows * n_cols values */
	uint64_t *row_ids;    /* global row id of each row */
	uint32_t epoch;       /* epoch this batch belongs to */
	uint32_t output;      /* enum scf_output */
	uint64_t index;       /* batch number within this rank's epoch */
	int32_t *obs;         /* n_rows x n_obs, row-major: categorical codes (-1:
	                         missing) and integer values when every value of the
	                         column fits in int32; INT32_MIN for other integer
	                         columns and for float columns (read obs_values);
	                         NULL when n_obs is 0 */
	uint32_t n_obs;
	uint32_t _pad;
	int64_t *obs_values;  /* n_rows x n_obs, row-major, every kind without loss:
	                         the code (SCF_OBS_CATEGORICAL), the value
	                         (SCF_OBS_INT), or the IEEE-754 binary64 bits of the
	                         value (SCF_OBS_FLOAT: memcpy into a double); NULL
	                         when n_obs is 0 */
} scf_batch;

typedef struct scf_loader scf_loader;

/*
 * Statistics since open.  Cumulative counters.  Set `size` to
 * sizeof(scf_stats) before scf_stats_get(); fields are only ever added at
 * the end, so a caller built against an older header passes a smaller size
 * and gets the fields it knows.
 */
typedef struct scf_stats {
	uint32_t size;             /* sizeof(scf_stats), set by the caller */
	uint32_t _pad0;
	uint64_t batches;          /* batches handed out */
	uint64_t rows;             /* rows handed out */
	uint64_t fetches;          /* fetches completed */
	uint64_t bytes_requested;  /* bytes of rows the fetches needed */
	uint64_t bytes_read;       /* bytes read from the file (after coalescing/alignment) */
	uint64_t bytes_to_decode;  /* decoded bytes of the filtered chunks fetches needed */
	uint64_t bytes_decoded;    /* decoded bytes actually produced */
	uint64_t reads_submitted;  /* read requests submitted to the read backend */
	uint64_t reads_requeued;   /* short reads and -EAGAIN resubmitted */
	uint64_t wait_ns;          /* time the consumer spent blocked in scf_next */
	uint64_t max_wait_ns;      /* longest single wait */
	uint32_t pinned;           /* 1 if output buffers are page-locked */
	uint32_t direct;           /* 1 if reads use O_DIRECT */
	uint64_t decode_ns;        /* time the decode threads spent decompressing chunks */
	uint64_t assemble_ns;      /* time the decode threads spent building batches
	                              (conversion, placement, transforms) */
	uint64_t chunks_decoded;   /* filtered chunks decompressed */
	uint64_t chunk_cache_hits; /* filtered chunks a fetch needed that were found
	                              decoded already (no read, no decode) */
	uint64_t bytes_decode_skipped; /* decoded bytes a partial decode did not produce
	                              (the part of a chunk after the last byte needed) */
} scf_stats;

/*
 * Facts about the matrix (of all files of a collection), available right
 * after open.  Set `size` to sizeof(scf_info) before scf_info_get(); grows
 * like scf_stats.
 */
typedef struct scf_info {
	uint32_t size;              /* sizeof(scf_info), set by the caller */
	uint32_t dense;             /* 1 if the (first file's) matrix is a dense 2-D dataset */
	uint64_t n_rows, n_cols, nnz;
	uint64_t batches_per_epoch; /* for this rank and worker */
	uint64_t rows_per_epoch;    /* for this rank and worker */
	uint32_t output_buffers;    /* fetch buffers; a consumer holding batches of all of
	                               them stalls the stream (SCF_E_BUFFERS_HELD) */
	uint32_t batches_per_buffer;/* fetch_factor */
	uint64_t n_cols_out;        /* columns delivered (after column selection) */
	uint32_t index_cached;      /* files whose chunk index and indptr came from a
	                               valid index cache (see scf_index_note()) */
	uint32_t index_built;       /* files whose index cache was written by this open */
} scf_info;

/*
 * Open a loader.  opts may be NULL for all defaults.  On failure returns a
 * negative code and, when errbuf is not NULL, a sentence in errbuf.
 */
SCF_API int scf_open(scf_loader **out, const char *path, const scf_options *opts,
                     char *errbuf, size_t errlen);

/*
 * Open a collection: n_paths files (e.g. one per plate) read as one matrix
 * whose rows are the files' rows in list order, so global row id g of file
 * f is first_row(f) + its row in f.  Every file must have the same number of
 * columns and, when all of them have a var index, the same gene names
 * (-EINVAL otherwise, naming both files).  Dtypes, encodings, chunkings and
 * filters may differ per file.  Requested obs columns are concatenated;
 * categorical ones get the union of the files' categories, in order of
 * first appearance (file by file).  scf_open() is the n_paths = 1 case.
 * Options (subsets, weights, columns) refer to global row ids.
 */
SCF_API int scf_open_collection(scf_loader **out, const char *const *paths, uint32_t n_paths,
                                const scf_options *opts, char *errbuf, size_t errlen);

/* Files of the loader (1 for scf_open). */
SCF_API uint32_t scf_file_count(const scf_loader *l);

/* File `file`'s path, its first global row id and its row count (any may be NULL). */
SCF_API int scf_file_info(const scf_loader *l, uint32_t file, const char **path,
                          uint64_t *first_row, uint64_t *n_rows);

/* The file and the row in that file of global row id `row`; -EINVAL past the end. */
SCF_API int scf_row_locate(const scf_loader *l, uint64_t row, uint32_t *file,
                           uint64_t *file_row);

/*
 * Block until the next minibatch is ready.  Returns 0 and sets *out, or
 * SCF_END_OF_EPOCH once at the end of each epoch (the next call starts the
 * following epoch), or a negative code (sticky; see scf_errmsg()).
 */
SCF_API int scf_next(scf_loader *l, scf_batch **out);

/*
 * Give a batch's buffers back.  Accepts NULL (returns 0).  Each batch from
 * scf_next() must be released once: releasing one that is not held (twice,
 * or a pointer that is no batch of this loader) changes nothing, returns
 * -EINVAL and says so in scf_errmsg().  A batch pointer released and then
 * handed out again by scf_next() is a new batch: a stale second release of
 * it cannot be told from the release of the new one.
 */
SCF_API int scf_release(scf_loader *l, scf_batch *b);

/*
 * Restart the stream at the beginning of `epoch` (e.g. from a training
 * loop's set_epoch()).  A no-op when the loader is at the start of that
 * epoch already.  Batches not yet released stay valid.
 */
SCF_API int scf_set_epoch(scf_loader *l, uint32_t epoch);

/* Both return -EINVAL when out->size is smaller than the two leading fields. */
SCF_API int scf_info_get(const scf_loader *l, scf_info *out);
SCF_API int scf_stats_get(scf_loader *l, scf_stats *out);

/*
 * Category names of requested obs column `column` (index into
 * scf_options.obs): *names[code] is the label of a code.  For an integer
 * or float column *names is NULL and *n 0.  Valid until scf_close().
 */
SCF_API int scf_obs_categories(const scf_loader *l, uint32_t column,
                               const char *const **names, uint64_t *n);

/* Kind (enum scf_obs_kind) of requested obs column `column`. */
SCF_API int scf_obs_kind(const scf_loader *l, uint32_t column, uint32_t *kind);

/*
 * Where a stream stands, to resume a job killed mid-epoch exactly where it
 * stopped: scf_state_save() after the last batch the job consumed, then on a
 * loader opened with the same file and options, scf_state_load().  The next
 * scf_next() returns the batch that would have come next; no row is seen
 * twice and none is skipped.  -EINVAL when the options differ.
 */
typedef struct scf_state {
	uint32_t size;        /* sizeof(scf_state) */
	uint32_t version;     /* 1 */
	uint64_t config_hash; /* options and matrix the position is valid for */
	uint64_t seed;
	uint32_t epoch;
	uint32_t _pad;
	uint64_t batch;       /* batches of `epoch` already consumed */
} scf_state;

SCF_API int scf_state_save(scf_loader *l, scf_state *out);
SCF_API int scf_state_load(scf_loader *l, const scf_state *st);

/*
 * A seeded split of rows 0..n-1 into parts with the given fractions (summing
 * to 1): part_of_row[r] receives the part of row r.  The same seed gives the
 * same split on every machine; exact part sizes are round(fraction * n).
 */
SCF_API int scf_split(uint64_t n, uint64_t seed, const double *fractions, uint32_t n_parts,
                      uint32_t *part_of_row);

/*
 * The read backend in use and why: "io_uring", or "pread threads (io_uring
 * refused: Operation not permitted)", "pread threads (asked for)".  Valid
 * until scf_close().
 */
SCF_API const char *scf_io_backend(const scf_loader *l);

/*
 * The index cache: a file beside the .h5ad (or in the cache directory, see
 * scf_options.index_dir) holding what open needs (chunk maps, indptr),
 * checked against the file (size, mtime, device, inode) and itself
 * (version, checksum) before use and mapped read-only, so that every
 * process on a node shares one copy.  A stale or damaged cache is never
 * trusted: it is rebuilt.
 *
 * scf_index_note: what the cache did for file `file` at open: "reused
 * /data/a.h5ad.scfidx", "built /data/a.h5ad.scfidx (no index cache yet)",
 * "rebuilt /data/a.h5ad.scfidx (the file changed: its mtime changed)",
 * "not cached (...; cannot write ...: Read-only file system)" (the open
 * works without one) or "not used (SCF_F_NO_INDEX_CACHE)"; "" for a file
 * index out of range.  Valid until scf_close().  One cache file per .h5ad
 * and matrix key; a key other than "X" adds a tag to its name.
 */
SCF_API const char *scf_index_note(const scf_loader *l, uint32_t file);

/*
 * Build the index cache of opts->matrix (default "X") in the .h5ad at path
 * ahead of a job, e.g. on a login node; opts may be NULL, and only matrix
 * and index_dir are read (SCF_F_NO_INDEX_CACHE gives -EINVAL).  Returns 0
 * when it was written, 1 when a valid one existed already, or a negative
 * code with a sentence in errbuf: the file's own errors as scf_open()
 * reports them, or the last write's errno when no directory could take the
 * cache.  where, when not NULL, receives the cache file's path.
 */
SCF_API int scf_index_build(const char *path, const scf_options *opts, char *where,
                            size_t wlen, char *errbuf, size_t errlen);

/* ---- describe: what a file holds, without a loader ---- */

/* One dataset a matrix is read from: data, indices, indptr, or a dense X. */
typedef struct scf_dataset_desc {
	char name[128];         /* path in the file, e.g. "X/data" */
	char dtype[16];         /* as stored: "float32", "int64", ... */
	char filters[64];       /* the filter pipeline in order, e.g. "shuffle+deflate";
	                           "" when none */
	uint32_t rank;          /* 1, or 2 for a dense X */
	uint32_t chunked;       /* 0: contiguous, 1: chunked */
	uint64_t dims[2];       /* elements (dims[1] is 1 for rank 1) */
	uint64_t chunk_dims[2]; /* chunked: elements per chunk (chunk_dims[1] 1 for rank 1) */
	uint64_t n_chunks;      /* chunked: chunks in the grid, written or not */
	uint64_t offset;        /* contiguous: file offset of element 0 */
	uint64_t stored_bytes;  /* bytes the dataset's elements occupy in the file
	                           (after filters; chunks never written count 0) */
} scf_dataset_desc;

/* One column of the file's obs frame. */
typedef struct scf_obs_desc {
	char name[128];
	int32_t kind;           /* enum scf_obs_kind, or -1: a column scfetch does not
	                           deliver (strings, nullable arrays, ...) */
	uint32_t _pad;
	uint64_t n_categories;  /* SCF_OBS_CATEGORICAL: entries of its categories */
} scf_obs_desc;

/*
 * A file described by metadata alone (no matrix element is read).  Set
 * `size` to sizeof(scf_description) before scf_describe(); fields are only
 * ever added at the end, like scf_stats.  The arrays are the library's:
 * scf_describe_free() releases them.
 */
typedef struct scf_description {
	uint32_t size;               /* sizeof(scf_description), set by the caller */
	uint32_t dense;              /* 1: the matrix is a dense 2-D dataset */
	char matrix[128];            /* the matrix described ("" when none was asked for) */
	uint64_t n_rows, n_cols, nnz;/* nnz: stored entries (dense: n_rows x n_cols) */
	char indptr_dtype[16];       /* CSR: indptr's type as stored */
	uint32_t n_datasets;         /* entries of dataset: CSR 3 (data, indices,
	                                indptr), dense 1, no matrix 0 */
	uint32_t n_obs;              /* entries of obs */
	scf_dataset_desc dataset[3];
	scf_obs_desc *obs;           /* the obs columns, in the file's order */
	const char *const *matrices; /* the matrices of the file: "X", "layers/<name>"...,
	                                "raw/X", as far as they exist */
	uint32_t n_matrices;
	uint32_t _pad;
} scf_description;

/*
 * Describe `matrix` ("X", "layers/counts", "raw/X"; NULL: no matrix, only
 * the file's matrices and obs columns) of the .h5ad at path.  Returns 0, or
 * a negative code with a sentence in errbuf (the same sentence scf_open()
 * would give for this matrix).  The matrices and obs columns are described
 * whenever HDF5 can open the file, even when the matrix cannot be, so that
 * a caller can name what the file does hold.  -EINVAL, out untouched, when
 * out->size is smaller than this header's first scf_description; otherwise
 * out is left for scf_describe_free() whatever the result.
 */
SCF_API int scf_describe(const char *path, const char *matrix, scf_description *out,
                         char *errbuf, size_t errlen);

/* Release what scf_describe() allocated; accepts NULL and a zeroed struct. */
SCF_API void scf_describe_free(scf_description *d);

/* ---- end describe ---- */

/* The sentence describing the last error, or "" when none. */
SCF_API const char *scf_errmsg(const scf_loader *l);

/*
 * Close at any time, with fetches in flight: waits for outstanding reads,
 * joins every thread and frees everything, unreleased batches included.
 * Accepts NULL.
 */
SCF_API void scf_close(scf_loader *l);

#ifdef __cplusplus
}
#endif
#endif /* SCFETCH_H */
