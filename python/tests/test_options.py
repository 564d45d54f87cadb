"""Loader options as a training script passes them: integers checked, never
truncated or defaulted; seed=None; the fetch and batch hooks; obsm rows."""
import numpy as np
import pytest

import scfetch

FAST = dict(batch_size=64, block_size=8, fetch_factor=4, threads=1)


@pytest.mark.parametrize("name, value, error", [
    ("batch_size", 0, ValueError), ("batch_size", 64.5, TypeError),
    ("batch_size", "64", TypeError), ("batch_size", True, TypeError),
    ("batch_size", 2**20 + 1, ValueError), ("block_size", -1, ValueError),
    ("fetch_factor", 2**16 + 1, ValueError), ("fetches_in_flight", 65, ValueError),
    ("queue_depth", 2, ValueError), ("threads", 0, ValueError), ("seed", -1, ValueError),
    ("seed", 1.5, TypeError), ("total_size", 0, ValueError), ("epoch", 2**32, ValueError),
    ("drop_last", "no", TypeError), ("even_ranks", 2, TypeError),
    ("direct", None, TypeError), ("fetch_transform", 3, TypeError),
])
def test_bad_options_raise_before_open(data, name, value, error):
    with pytest.raises(error, match=name):
        scfetch.Loader(data["sparse"], **{name: value})


def test_numpy_integers_and_flags_are_taken(data):
    with scfetch.Loader(data["sparse"], batch_size=np.int64(70), block_size=np.uint8(4),
                        drop_last=np.True_, seed=np.uint64(2**63 + 5)) as ld:
        sizes = {b.n_rows for b in ld}
        assert sizes == {70} and ld.seed == 2**63 + 5  # drop_last took the short tail


def test_seed_none_draws_a_seed(data):
    with scfetch.Loader(data["sparse"], seed=None, **FAST) as a, \
            scfetch.Loader(data["sparse"], seed=None, **FAST) as b:
        assert 0 <= a.seed < 2**64 and a.seed != b.seed
        with scfetch.Loader(data["sparse"], seed=a.seed, **FAST) as again:
            first = np.concatenate([x.row_ids.copy() for x in a])
            assert np.array_equal(first, np.concatenate([x.row_ids.copy() for x in again]))
    # ranks drawing their own seeds would overlap: refused
    with pytest.raises(ValueError, match="seed"):
        scfetch.Loader(data["sparse"], seed=None, rank=0, world_size=2)


def test_fetch_and_batch_transforms(data):
    n = data["x"].shape[0]
    seen = []

    def per_fetch(batches):
        seen.append([b.index for b in batches])
        rows = np.concatenate([b.row_ids for b in batches])  # a copy: views are not kept
        return [rows[i:i + 100] for i in range(0, len(rows), 100)]

    with scfetch.Loader(data["sparse"], fetch_transform=per_fetch, batch_transform=np.sort,
                        **FAST) as ld:
        items = list(ld)
        with scfetch.Loader(data["sparse"], **FAST) as plain:
            ref = [b.row_ids.copy() for b in plain]
    fetch_rows = 64 * 4
    # every fetch is fetch_factor consecutive batches; only the last is short
    assert [i for g in seen for i in g] == list(range(len(ref)))
    assert all(len(g) == 4 for g in seen[:-1]) and 1 <= len(seen[-1]) <= 4
    # the items are what the hooks made of the same stream
    assert all(np.array_equal(it, np.sort(it)) for it in items)
    assert np.array_equal(np.concatenate(items), np.concatenate(
        [np.sort(r[i:i + 100]) for f in range(len(seen))
         for r in [np.concatenate(ref[4 * f:4 * f + 4])] for i in range(0, fetch_rows, 100)]))
    assert np.array_equal(np.sort(np.concatenate(items)), np.arange(n))


def test_obsm_rows_come_with_each_batch(data):
    pca = data["pca"]
    with scfetch.Loader(data["sparse"], obsm="X_pca", **FAST) as ld:
        assert isinstance(ld.obsm.arrays["X_pca"][0], np.memmap)  # nothing read at open
        for b in ld:
            assert b.obsm["X_pca"].dtype == np.float32
            assert np.array_equal(b.obsm["X_pca"], pca[b.row_ids.astype(np.int64)])
    n = pca.shape[0]
    with scfetch.Loader([data["sparse"], data["sparse"]], obsm=["X_pca"], **FAST) as ld:
        for b in ld:
            assert np.array_equal(b.obsm["X_pca"], pca[b.row_ids.astype(np.int64) % n])
    with pytest.raises(KeyError, match=r"no obsm/X_umap \(obsm holds \['X_pca'\]\)"):
        scfetch.Loader(data["sparse"], obsm=["X_umap"])
