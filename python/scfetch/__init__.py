"""scfetch — shuffled minibatches of single-cell .h5ad matrices, from Python.

A ctypes binding to libscfetch: no compiled extension.  A Loader streams one
matrix of one file; iterating it yields Batch objects for one epoch, whose
arrays are numpy views of the engine's own (page-locked) output buffers: no
copy is made, and the buffer goes back to the engine when the last view of
it is gone.

    with scfetch.Loader("atlas.h5ad", batch_size=64, obs=["cell_type"]) as loader:
        for epoch in range(3):
            loader.set_epoch(epoch)
            for batch in loader:
                x = batch.to_scipy()        # csr_matrix over the engine's arrays
                y = batch.obs[:, 0]         # int32 codes of cell_type

PyTorch: scfetch.torch.SCFetchDataset.  Command line: python3 -m scfetch.
"""
import ctypes
import math
import operator
import os
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import _capi as C

_lib, library_path = C.load()
PathOrPaths = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
_v = _lib.scf_version()
__version__ = f"{_v // 10000}.{_v // 100 % 100}.{_v % 100}"

__all__ = ["Loader", "Batch", "Error", "Allocator", "split", "library_path", "__version__"]


class Error(OSError):
    """An engine failure.

    ``errno`` is the positive code: an errno value (ENOENT, EINVAL, ...) or
    one of the library's own, 4001 corrupt, 4002 unsupported, 4003 not an
    h5ad file or matrix not found, 4004 all output buffers held.
    ``strerror`` is the engine's sentence, which names the file, the dataset
    and what was wrong.
    """

    def __init__(self, code, message=""):
        code = abs(int(code))
        super().__init__(code, message or _lib.scf_strerror(-code).decode())


class Allocator:
    """Output buffers from Python callables, for memory a framework owns.

    ``alloc(size) -> address`` (0 on failure) and ``free(address, size)``.
    They are called from the engine's decode threads (ctypes takes the GIL
    for them) and from close(); the callbacks stay referenced by this object,
    which the Loader keeps until the engine is closed.
    """

    def __init__(self, alloc, free):
        def _alloc(_opaque, size):
            try:
                return alloc(size) or None
            except BaseException:  # an exception cannot cross into C: report NULL
                return None

        def _free(_opaque, ptr, size):
            try:
                free(ptr, size)
            except BaseException:
                pass

        self._callbacks = (C.ALLOC_FN(_alloc), C.FREE_FN(_free))
        self.struct = C.scf_allocator(self._callbacks[0], self._callbacks[1], None)


class _Engine:
    """Lifetime of one scf_loader*: closed when the Loader and every live
    batch have let go of it, because scf_close() frees unreleased batches."""

    __slots__ = ("ptr", "lock", "pending", "fin", "__weakref__")

    def __init__(self, ptr, keep):
        self.ptr = ptr
        # scf_set_epoch() rewrites the slots without the engine's mutex, so it
        # must not run beside an scf_release() from another thread (a batch
        # dropped by a DataLoader's pin-memory or queue-feeder thread).
        self.lock = threading.Lock()
        self.pending = []  # batches whose release waits for the lock
        # keep (options, strings, allocator callbacks the engine points at)
        # rides along so that it outlives scf_close(), which frees through it.
        self.fin = weakref.finalize(self, _close, ptr, keep)
        _engines.add(self)

    def drain(self):
        """Release the pending batches, unless someone holds the lock.

        Never blocks: it runs in finalizers, on whatever thread dropped the
        last view, which may be an engine thread (a GC pass inside an
        allocator callback) that set_epoch() is joining.  Whoever holds the
        lock looks again after unlocking, so nothing is left behind."""
        while self.pending:
            if not self.lock.acquire(blocking=False):
                return
            try:
                while self.pending:
                    _lib.scf_release(self.ptr, self.pending.pop())
            finally:
                self.lock.release()


def _close(ptr, keep):
    _lib.scf_close(ptr)


_engines = weakref.WeakSet()


def _forget_engines_in_child():
    """A forked child (a DataLoader worker) has the parent's engines in its
    memory but none of their threads: never close or release them there."""
    for e in list(_engines):
        e.fin.detach()
        e.ptr = None
        e.lock = threading.Lock()
        e.pending = []


os.register_at_fork(after_in_child=_forget_engines_in_child)


class _Lease:
    """Held by every view of one batch; scf_release() runs when it dies."""

    __slots__ = ("events", "__weakref__")

    def __init__(self, engine, bp):
        self.events = []  # CUDA events of copies still reading the buffer
        weakref.finalize(self, _release, engine, bp, self.events)


