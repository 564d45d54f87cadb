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

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

import scfetch

_LOADER_ARGS = set(inspect.signature(scfetch.Loader).parameters) - {"path"}
# Set by the dataset from the DataLoader / torch.distributed, never by hand.
_DERIVED = {"worker", "num_workers", "allocator", "epoch"}


class SCFetchDataset(IterableDataset):
    """Minibatches of an .h5ad matrix for a PyTorch training loop.

    Takes scfetch.Loader's arguments (``batch_size``, ``block_size``,
    ``fetch_factor``, ``strategy``, ``obs``, ``output``, ``seed``, ...).
    Each item is a dict: ``X`` (torch.sparse_csr float32, or a dense
    float32 tensor with ``output="dense"``), ``row_ids`` (int64), ``obs``
    (int32 (n, n_obs) codes, when obs columns were asked for), ``epoch``
    and ``index``.  In-process (num_workers=0) every tensor shares the
    engine's buffer (CSR crow_indices excepted: an int32 copy).

    Distributed: rank and world size come from torch.distributed when it is
    initialised, else from ``rank``/``world_size``.  DataLoader workers each
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

    def __init__(self, path, *, rank=None, world_size=None, epoch=0, pin_memory=None,
                 device=None, **loader_args):
        unknown = set(loader_args) - (_LOADER_ARGS - _DERIVED)
        if unknown:
            raise TypeError(f"SCFetchDataset: unexpected arguments {sorted(unknown)}")
        if pin_memory not in (None, "cuda"):
            raise ValueError("SCFetchDataset: pin_memory must be None or 'cuda'")
        super().__init__()
        # one file, or a list of files read as one collection (passed through)
        self.path = (os.fspath(path) if isinstance(path, (str, bytes, os.PathLike))
                     else [os.fspath(p) for p in path])
        self.rank, self.world_size = rank, world_size
        self.pin_memory = pin_memory
        self.device = torch.device(device) if device is not None else None
        self.loader_args = loader_args
        self._epoch = int(epoch)
        self._explicit_epoch = False  # set_epoch() called since the last iteration
        self._last_epoch = None
        self._loader = None
        self._key = None
        self._len = {}

    def set_epoch(self, epoch):
        """The epoch the next iteration reads (seed + 1000 * epoch)."""
        self._epoch = int(epoch)
        self._explicit_epoch = True

    def __getstate__(self):
        # A loader is an engine with threads and buffers: never pickled, each
        # worker opens its own.
        state = self.__dict__.copy()
        state["_loader"] = state["_key"] = None
        return state

    def _share(self):
        """(rank, world_size, worker, num_workers) of this process."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world = self.rank or 0, self.world_size or 1
        info = get_worker_info()
        return (rank, world) + ((info.id, info.num_workers) if info else (0, 1))

    def _open(self, rank, world, worker, num_workers):
        args = dict(self.loader_args, rank=rank, world_size=world, worker=worker,
                    num_workers=num_workers, epoch=self._epoch)
        if num_workers > 1 and not args.get("threads"):
            # Each worker is a whole engine: share the cores, not multiply them.
            args["threads"] = max(1, (os.cpu_count() or 1) // num_workers)
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

    def _loader_for(self, share):
        # A loader inherited across fork() is the parent's: open our own.
        if self._loader is None or self._loader.closed or self._key != (os.getpid(), share):
            self._loader = self._open(*share)
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

    def __iter__(self):
        share = self._share()
        in_worker = get_worker_info() is not None
        if in_worker:
            _pickle_csr_in_this_process()
            if self.device is not None:
                raise ValueError("SCFetchDataset: device= works with num_workers=0 only; "
                                 "with workers use DataLoader(pin_memory=True)")
        loader = self._loader_for(share)
        loader.set_epoch(self._next_epoch())
        held = collections.deque()
        for b in loader:
            item = self._to_torch(b)
            if self.device is not None:
                # The copies may still be reading b: keep it (its release waits
                # for the copy's event) for two more batches rather than block.
                held.append(b)
                if len(held) > 2:
                    held.popleft().release()
            yield item
            del b, item

    def _to_torch(self, b):
        item = {"X": b.to_torch(), "row_ids": torch.from_numpy(b.row_ids.view(np.int64))}
        if b.obs is not None:
            item["obs"] = torch.from_numpy(b.obs)
        if self.device is not None:
            item = {k: v.to(self.device, non_blocking=True) for k, v in item.items()}
            if self.device.type == "cuda":
                ev = torch.cuda.Event()
                ev.record()
                b._lease.events.append(ev)
        item["epoch"], item["index"] = b.epoch, b.index
        return item

    def __len__(self):
        """Batches this rank reads per epoch, all its workers together."""
        rank, world, _, _ = self._share()
        if (rank, world) not in self._len:
            args = dict(self.loader_args, rank=rank, world_size=world, threads=1)
            with scfetch.Loader(self.path, **args) as probe:
                self._len[(rank, world)] = probe.info()["batches_per_epoch"]
        return self._len[(rank, world)]

    def close(self):
        """Close this process's loader (it is reopened by the next iteration)."""
        if self._loader is not None:
            self._loader.close()
        self._loader = None


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
