"""scfetch._capi — the C API of libscfetch.so, declared for ctypes.

Every Structure here mirrors include/scfetch.h field for field, in the same
order and with the same types: ctypes lays them out exactly as the C
compiler does, which is what lets scf_options.size be sizeof(scf_options).
"""
import ctypes
import ctypes.util
import os

from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_int, c_int32, c_size_t, c_uint,
                    c_uint32, c_uint64, c_void_p)

VERSION_MAJOR = 0
END_OF_EPOCH = 1

STRATEGY = {"block": 2, "stream": 1, "weighted": 3, "balanced": 4}
OUTPUT = {"csr": 0, "dense": 1}
FETCH_SHUFFLE = {None: 0, True: 1, False: 2}

F_DROP_LAST = 1 << 0
F_BUFFERED = 1 << 1
F_NO_PIN = 1 << 2
F_NO_REPLACEMENT = 1 << 3
F_EVEN_RANKS = 1 << 4
F_LOG1P = 1 << 5
F_PREAD = 1 << 6
F_NO_INDEX_CACHE = 1 << 7
F_NO_CHUNK_CACHE = 1 << 8
F_PARTIAL_INFLATE = 1 << 9
F_BALANCE_SUBSET = 1 << 10

# SCF_E_*: returned negated, beside the errno values.
E_CORRUPT, E_UNSUPPORTED, E_NOT_H5AD, E_BUFFERS_HELD = 4001, 4002, 4003, 4004

ALLOC_FN = CFUNCTYPE(c_void_p, c_void_p, c_size_t)
FREE_FN = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t)


class scf_allocator(Structure):
    _fields_ = [("alloc", ALLOC_FN), ("free", FREE_FN), ("opaque", c_void_p)]


class scf_options(Structure):
    _fields_ = [
        ("size", c_uint32), ("flags", c_uint32), ("matrix", c_char_p),
        ("strategy", c_uint32), ("fetch_shuffle", c_uint32), ("output", c_uint32),
        ("batch_size", c_uint32), ("block_size", c_uint32), ("fetch_factor", c_uint32),
        ("seed", c_uint64), ("epoch", c_uint32), ("rank", c_uint32),
        ("world_size", c_uint32), ("worker", c_uint32), ("num_workers", c_uint32),
        ("fetches_in_flight", c_uint32), ("queue_depth", c_uint32), ("max_read", c_uint32),
        ("coalesce_gap", c_uint32), ("threads", c_uint32), ("allocator", scf_allocator),
        ("obs", POINTER(c_char_p)), ("n_obs", c_uint32), ("n_columns", c_uint32),
        ("columns", POINTER(c_int32)), ("indices", POINTER(c_uint64)),
        ("n_indices", c_uint64), ("weights", POINTER(c_double)), ("total_size", c_uint64),
        ("balance_obs", c_char_p), ("n_weights", c_uint64), ("normalize_total", c_double),
        ("index_dir", c_char_p), ("chunk_cache_bytes", c_uint64),
        ("reserved", c_uint64 * 8),
    ]


class scf_state(Structure):
    _fields_ = [("size", c_uint32), ("version", c_uint32), ("config_hash", c_uint64),
                ("seed", c_uint64), ("epoch", c_uint32), ("_pad", c_uint32),
                ("batch", c_uint64)]


class scf_batch(Structure):
    _fields_ = [
        ("n_rows", c_uint64), ("n_cols", c_uint64), ("nnz", c_uint64),
        # Pointers as addresses: the binding wraps them in numpy views itself.
        ("indptr", c_void_p), ("indices", c_void_p), ("data", c_void_p),
        ("row_ids", c_void_p), ("epoch", c_uint32), ("output", c_uint32),
        ("index", c_uint64), ("obs", c_void_p), ("n_obs", c_uint32), ("_pad", c_uint32),
        ("obs_values", c_void_p),
    ]


