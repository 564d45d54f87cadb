"""scfetch.torch — the engine as a torch.utils.data.IterableDataset.

Use it with DataLoader(dataset, batch_size=None): the engine already makes
the minibatches, so each item is one whole batch.
"""
import collections
import ctypes
import glob
import inspect
import os
import warnings
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

import scfetch

# Loader arguments the dataset sets itself, per process, from the
# DataLoader and torch.distributed, or applies to its own items.
_DERIVED = {"path", "worker", "num_workers", "allocator", "epoch", "rank", "world_size",
            "fetch_transform", "batch_transform"}
_LOADER_ARGS = set(inspect.signature(scfetch.Loader).parameters) - _DERIVED


def _dist() -> Optional[Tuple[int, int]]:
    """(rank, world size) of this process's torch.distributed group, or None."""
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return None


def _shared_seed() -> int:
    """A random seed, the same on every rank: rank 0's, broadcast (as
    scDataset does), or this process's own without a process group."""
    seed = scfetch.random_seed()
    d = _dist()
    if d is not None and d[1] > 1:
        box = [seed]
        torch.distributed.broadcast_object_list(box, src=0)
        seed = box[0]
    return seed


class SCFetchDataset(IterableDataset):
    """Minibatches of an .h5ad matrix for a PyTorch training loop.

    The arguments are scfetch.Loader's (``batch_size``, ``block_size``,
    ``fetch_factor``, ``strategy``, ``obs``, ``output``, ``seed``, ...).
    Each item is a dict: ``X`` (torch.sparse_csr float32, or a dense
    float32 tensor with ``output="dense"``), ``row_ids`` (int64), ``obs``
    (int32 (n, n_obs) codes, when obs columns were asked for), ``obsm``
    ({name: tensor of the rows' obsm/<name>}, when asked for), ``layers``
    ({name: tensor like X, of layers/<name>}, when asked for), ``epoch`` and
    ``index``; with obs columns also ``obs_values`` ({column: 1-D tensor,
    without loss: int32 codes, int64 integers, float64 floats}).
    In-process (num_workers=0) X, row_ids and obs share the
    engine's buffer (CSR crow_indices excepted: an int32 copy).
    ``obs_categories`` gives the labels of the obs codes.

    ``layers``: a second matrix of the same rows (e.g. "counts" beside a
    normalised X) is read by a second engine opened with the same seed and
    options, whose batches hold the same rows in the same order (checked on
    every batch).  It costs a second set of buffers and reads.

    Hooks, as scDataset's: ``fetch_transform(items)`` receives the list of
    one fetch's items (up to fetch_factor consecutive dicts read together;
    the epoch's last fetch may be shorter) and returns an iterable of
    items; ``batch_transform(item)`` maps each item (a dict, or what
    fetch_transform returned); the DataLoader gets what it returns.  They run
    where the items are made: in the DataLoader workers when there are
    some, so spawn/forkserver workers need them picklable (module-level
    functions, not lambdas).

    Distributed: rank and world size come from torch.distributed when it is
    initialised, else from ``rank``/``world_size``.  They are fixed in the
    main process (at construction, set_epoch(), len() and when the
    DataLoader hands the dataset to its workers), so that spawn and
    forkserver workers, which see no process group, read their rank's share.
    ``seed=None`` draws a random seed, rank 0's broadcast to every rank:
    build the dataset after init_process_group().  DataLoader workers each
    open their own loader on a contiguous share of the rank's fetches.

    Epochs: call ``set_epoch(e)`` before each epoch, as with
    DistributedSampler; every rank and worker then reads epoch e's order.
    Without it, an iteration that follows another in the same process
    (num_workers=0, or persistent_workers=True) takes the next epoch by
    itself, but non-persistent workers start from a fresh copy each time
    and would repeat the same epoch.  Persistent workers never see
    set_epoch() calls made after they started: they count epochs
    themselves, which matches set_epoch(0), (1), ... only.

    ``pin_memory="cuda"``: output buffers from cudaHostAlloc (page-locked
    and known to CUDA), so host-to-device copies run asynchronously; skipped
    with a warning when libcudart or a GPU is missing, and in workers.
    ``device``: copy each batch there (non_blocking); the engine buffer is
    given back only once its copy has finished.  If you copy pinned batches
    yourself with non_blocking=True, keep the CPU tensors until the stream
    has passed the copy: dropping them hands the buffer back to the engine,
    which refills it.
    """

    def __init__(self, path: scfetch.PathOrPaths, *, matrix: str = "X", batch_size: int = 64,
                 block_size: int = 16, fetch_factor: int = 16, strategy: str = "block",
                 shuffle: Optional[bool] = None, drop_last: bool = False,
                 seed: Optional[int] = 0, epoch: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None, obs: Union[str, Sequence[str]] = (),
                 obsm: Union[str, Sequence[str]] = (), layers: Union[str, Sequence[str]] = (),
                 output: str = "csr", fetches_in_flight: Optional[int] = None,
                 queue_depth: Optional[int] = None, max_read: Optional[int] = None,
                 coalesce_gap: Optional[int] = None, threads: Optional[int] = None,
                 direct: bool = True, pin: bool = True, indices=None, weights=None,
                 total_size: Optional[int] = None, replace: bool = True,
                 balance_obs: Optional[str] = None, columns=None, even_ranks: bool = False,
                 fetch_transform: Optional[Callable[[List[dict]], Iterable[Any]]] = None,
                 batch_transform: Optional[Callable[[Any], Any]] = None,
                 pin_memory: Optional[str] = None, device=None,
                 index_dir: Optional[str] = None, index_cache: bool = True,
                 normalize_total: Optional[float] = None, log1p: bool = False,
                 partial_inflate: bool = False, chunk_cache: bool = True,
                 chunk_cache_bytes: Optional[int] = None, pread: bool = False,
                 balance_subset: bool = False):
        self.loader_args = {k: v for k, v in locals().items() if k in _LOADER_ARGS}
        if pin_memory not in (None, "cuda"):
            raise ValueError("SCFetchDataset: pin_memory must be None or 'cuda'")
        for name, fn in (("fetch_transform", fetch_transform),
                         ("batch_transform", batch_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"SCFetchDataset: {name} must be callable, not {fn!r}")
        super().__init__()
        # one file, or a list of files read as one collection (passed through)
        self.path = (os.fspath(path) if isinstance(path, (str, bytes, os.PathLike))
                     else [os.fspath(p) for p in path])
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        self.fetch_transform, self.batch_transform = fetch_transform, batch_transform
        self.rank, self.world_size = rank, world_size
        self.pin_memory = pin_memory
        self.device = torch.device(device) if device is not None else None
        self._seed_alone = False  # drawn without a process group
        if seed is None:
            if _dist() is None and (world_size or 1) > 1:
                raise ValueError("SCFetchDataset: seed=None needs torch.distributed "
                                 "initialised to give every rank rank 0's seed; pass seed=")
            self._seed_alone = _dist() is None
            self.loader_args["seed"] = _shared_seed()
        self.seed = self.loader_args["seed"]
        self._epoch = int(epoch)
        self._explicit_epoch = False  # set_epoch() called since the last iteration
        self._last_epoch = None
        self._loader = None
        self._extra = []  # loaders of self.layers
        self._key = None
        self._probed = {}
        if get_worker_info() is None:
            self._fix_share()

    def _fix_share(self):
        """In the main process: take rank and world size from the process
        group as it is now, and keep them for the workers."""
        d = _dist()
        if d is None:
            return
        self.rank, self.world_size = d
        if self._seed_alone and d[1] > 1:
            raise RuntimeError("SCFetchDataset(seed=None) was built before torch.distributed "
                               "was initialised, so each rank drew its own seed and their "
                               "shares would overlap: build it after init_process_group(), "
                               "or pass seed=")

    def set_epoch(self, epoch: int):
        """The epoch the next iteration reads (seed + 1000 * epoch)."""
        self._epoch = int(epoch)
        self._explicit_epoch = True
        if get_worker_info() is None:
            self._fix_share()

    def __getstate__(self):
        # Pickled by the DataLoader for spawn/forkserver workers, in the main
        # process: fix the rank there, where the process group is.
        if get_worker_info() is None:
            self._fix_share()
        # A loader is an engine with threads and buffers: never pickled, each
        # worker opens its own.
        state = self.__dict__.copy()
        state["_loader"] = state["_key"] = None
        state["_extra"] = []
        return state

    def _share(self):
        """(rank, world_size, worker, num_workers) of this process."""
        info = get_worker_info()
        if info is None:
            self._fix_share()
        d = _dist() if info is not None else None  # a forked worker has the group
        rank, world = d if d is not None else (self.rank or 0, self.world_size or 1)
        return (rank, world) + ((info.id, info.num_workers) if info else (0, 1))

    def _args(self, rank, world, worker, num_workers):
        args = dict(self.loader_args, rank=rank, world_size=world, worker=worker,
                    num_workers=num_workers, epoch=self._epoch)
        if num_workers > 1 and not args.get("threads"):
            # Each worker is a whole engine: share the cores, not multiply them.
            args["threads"] = max(1, (os.cpu_count() or 1) // num_workers)
        return args

    def _open(self, rank, world, worker, num_workers):
        args = self._args(rank, world, worker, num_workers)
        if self.pin_memory == "cuda":
            if num_workers > 1 or get_worker_info() is not None:
                warnings.warn("SCFetchDataset: pin_memory='cuda' is ignored in DataLoader "
                              "workers (their batches are copied to shared memory); use "
                              "DataLoader(pin_memory=True)")
            else:
                args["allocator"] = cuda_host_allocator()
                if args["allocator"] is None:
                    warnings.warn("SCFetchDataset: pin_memory='cuda' skipped: libcudart or a "
                                  "CUDA device is not available")
        return scfetch.Loader(self.path, **args)

    def _open_layers(self, share):
        args = dict(self._args(*share), obs=(), obsm=())
        return [scfetch.Loader(self.path, **dict(args, matrix=_layer_key(name)))
                for name in self.layers]

    def _loader_for(self, share):
        # A loader inherited across fork() is the parent's: open our own.
        if self._loader is None or self._loader.closed or self._key != (os.getpid(), share):
            self._loader = self._open(*share)
            self._extra = self._open_layers(share)
            self._key = (os.getpid(), share)
        return self._loader

    def _next_epoch(self):
        if self._explicit_epoch or self._last_epoch is None:
            epoch = self._epoch
        else:
            epoch = self._last_epoch + 1
        if get_worker_info() is not None and not self._explicit_epoch and self._last_epoch is None \
                and epoch == 0:
            warnings.warn("SCFetchDataset: set_epoch() was never called; non-persistent "
                          "DataLoader workers then read epoch 0's order every epoch")
        self._explicit_epoch = False
        self._last_epoch = epoch
        return epoch

    def __iter__(self) -> Iterator[Any]:
        share = self._share()
        in_worker = get_worker_info() is not None
        if in_worker:
            _pickle_csr_in_this_process()
            if self.device is not None:
                raise ValueError("SCFetchDataset: device= works with num_workers=0 only; "
                                 "with workers use DataLoader(pin_memory=True)")
        loader = self._loader_for(share)
        epoch = self._next_epoch()
        for ld in [loader] + self._extra:
            ld.set_epoch(epoch)
        return scfetch.apply_transforms(self._items(loader), loader._ff,
                                        lambda it: it["index"], self.fetch_transform,
                                        self.batch_transform)

    def _items(self, loader):
        held = collections.deque()
        for b in loader._batches():
            item = self._to_torch(b, [ld.next_batch() for ld in self._extra])
            if self.device is not None:
                # The copies may still be reading b: keep it (its release waits
                # for the copy's event) for two more batches rather than block.
                held.append(b)
                if len(held) > 2:
                    held.popleft().release()
            yield item
            del b, item
        for ld in self._extra:
            ld.next_batch()  # their end of epoch too

    def _to_torch(self, b, extra):
        item = {"X": b.to_torch(), "row_ids": torch.from_numpy(b.row_ids.view(np.int64))}
        if b.obs is not None:
            item["obs"] = torch.from_numpy(b.obs)
            # every kind without loss: int32 codes, int64 integers, float64 floats
            item["obs_values"] = {k: torch.from_numpy(v) for k, v in b.obs_values.items()}
        if b.obsm:
            item["obsm"] = {k: torch.from_numpy(v) for k, v in b.obsm.items()}
        if extra:
            for name, e in zip(self.layers, extra):
                if e is None or not np.array_equal(e.row_ids, b.row_ids):
                    raise RuntimeError(f"SCFetchDataset: layer {name} delivered other rows "
                                       f"than X at batch {b.index}")
            item["layers"] = {name: e.to_torch() for name, e in zip(self.layers, extra)}
        if self.device is not None:
            item = {k: _to(v, self.device) for k, v in item.items()}
            if self.device.type == "cuda":
                ev = torch.cuda.Event()
                ev.record()
                b._lease.events.append(ev)
                for e in extra:
                    e._lease.events.append(ev)
        item["epoch"], item["index"] = b.epoch, b.index
        return item

    def _probe(self):
        """Batches per epoch and obs categories of this rank, from a loader
        opened (and closed) in this process."""
        rank, world, _, _ = self._share()
        if (rank, world) not in self._probed:
            args = dict(self.loader_args, rank=rank, world_size=world, threads=1, obsm=())
            with scfetch.Loader(self.path, **args) as probe:
                self._probed[(rank, world)] = (probe.info()["batches_per_epoch"],
                                               probe.obs_categories)
        return self._probed[(rank, world)]

    def __len__(self) -> int:
        """Batches this rank reads per epoch, all its workers together."""
        return self._probe()[0]

    @property
    def obs_categories(self) -> dict:
        """{obs column: [label of code 0, 1, ...], or None for an integer or
        float column}."""
        return self._probe()[1]

    def close(self):
        """Close this process's loaders (they are reopened by the next iteration)."""
        for ld in [self._loader] + self._extra:
            if ld is not None:
                ld.close()
        self._loader = None
        self._extra = []


def _layer_key(name):
    return name if name in ("X", "raw/X") or name.startswith("layers/") else f"layers/{name}"


def _to(v, device):
    if isinstance(v, dict):
        return {k: t.to(device, non_blocking=True) for k, t in v.items()}
    return v.to(device, non_blocking=True)


def _rebuild_csr(crow, col, values, size):
    return torch.sparse_csr_tensor(crow, col, values, size=size)


def _reduce_tensor(t):
    from torch.multiprocessing import reductions

    if t.layout == torch.sparse_csr:
        return _rebuild_csr, (t.crow_indices(), t.col_indices(), t.values(), tuple(t.shape))
    return reductions.reduce_tensor(t)


_csr_registered = False


def _pickle_csr_in_this_process():
    """Let CSR tensors cross from a DataLoader worker to the main process.

    torch 1.13 cannot pickle them ("Cannot access storage of
    SparseCsrTensorImpl"); sent as their three tensors, which torch moves to
    shared memory like any other, they are rebuilt on arrival.  Registered
    in worker processes only, and handing every other tensor to torch."""
    global _csr_registered
    if _csr_registered:
        return
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401  (registers torch's own reducers first)
    ForkingPickler.register(torch.Tensor, _reduce_tensor)
    _csr_registered = True


_CUDART = ["libcudart.so", "libcudart.so.12", "libcudart.so.11.0"]


def _load_cudart():
    here = os.path.dirname(torch.__file__)
    bundled = sorted(glob.glob(os.path.join(here, "lib", "libcudart*.so*")) +
                     glob.glob(os.path.join(os.path.dirname(here), "nvidia", "cuda_runtime",
                                            "lib", "libcudart.so*")))
    for name in bundled + _CUDART:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_host_allocator():
    """scfetch.Allocator over cudaHostAlloc/cudaFreeHost, or None when
    libcudart cannot be loaded or sees no device (nothing is faked)."""
    rt = _load_cudart()
    if rt is None:
        return None
    rt.cudaGetDeviceCount.restype = ctypes.c_int
    rt.cudaGetDeviceCount.argtypes = [ctypes.POINTER(ctypes.c_int)]
    rt.cudaHostAlloc.restype = ctypes.c_int
    rt.cudaHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
    rt.cudaFreeHost.restype = ctypes.c_int
    rt.cudaFreeHost.argtypes = [ctypes.c_void_p]
    n = ctypes.c_int(0)
    if rt.cudaGetDeviceCount(ctypes.byref(n)) != 0 or n.value == 0:
        return None
    portable = 1  # cudaHostAllocPortable: pinned for every CUDA context

    def alloc(size):
        p = ctypes.c_void_p()
        return p.value if rt.cudaHostAlloc(ctypes.byref(p), size, portable) == 0 else 0

    def free(ptr, size):
        rt.cudaFreeHost(ptr)

    a = scfetch.Allocator(alloc, free)
    a.cudart = rt  # the callbacks need the library loaded as long as they live
    return a