def _release(engine, bp, events):
    if engine.ptr is None:
        return  # inherited across fork(): the parent's to release
    for ev in events:
        ev.synchronize()  # never hand back memory a DMA is still reading
    engine.pending.append(bp)
    engine.drain()


def _view(addr, ctype, dtype, n, lease):
    """A numpy array over engine memory whose base chain ends at the lease."""
    if n == 0 or not addr:
        return np.empty(0, dtype)
    buf = (ctype * n).from_address(addr)
    buf._scfetch_lease = lease
    return np.frombuffer(buf, dtype)


class Batch:
    """One minibatch, as numpy views of the engine's buffer (no copies).

    CSR output: ``indptr`` (int64, n_rows + 1), ``indices`` (int32, nnz),
    ``data`` (float32, nnz).  Dense output: ``data`` is float32
    (n_rows, n_cols) and ``indptr``/``indices`` are None.  Always:
    ``row_ids`` (uint64, the rows' global ids), ``obs`` (int32
    (n_rows, n_obs): categorical codes, -1 missing, and integer values that
    fit in int32; INT32_MIN for other columns; None without obs columns),
    ``obs_values`` ({column: 1-D array of n_rows, without loss: int32 codes
    of a categorical column, int64 values of an integer or boolean column,
    float64 values of a float column}; {} without obs columns),
    ``obs_names`` and ``obs_categories`` ({column: [label, ...] or None for
    an integer or float column}), ``obsm`` ({name: the rows of obsm/<name>,
    a copy} for the Loader's ``obsm``), ``epoch``, ``index`` (batch number
    in this rank's epoch).

    The buffer is given back when this object and every view taken from it
    are gone; ``release()`` (or leaving ``with batch:``) drops this object's
    own hold at once.  The engine has fetches_in_flight + 1 (at least 3)
    buffers of fetch_factor batches each: holding batches from all of them stops the
    stream with Error(4004).
    """

    __slots__ = ("n_rows", "n_cols", "nnz", "epoch", "index", "output", "indptr",
                 "indices", "data", "row_ids", "obs", "obs_values", "obs_names",
                 "obs_categories", "obsm", "path", "_lease")

    def __init__(self, loader, engine, bp):
        b = bp.contents
        lease = _Lease(engine, bp)
        n, cols = b.n_rows, b.n_cols
        self.n_rows, self.n_cols, self.nnz = n, cols, b.nnz
        self.epoch, self.index = b.epoch, b.index
        self.output = "dense" if b.output == C.OUTPUT["dense"] else "csr"
        if self.output == "csr":
            self.indptr = _view(b.indptr, ctypes.c_int64, np.int64, n + 1, lease)
            self.indices = _view(b.indices, ctypes.c_int32, np.int32, b.nnz, lease)
            self.data = _view(b.data, ctypes.c_float, np.float32, b.nnz, lease)
        else:
            self.indptr = self.indices = None
            self.data = _view(b.data, ctypes.c_float, np.float32, n * cols, lease).reshape(n, cols)
        self.row_ids = _view(b.row_ids, ctypes.c_uint64, np.uint64, n, lease)
        self.obs = (_view(b.obs, ctypes.c_int32, np.int32, n * b.n_obs, lease).reshape(n, b.n_obs)
                    if b.n_obs else None)
        self.obs_values = {}
        if b.n_obs:
            words = _view(b.obs_values, ctypes.c_int64, np.int64, n * b.n_obs,
                          lease).reshape(n, b.n_obs)
            for i, (name, kind) in enumerate(loader.obs_kinds.items()):
                col = words[:, i]
                self.obs_values[name] = (col.astype(np.int32) if kind == "categorical"
                                         else col.view(np.float64) if kind == "float"
                                         else col)
        self.obs_names = loader.obs_names
        self.obs_categories = loader.obs_categories
        self.path = loader.path
        self.obsm = {}  # set by the Loader: copies, they hold no buffer
        self._lease = lease

    def release(self):
        """Drop this object's hold on the buffer: it goes back to the engine
        at once unless views taken from it are still alive, then with the
        last of them."""
        self._lease = None
        self.indptr = self.indices = self.data = self.row_ids = self.obs = None
        self.obs_values = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def _live(self):
        if self._lease is None:
            raise ValueError("batch already released")

    def _index_arrays(self):
        """indptr and indices of one dtype, as scipy and torch want them.

        Narrowing indptr to int32 copies n_rows + 1 numbers and keeps the
        nnz-long indices zero-copy; only a batch of 2^31 or more entries pays
        for widening indices instead."""
        if self.nnz < 2**31:
            return self.indptr.astype(np.int32), self.indices
        return self.indptr, self.indices.astype(np.int64)

    def to_scipy(self):
        """scipy.sparse.csr_matrix over ``data`` and ``indices`` (shared);
        its indptr is an int32 copy.  A dense batch is converted (a copy)."""
        import scipy.sparse as sp

        self._live()
        if self.output == "dense":
            return sp.csr_matrix(self.data)
        indptr, indices = self._index_arrays()
        return sp.csr_matrix((self.data, indices, indptr), shape=(self.n_rows, self.n_cols),
                             copy=False)

    def to_torch(self, device=None, non_blocking=False):
        """The matrix as a torch tensor sharing the engine's memory.

        Dense: ``torch.from_numpy(data)``.  CSR: ``torch.sparse_csr_tensor``
        whose values and col_indices are the engine's arrays and whose
        crow_indices is an int32 copy of indptr (torch wants crow and col of
        one dtype).  With ``device``, the tensor is copied there; a
        non-blocking CUDA copy records an event, and the buffer is not given
        back before that copy has finished.  torch checks that column ids
        are sorted within each row (ValueError if the file's are not)."""
        import torch

        self._live()
        if self.output == "dense":
            x = torch.from_numpy(self.data)
        else:
            crow, col = self._index_arrays()
            try:
                x = torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(col),
                                            torch.from_numpy(self.data),
                                            size=(self.n_rows, self.n_cols))
            except RuntimeError as e:
                if "sorted" not in str(e):
                    raise
                # h5ad allows unsorted rows; torch's CSR does not, and sorting
                # here would cost a copy of every batch.
                raise ValueError(f"{self.path}: column ids are not sorted within rows, "
                                 "which torch's CSR tensors require; sort the file's "
                                 "matrix (scipy: X.sort_indices()) or use output='dense'"
                                 ) from None
        if device is None:
            return x
        x = x.to(device, non_blocking=non_blocking)
        if non_blocking and x.is_cuda:
            ev = torch.cuda.Event()
            ev.record()
            self._lease.events.append(ev)
        return x

    def __len__(self):
        return self.n_rows

    def __repr__(self):
        state = "" if self._lease is not None else ", released"
        return (f"<scfetch.Batch {self.output} {self.n_rows}x{self.n_cols} nnz={self.nnz} "
                f"epoch={self.epoch} index={self.index}{state}>")


