"""One rank of test_torch.py's distributed tests (run as a subprocess):
    ddp_rank.py FILE RANK WORLD PORT OUT.npz [WORKERS CONTEXT]
Joins a gloo group on 127.0.0.1, reads one epoch through a DataLoader with
WORKERS workers started by CONTEXT (fork, spawn, forkserver) and seed=None,
and saves the row ids it read and the seed it used."""
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from scfetch.torch import SCFetchDataset


def main(path, rank, world, port, out, workers="0", context="fork"):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=int(rank),
                            world_size=int(world))
    ds = SCFetchDataset(path, batch_size=64, block_size=8, fetch_factor=4, threads=1,
                        seed=None)
    ds.set_epoch(3)
    workers = int(workers)
    dl = DataLoader(ds, batch_size=None, num_workers=workers,
                    multiprocessing_context=context if workers else None)
    ids = [item["row_ids"].clone() for item in dl]
    np.savez(out, ids=torch.cat(ids).numpy(), seed=ds.seed, batches=len(ids), len=len(ds))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