class scf_stats(Structure):
    _fields_ = [("size", c_uint32), ("_pad0", c_uint32)] + [(name, c_uint64) for name in (
        "batches", "rows", "fetches", "bytes_requested", "bytes_read", "bytes_to_decode",
        "bytes_decoded", "reads_submitted", "reads_requeued", "wait_ns", "max_wait_ns")] + \
        [("pinned", c_uint32), ("direct", c_uint32)] + [(name, c_uint64) for name in (
            "decode_ns", "assemble_ns", "chunks_decoded", "chunk_cache_hits",
            "bytes_decode_skipped")]


class scf_info(Structure):
    _fields_ = [("size", c_uint32), ("dense", c_uint32),
                ("n_rows", c_uint64), ("n_cols", c_uint64), ("nnz", c_uint64),
                ("batches_per_epoch", c_uint64),
                ("rows_per_epoch", c_uint64), ("output_buffers", c_uint32),
                ("batches_per_buffer", c_uint32), ("n_cols_out", c_uint64),
                ("index_cached", c_uint32), ("index_built", c_uint32)]


def _candidates():
    """Where the library may be, in the order documented in python/README.md."""
    env = os.environ.get("SCFETCH_LIBRARY")
    if env:
        return [env]  # an explicit override must not silently fall back
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libscfetch.so")
    found = ctypes.util.find_library("scfetch")
    return [p for p in (here if os.path.exists(here) else None, found, "libscfetch.so.0") if p]


def _declare(lib):
    """Prototypes, so ctypes converts arguments and never truncates pointers."""
    L = c_void_p
    sigs = {
        "scf_version": (c_uint, []),
        "scf_strerror": (c_char_p, [c_int]),
        "scf_open": (c_int, [POINTER(L), c_char_p, POINTER(scf_options), c_char_p, c_size_t]),
        "scf_open_collection": (c_int, [POINTER(L), POINTER(c_char_p), c_uint32,
                                        POINTER(scf_options), c_char_p, c_size_t]),
        "scf_file_count": (c_uint32, [L]),
        "scf_file_info": (c_int, [L, c_uint32, POINTER(c_char_p), POINTER(c_uint64),
                                  POINTER(c_uint64)]),
        "scf_row_locate": (c_int, [L, c_uint64, POINTER(c_uint32), POINTER(c_uint64)]),
        "scf_next": (c_int, [L, POINTER(POINTER(scf_batch))]),
        "scf_release": (c_int, [L, POINTER(scf_batch)]),
        "scf_set_epoch": (c_int, [L, c_uint32]),
        "scf_info_get": (c_int, [L, POINTER(scf_info)]),
        "scf_stats_get": (c_int, [L, POINTER(scf_stats)]),
        "scf_index_note": (c_char_p, [L, c_uint32]),
        "scf_index_build": (c_int, [c_char_p, POINTER(scf_options), c_char_p, c_size_t,
                                    c_char_p, c_size_t]),
        "scf_obs_categories": (c_int, [L, c_uint32, POINTER(POINTER(c_char_p)),
                                       POINTER(c_uint64)]),
        "scf_obs_kind": (c_int, [L, c_uint32, POINTER(c_uint32)]),
        "scf_errmsg": (c_char_p, [L]),
        "scf_state_save": (c_int, [L, POINTER(scf_state)]),
        "scf_state_load": (c_int, [L, POINTER(scf_state)]),
        "scf_split": (c_int, [c_uint64, c_uint64, POINTER(c_double), c_uint32,
                              POINTER(c_uint32)]),
        "scf_close": (None, [L]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def load():
    """Open libscfetch (ctypes.CDLL: the GIL is released during every call)."""
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
            continue
        lib = _declare(lib)
        major = lib.scf_version() // 10000
        if major != VERSION_MAJOR:
            raise ImportError(f"scfetch: {path} is version {lib.scf_version()}; "
                              f"this binding needs major version {VERSION_MAJOR}")
        return lib, path
    raise ImportError("scfetch: cannot load libscfetch.so; tried " + "; ".join(tried or ["nothing"])
                      + ". Set SCFETCH_LIBRARY=/path/libscfetch.so or PYTHONPATH=BUILD/python.")