# Bounds of scf_options' integer fields (include/scfetch.h).  None leaves a
# field to the engine's default; 0 is never passed for "default", so that
# batch_size=0 is an error instead of silently meaning 64.
_U32 = 2**32 - 1
_BOUNDS = {
    "batch_size": (1, 1 << 20), "block_size": (1, 1 << 30), "fetch_factor": (1, 1 << 16),
    "epoch": (0, _U32), "rank": (0, _U32 - 1), "world_size": (1, _U32),
    "worker": (0, _U32 - 1), "num_workers": (1, _U32), "fetches_in_flight": (1, 64),
    "queue_depth": (4, 4096), "max_read": (4096, 64 << 20), "coalesce_gap": (1, _U32),
    "threads": (1, 256), "seed": (0, 2**64 - 1), "total_size": (1, 1 << 40),
    "chunk_cache_bytes": (1, 2**64 - 1),
}


def _int(name, value, lo=None, hi=None):
    """An integer option within its bounds: ints and numpy integers only.
    64.5, "8" and True are errors (TypeError), never truncated or coerced;
    out of range is a ValueError."""
    if lo is None:
        lo, hi = _BOUNDS[name]
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"scfetch: {name} must be an integer, not {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"scfetch: {name} must be an integer, not "
                        f"{type(value).__name__} {value!r}") from None
    if not lo <= v <= hi:
        raise ValueError(f"scfetch: {name} = {v} is outside [{lo}, {hi}]")
    return v


def _opt_int(name, value):
    """An integer option where None means the engine's default (0 in C)."""
    return 0 if value is None else _int(name, value)


