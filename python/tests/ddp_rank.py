"""One rank of test_torch.py's distributed test (run as a subprocess):
    ddp_rank.py FILE RANK WORLD PORT OUT.npy
Joins a gloo group on 127.0.0.1 and saves the row ids its epoch read."""
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from scfetch.torch import SCFetchDataset


def main(path, rank, world, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=int(rank),
                            world_size=int(world))
    ds = SCFetchDataset(path, batch_size=64, block_size=8, fetch_factor=4, threads=1)
    ds.set_epoch(3)
    ids = [item["row_ids"].clone() for item in DataLoader(ds, batch_size=None)]
    np.save(out, torch.cat(ids).numpy())
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
