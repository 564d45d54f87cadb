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
#define SCF_F_DROP_LAST (1u << 0) /* drop the short tail block and short last batch */
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
#define SCF_F__ALL      ((1u << 7) - 1)

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
	const double *weights;      /* BLOCK_WEIGHTED: one weight >= 0 per row, or per
	                               entry of indices when given: n_weights entries */
	uint64_t total_size;        /* weighted strategies: rows per epoch, at most
	                               SCF_MAX_TOTAL_SIZE (default: as many as there are
	                               rows to sample from) */
	const char *balance_obs;    /* CLASS_BALANCED: the obs column of the classes
	                               (categorical: code -1 is never drawn; integer:
	                               every value is a class) */
	uint64_t n_weights;         /* entries in weights: must equal n_indices when
	                               indices are given, else the number of rows
	                               (-EINVAL otherwise).  Callers built against a
	                               header without this field are trusted. */
	double normalize_total;     /* > 0: scale each row so that its values sum to
	                               this (library-size normalisation, e.g. 1e4),
	                               summed over all genes before column selection;
	                               rows summing to 0 stay 0.  Done in the decode
	                               threads, with SCF_F_LOG1P after it. */
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

/* Statistics since open.  Cumulative counters. */
typedef struct scf_stats {
	uint64_t batches;          /* batches handed out */
	uint64_t rows;             /* rows handed out */
	uint64_t fetches;          /* fetches completed */
	uint64_t bytes_requested;  /* bytes of rows the fetches needed */
	uint64_t bytes_read;       /* bytes read from the file (after coalescing/alignment) */
	uint64_t bytes_to_decode;  /* decoded bytes of the filtered chunks fetches needed */
	uint64_t bytes_decoded;    /* decoded bytes actually produced (workers keep recent chunks) */
	uint64_t reads_submitted;  /* read requests submitted to io_uring */
	uint64_t reads_requeued;   /* short reads and -EAGAIN resubmitted */
	uint64_t wait_ns;          /* time the consumer spent blocked in scf_next */
	uint64_t max_wait_ns;      /* longest single wait */
	uint32_t pinned;           /* 1 if output buffers are page-locked */
	uint32_t direct;           /* 1 if reads use O_DIRECT */
} scf_stats;

/* Facts about the matrix (of all files of a collection), available right after open. */
typedef struct scf_info {
	uint64_t n_rows, n_cols, nnz;
	uint32_t dense;           /* 1 if the (first file's) matrix is a dense 2-D dataset */
	uint64_t batches_per_epoch; /* for this rank and worker */
	uint64_t rows_per_epoch;    /* for this rank and worker */
	uint32_t output_buffers;    /* fetch buffers; a consumer holding batches of all of
	                               them stalls the stream (SCF_E_BUFFERS_HELD) */
	uint32_t batches_per_buffer;/* fetch_factor */
	uint64_t n_cols_out;        /* columns delivered (after column selection) */
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

SCF_API int scf_info_get(const scf_loader *l, scf_info *out);
SCF_API void scf_stats_get(scf_loader *l, scf_stats *out);

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