def _flag(name, value):
    """A yes/no option: bool, numpy bool, 0 or 1 (a string would be truthy)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(f"scfetch: {name} must be True or False, not {value!r}")


def random_seed():
    """A fresh 64-bit seed from os.urandom (what seed=None draws)."""
    return int.from_bytes(os.urandom(8), "little")


def _choice(name, table, value):
    if value not in table:
        raise ValueError(f"scfetch: {name} must be one of {list(table)}, not {value!r}")
    return table[value]


def _exact_ints(name, values, lo, hi):
    """values as a 1-D integer array, each in [lo, hi]: floats with a
    fraction, bools and out-of-range values are errors, never truncated or
    wrapped."""
    import numpy as np
    a = np.asarray(values)
    if a.ndim != 1:
        a = a.reshape(-1)
    if a.size == 0:
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.floor(a)):
            raise ValueError(f"scfetch: {name} must be integers, got {a.dtype} values with "
                             "a fraction (or not finite)")
    elif a.dtype.kind not in "iu":
        raise ValueError(f"scfetch: {name} must be integers, not {a.dtype}")
    if a.dtype.kind == "u":
        bad = a > hi
    else:
        bad = (a < lo) | (a > hi) if a.dtype.kind == "i" else (a < lo) | (a > float(hi))
    if np.any(bad):
        v = a[np.argmax(bad)]
        raise ValueError(f"scfetch: {name} holds {v}, outside [{lo}, {hi}]")
    return a if a.dtype.kind in "iu" else a.astype(np.int64 if hi < 2**63 else np.uint64)


def _selection(o, indices, weights, total_size, balance_obs, columns):
    """Put the sampling and column options into o; returns the buffers that
    must stay alive while scf_open reads them."""
    import numpy as np
    keep = []
    if indices is not None:
        idx = np.ascontiguousarray(_exact_ints("indices", indices, 0, 2**64 - 1),
                                   dtype=np.uint64)
        o.indices = idx.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64))
        o.n_indices = idx.size
        keep.append(idx)
    if weights is not None:
        w = np.ascontiguousarray(weights, dtype=np.float64).ravel()
        o.weights = w.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        o.n_weights = w.size  # the engine checks it against the rows sampled
        keep.append(w)
    if total_size is not None:
        o.total_size = _int("total_size", total_size)
    if balance_obs is not None:
        b = balance_obs.encode()
        o.balance_obs = b
        keep.append(b)
    if columns is not None:
        c = np.ascontiguousarray(_exact_ints("columns", columns, 0, 2**31 - 1), dtype=np.int32)
        o.columns = c.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        o.n_columns = c.size
        keep.append(c)
    return keep


def split(n_rows, fractions, seed=0):
    """A seeded split of rows 0..n_rows-1 (e.g. fractions (0.8, 0.1, 0.1)):
    returns one sorted numpy array of row ids per part, to pass as
    ``indices``.  The same seed gives the same split everywhere."""
    import numpy as np
    fr = (ctypes.c_double * len(fractions))(*fractions)
    part = np.empty(int(n_rows), dtype=np.uint32)
    rc = _lib.scf_split(int(n_rows), int(seed) & (2**64 - 1), fr, len(fractions),
                        part.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)))
    if rc < 0:
        raise Error(rc, f"scfetch.split: fractions must be >= 0 and sum to 1 ({fractions})")
    return [np.flatnonzero(part == p).astype(np.uint64) for p in range(len(fractions))]


def apply_transforms(items, fetch_factor, index_of, fetch_transform, batch_transform):
    """The hooks of Loader and SCFetchDataset over a stream of batches.

    fetch_transform gets the list of one fetch's batches (the fetch_factor
    consecutive batches that the engine read together into one buffer; the
    last fetch of an epoch may have fewer) and returns an iterable of items;
    batch_transform then maps each item.  A fetch is recognised by batch
    index // fetch_factor, which is how the engine cuts a worker's share."""
    if fetch_transform is not None:
        items = _by_fetch(items, fetch_factor, index_of, fetch_transform)
    if batch_transform is not None:
        items = map(batch_transform, items)
    return iter(items)


def _by_fetch(items, fetch_factor, index_of, fetch_transform):
    group = []
    for it in items:
        group.append(it)
        if (index_of(it) + 1) % fetch_factor == 0:
            out, group = fetch_transform(group), []
            yield from out
            del out
    if group:
        yield from fetch_transform(group)


class _Obsm:
    """obsm arrays (e.g. X_pca) given per batch, indexed by row ids.

    Each file's obsm/<name> must be a dense array of one row per cell.
    Contiguous, unfiltered ones (what anndata writes) are memory-mapped,
    so nothing is read at open and the page cache serves the rows; chunked
    or compressed ones are read whole, once."""

    def __init__(self, paths, names):
        self.names = names
        self.arrays = {n: [] for n in names}  # per file
        self.first = np.zeros(len(paths), np.int64)
        if not names:
            return
        try:
            import h5py
        except ImportError:
            raise ImportError("scfetch: obsm= reads obsm arrays with h5py "
                              "(apt-get install python3-h5py)") from None
        first = 0
        for i, path in enumerate(paths):
            self.first[i] = first
            with h5py.File(path, "r") as f:
                for n in names:
                    self.arrays[n].append(self._open(path, f, n))
                first += self.arrays[names[0]][-1].shape[0]

    @staticmethod
    def _open(path, f, name):
        import h5py

        d = f.get(f"obsm/{name}")
        if d is None:
            have = list(f["obsm"].keys()) if "obsm" in f else []
            raise KeyError(f"{path}: no obsm/{name} (obsm holds {have})")
        if not isinstance(d, h5py.Dataset) or d.ndim not in (1, 2):
            enc = d.attrs.get("encoding-type", type(d).__name__)
            raise ValueError(f"{path}: obsm/{name} is {enc}; only dense arrays are delivered")
        offset = d.id.get_offset()
        if d.chunks is None and offset is not None and d.dtype.kind in "fiub":
            return np.memmap(path, dtype=d.dtype, mode="r", offset=offset, shape=d.shape)
        return d[()]

    def take(self, row_ids):
        """{name: array of the rows row_ids}, copied out of the file."""
        if not self.names:
            return {}
        ids = row_ids.astype(np.int64)
        if len(self.first) == 1:
            return {n: np.asarray(a[0][ids]) for n, a in self.arrays.items()}
        f = np.searchsorted(self.first, ids, side="right") - 1
        out = {}
        for n, parts in self.arrays.items():
            col = np.empty((len(ids),) + parts[0].shape[1:], parts[0].dtype)
            for i in np.unique(f):
                sel = f == i
                col[sel] = parts[i][ids[sel] - self.first[i]]
            out[n] = col
        return out


class Loader:
    """A stream of shuffled minibatches from one matrix of one .h5ad file, or
    of a collection of files.

    ``path`` is one file, or a list of files (e.g. one per plate) read as
    one matrix whose rows are the files' rows in list order: row ids (in
    batches, ``indices``, ``weights``) are global, ``locate(row)`` maps one
    back to (file index, row in that file), ``files`` lists (path, first row,
    rows).  The files must share one gene axis (same width and, where every
    file has a var index, the same gene names); categorical obs columns get
    the union of the files' categories.

    The arguments mirror scf_options (include/scfetch.h): ``matrix`` "X",
    "layers/<name>" or "raw/X"; ``strategy`` "block" (shuffled blocks of
    ``block_size`` rows), "stream" (file order), "weighted" or "balanced"
    (below); ``shuffle`` None (the strategy's default), True or False for
    shuffling inside each fetch of ``batch_size * fetch_factor`` rows;
    ``seed`` (epoch e uses seed + 1000 e; None draws one from os.urandom,
    kept as ``loader.seed``); ``rank``/``world_size`` and
    ``worker``/``num_workers`` select this process's share; ``obs`` names
    obs columns delivered per row; ``obsm`` names obsm arrays (e.g.
    "X_pca") whose rows come with each batch as ``batch.obsm`` (read with
    h5py: memory-mapped when stored contiguously); ``output`` "csr" or
    "dense"; ``direct=False`` reads through the page cache; ``pin=False``
    skips mlock(); ``allocator`` an Allocator for the output buffers;
    ``index_dir`` where the index cache goes (None: beside the file, else
    ~/.cache/scfetch; see ``index_note()``), ``index_cache=False`` neither
    reads nor writes one.

    Value transforms done in the engine's decode threads, before the batch
    reaches Python: ``normalize_total=1e4`` scales each row to sum to 1e4
    (library-size normalisation over all genes, before ``columns``; all-zero
    rows stay zero), then ``log1p=True`` takes log(1 + x), as scanpy's
    normalize_total and log1p do.  Compressed files: ``partial_inflate=True``
    inflates a gzip chunk only up to the last byte a fetch uses (about half
    the work for scattered rows, but such a chunk's zlib checksum goes
    unchecked); ``chunk_cache_bytes`` is the memory for decoded chunks kept
    across fetches (default 256 MiB; ``chunk_cache=False`` turns it off);
    ``pread=True`` reads with a thread pool instead of io_uring.  Integer arguments must be integers within the bounds scf_options
    documents (64.5 or 0 rows per batch are errors, never rounded or
    defaulted); numeric tuning arguments left None take the engine's
    defaults.

    Hooks (scDataset's fetch_transform and batch_transform): iterating
    calls ``fetch_transform(batches)`` with the list of one fetch's Batch
    objects (up to fetch_factor consecutive batches the engine read
    together; the last fetch of an epoch may be shorter) and yields what it
    returns (any iterable); ``batch_transform(item)`` is applied to each
    item (a Batch, or what fetch_transform returned) and its result is
    yielded.  The Batches are zero-copy views: return copies of what you
    keep.  next_batch() bypasses both.

    Training-run options: ``indices`` restricts sampling to these rows (a
    split, see ``split()``); strategy "weighted" draws ``total_size`` rows per
    epoch by ``weights`` (one per row, or per entry of ``indices``), with
    replacement unless ``replace=False``; strategy "balanced" does the same
    with inverse class-size weights of obs column ``balance_obs`` (class
    sizes counted over the whole column, as scDataset does, or among the
    rows of ``indices`` with ``balance_subset=True``); ``weights`` may be one
    per entry of ``indices`` or one per row; without replacement,
    ``total_size`` above the rows of positive weight draws in rounds (rows
    repeat across rounds only); ``drop_last`` leaves out a random remainder
    of rows each epoch (scDataset's way) and the short last batch;
    ``columns`` delivers only these genes (var indices, renumbered in the
    given order); ``even_ranks=True`` gives every rank the same number of
    batches (a DDP job must not hang in a collective).

    Iterating yields the Batch objects of one epoch; the next iteration is
    the next epoch.  Engine failures raise scfetch.Error.  Close with
    close(), ``with``, or by dropping the last reference; batches still alive
    then keep the engine open until they are gone.
    """

    def __init__(self, path: PathOrPaths, matrix: str = "X", batch_size: int = 64,
                 block_size: int = 16, fetch_factor: int = 16, strategy: str = "block",
                 shuffle: Optional[bool] = None, drop_last: bool = False,
                 seed: Optional[int] = 0, epoch: int = 0, rank: int = 0, world_size: int = 1,
                 worker: int = 0, num_workers: int = 1, obs: Union[str, Sequence[str]] = (),
                 output: str = "csr", fetches_in_flight: Optional[int] = None,
                 queue_depth: Optional[int] = None, max_read: Optional[int] = None,
                 coalesce_gap: Optional[int] = None, threads: Optional[int] = None,
                 direct: bool = True, pin: bool = True, allocator: Optional[Allocator] = None,
                 indices=None, weights=None, total_size: Optional[int] = None,
                 replace: bool = True, balance_obs: Optional[str] = None, columns=None,
                 even_ranks: bool = False, obsm: Union[str, Sequence[str]] = (),
                 fetch_transform: Optional[Callable[[List["Batch"]], Iterable[Any]]] = None,
                 batch_transform: Optional[Callable[["Batch"], Any]] = None,
                 index_dir: Optional[str] = None, index_cache: bool = True,
                 normalize_total: Optional[float] = None, log1p: bool = False,
                 partial_inflate: bool = False, chunk_cache: bool = True,
                 chunk_cache_bytes: Optional[int] = None, pread: bool = False,
                 balance_subset: bool = False):
        if isinstance(path, (str, bytes, os.PathLike)):
            self.paths = (os.fspath(path),)
            self.path = self.paths[0]
        else:
            self.paths = tuple(os.fspath(p) for p in path)
            if not self.paths:
                raise ValueError("scfetch: Loader needs at least one file")
            self.path = self.paths[0] if len(self.paths) == 1 else list(self.paths)
        if isinstance(obs, str):
            obs = [obs]
        self.obs_names = tuple(obs)
        for name, fn in (("fetch_transform", fetch_transform),
                         ("batch_transform", batch_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"scfetch: {name} must be callable, not {fn!r}")
        self.fetch_transform, self.batch_transform = fetch_transform, batch_transform
        if seed is None:
            if _int("world_size", world_size) > 1:
                raise ValueError("scfetch: seed=None draws a seed in this process, but the "
                                 f"{world_size} ranks need one seed: pass seed= (the torch "
                                 "dataset broadcasts rank 0's)")
            seed = random_seed()
        self.seed = _int("seed", seed)
        o = C.scf_options()
        o.size = ctypes.sizeof(C.scf_options)
        o.flags = ((C.F_DROP_LAST if _flag("drop_last", drop_last) else 0) |
                   (0 if _flag("direct", direct) else C.F_BUFFERED) |
                   (0 if _flag("pin", pin) else C.F_NO_PIN) |
                   (0 if _flag("replace", replace) else C.F_NO_REPLACEMENT) |
                   (C.F_EVEN_RANKS if _flag("even_ranks", even_ranks) else 0) |
                   (0 if _flag("index_cache", index_cache) else C.F_NO_INDEX_CACHE) |
                   (C.F_LOG1P if _flag("log1p", log1p) else 0) |
                   (C.F_PARTIAL_INFLATE if _flag("partial_inflate", partial_inflate) else 0) |
                   (0 if _flag("chunk_cache", chunk_cache) else C.F_NO_CHUNK_CACHE) |
                   (C.F_PREAD if _flag("pread", pread) else 0) |
                   (C.F_BALANCE_SUBSET if _flag("balance_subset", balance_subset) else 0))
        if normalize_total is not None:
            if isinstance(normalize_total, bool) or not isinstance(normalize_total, (int, float)) \
                    or not math.isfinite(normalize_total) or normalize_total <= 0:
                raise ValueError("scfetch: normalize_total must be a finite number > 0 "
                                 f"(the target row sum), not {normalize_total!r}")
            o.normalize_total = float(normalize_total)
        o.chunk_cache_bytes = _opt_int("chunk_cache_bytes", chunk_cache_bytes)
        # index cache directory (None: beside the file, else ~/.cache/scfetch)
        index_dir_b = os.fsencode(index_dir) if index_dir is not None else None
        o.index_dir = index_dir_b
        matrix_b = matrix.encode()
        o.matrix = matrix_b
        o.strategy = _choice("strategy", C.STRATEGY, strategy)
        o.fetch_shuffle = _choice("shuffle", C.FETCH_SHUFFLE, shuffle)
        o.output = _choice("output", C.OUTPUT, output)
        for name, value in (("batch_size", batch_size), ("block_size", block_size),
                            ("fetch_factor", fetch_factor), ("epoch", epoch), ("rank", rank),
                            ("world_size", world_size), ("worker", worker),
                            ("num_workers", num_workers),
                            ("fetches_in_flight", fetches_in_flight),
                            ("queue_depth", queue_depth), ("max_read", max_read),
                            ("coalesce_gap", coalesce_gap), ("threads", threads)):
            setattr(o, name, _opt_int(name, value))
        o.seed = self.seed
        names_b = [n.encode() for n in self.obs_names]
        names_arr = (ctypes.c_char_p * max(1, len(names_b)))(*names_b)
        if names_b:
            o.obs = ctypes.cast(names_arr, ctypes.POINTER(ctypes.c_char_p))
            o.n_obs = len(names_b)
        if allocator is not None:
            o.allocator = allocator.struct
        keep = _selection(o, indices, weights, total_size, balance_obs, columns)

        ptr = ctypes.c_void_p()
        err = ctypes.create_string_buffer(1024)
        paths_b = [os.fsencode(p) for p in self.paths]
        paths_arr = (ctypes.c_char_p * len(paths_b))(*paths_b)
        rc = _lib.scf_open_collection(ctypes.byref(ptr), paths_arr, len(paths_b),
                                      ctypes.byref(o), err, len(err))
        if rc < 0:
            raise Error(rc, err.value.decode(errors="replace"))
        # The engine keeps o's pointers (matrix, obs) and the allocator.
        self._engine = _Engine(ptr.value, (o, matrix_b, names_b, names_arr, allocator, keep,
                                           index_dir_b))
        self._epoch = int(epoch)
        self._mid_epoch = False
        self.obs_categories = {name: self._categories(i) for i, name in enumerate(self.obs_names)}
        self.obs_kinds = {name: self._kind(i) for i, name in enumerate(self.obs_names)}
        self._ff = self.info()["batches_per_buffer"]
        self.obsm = _Obsm([os.fspath(p) for p, _, _ in self.files],
                          [obsm] if isinstance(obsm, str) else list(obsm))

    def index_note(self, file: int = 0) -> str:
        """What the index cache did for file ``file`` at open ("reused ...", "built ...")."""
        return (_lib.scf_index_note(self._ptr(), int(file)) or b"").decode(errors="replace")

    def locate(self, row):
        """(file index, row in that file) of global row id ``row``."""
        f, r = ctypes.c_uint32(), ctypes.c_uint64()
        rc = _lib.scf_row_locate(self._ptr(), int(row), ctypes.byref(f), ctypes.byref(r))
        if rc < 0:
            raise IndexError(f"scfetch: row {row} is outside the {len(self.paths)} file(s)")
        return f.value, r.value

    @property
    def files(self):
        """[(path, first global row, rows)] of each file, in order."""
        out = []
        for i in range(_lib.scf_file_count(self._ptr())):
            p, first, n = ctypes.c_char_p(), ctypes.c_uint64(), ctypes.c_uint64()
            _lib.scf_file_info(self._ptr(), i, ctypes.byref(p), ctypes.byref(first),
                               ctypes.byref(n))
            out.append((os.fsdecode(p.value), first.value, n.value))
        return out

    def _ptr(self):
        if self._engine is None or self._engine.ptr is None:
            raise ValueError("scfetch: operation on a closed Loader (or one inherited "
                             "across fork(): open a Loader in each process)")
        return self._engine.ptr

    def _kind(self, column):
        k = ctypes.c_uint32()
        rc = _lib.scf_obs_kind(self._ptr(), column, ctypes.byref(k))
        if rc < 0:
            raise Error(rc, f"{self.path}: obs column {self.obs_names[column]}")
        return {0: "categorical", 1: "int", 2: "float"}[k.value]

    def _categories(self, column):
        names = ctypes.POINTER(ctypes.c_char_p)()
        n = ctypes.c_uint64()
        rc = _lib.scf_obs_categories(self._ptr(), column, ctypes.byref(names), ctypes.byref(n))
        if rc < 0:
            raise Error(rc, f"{self.path}: obs column {self.obs_names[column]}")
        if not names:
            return None  # integer column: codes are the values
        return [names[i].decode(errors="replace") for i in range(n.value)]

    def _raise(self, rc):
        raise Error(rc, _lib.scf_errmsg(self._ptr()).decode(errors="replace"))

    def next_batch(self):
        """The next Batch, or None at the end of the epoch (the call after
        that starts the next epoch)."""
        ptr = self._ptr()
        bp = ctypes.POINTER(C.scf_batch)()
        for _ in range(2):
            self._engine.drain()
            rc = _lib.scf_next(ptr, ctypes.byref(bp))
            # A release another thread left pending may be all that is missing.
            if rc != -C.E_BUFFERS_HELD or not self._engine.pending:
                break
        if rc == C.END_OF_EPOCH:
            self._epoch += 1
            self._mid_epoch = False
            return None
        if rc < 0:
            self._raise(rc)
        self._mid_epoch = True
        b = Batch(self, self._engine, bp)
        b.obsm = self.obsm.take(b.row_ids)
        return b

    def _batches(self):
        while True:
            b = self.next_batch()
            if b is None:
                return
            yield b

    def __iter__(self) -> Iterator[Any]:
        """The batches of one epoch, through fetch_transform and
        batch_transform when given.  An iteration abandoned half-way is not
        resumed: the next one starts the following epoch."""
        if self._mid_epoch:
            self.set_epoch(self._epoch + 1)
        return apply_transforms(self._batches(), self._ff, lambda b: b.index,
                                self.fetch_transform, self.batch_transform)

    def set_epoch(self, epoch):
        """Restart at the beginning of ``epoch`` (its order is a function of
        seed and epoch only).  Batches still held stay valid."""
        ptr = self._ptr()
        with self._engine.lock:
            rc = _lib.scf_set_epoch(ptr, _int("epoch", epoch))
        self._engine.drain()
        if rc < 0:
            self._raise(rc)
        self._epoch = int(epoch)
        self._mid_epoch = False

    @property
    def epoch(self):
        """The epoch the next batch belongs to."""
        return self._epoch

    def state_dict(self):
        """Where the stream stands (seed, epoch, batches consumed), to resume
        a killed job exactly there with load_state_dict()."""
        st = C.scf_state()
        with self._engine.lock:
            rc = _lib.scf_state_save(self._ptr(), ctypes.byref(st))
        if rc < 0:
            self._raise(rc)
        return {name: getattr(st, name) for name, _ in C.scf_state._fields_ if name != "_pad"}

    def load_state_dict(self, state):
        """Resume at a saved position: the next batch is the one that would
        have followed.  The loader must have the same file and options."""
        st = C.scf_state(**state)
        with self._engine.lock:
            rc = _lib.scf_state_load(self._ptr(), ctypes.byref(st))
        self._engine.drain()
        if rc < 0:
            self._raise(rc)
        self._epoch = int(state["epoch"])
        self._mid_epoch = False  # the next iteration continues from the saved batch

    def info(self):
        """Shape of the matrix, and this rank's and worker's share of an epoch."""
        i = C.scf_info(size=ctypes.sizeof(C.scf_info))
        rc = _lib.scf_info_get(self._ptr(), ctypes.byref(i))
        if rc < 0:
            self._raise(rc)
        d = {name: getattr(i, name) for name, _ in C.scf_info._fields_
             if name != "size"}
        d["dense"] = bool(d["dense"])
        return d

    def stats(self):
        """Cumulative counters since open (scf_stats)."""
        s = C.scf_stats(size=ctypes.sizeof(C.scf_stats))
        rc = _lib.scf_stats_get(self._ptr(), ctypes.byref(s))
        if rc < 0:
            self._raise(rc)
        d = {name: getattr(s, name) for name, _ in C.scf_stats._fields_
             if name not in ("size", "_pad0")}
        d["pinned"], d["direct"] = bool(d["pinned"]), bool(d["direct"])
        return d

    def __len__(self):
        return self.info()["batches_per_epoch"]

    def close(self):
        """Close now, or, while batches are alive, as soon as they are gone."""
        self._engine = None

    @property
    def closed(self):
        return self._engine is None or self._engine.ptr is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._engine is None else f"epoch {self._epoch}"
        return f"<scfetch.Loader {self.path!r} {state}>"
