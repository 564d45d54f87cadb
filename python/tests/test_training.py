"""Training-run options through the binding: splits and subsets, column
selection, weighted and class-balanced epochs, resuming a killed job."""
import numpy as np
import pytest

import scfetch


def rows_of(loader):
    out = []
    for b in loader:
        out.extend(int(r) for r in b.row_ids)
    return out


def test_split_and_subset(data):
    n = data["x"].shape[0]
    train, val = scfetch.split(n, (0.9, 0.1), seed=4)
    assert len(train) + len(val) == n and not set(train) & set(val)
    with scfetch.Loader(data["sparse"], indices=val, batch_size=32) as ld:
        got = rows_of(ld)
    assert sorted(got) == sorted(int(v) for v in val)


def test_columns_equal_slicing(data):
    cols = [7, 3, 499, 0]
    x = data["x"]
    with scfetch.Loader(data["sparse"], columns=cols, output="dense", batch_size=50) as ld:
        for b in ld:
            want = x[np.asarray(b.row_ids, dtype=np.int64)][:, cols].toarray()
            assert np.array_equal(np.asarray(b.data).reshape(b.n_rows, len(cols)), want)


def test_balanced_epoch_evens_labels(data):
    codes = data["codes"]
    with scfetch.Loader(data["sparse"], strategy="balanced", balance_obs="cell_type",
                        total_size=5000, batch_size=50) as ld:
        got = rows_of(ld)
    share = np.bincount(codes[got], minlength=len(data["labels"])) / len(got)
    assert len(got) == 5000
    assert np.all(np.abs(share - 1 / len(data["labels"])) < 0.04), share


def test_weighted_without_replacement(data):
    n = data["x"].shape[0]
    w = np.zeros(n)
    w[:600] = 1.0
    with scfetch.Loader(data["sparse"], strategy="weighted", weights=w, total_size=500,
                        replace=False, batch_size=20) as ld:
        got = rows_of(ld)
    assert len(got) == len(set(got)) == 500 and max(got) < 600


def test_resume_where_it_stopped(data):
    kw = dict(batch_size=40, block_size=8, fetch_factor=4, seed=2)
    with scfetch.Loader(data["sparse"], **kw) as ld:
        full = rows_of(ld)
    with scfetch.Loader(data["sparse"], **kw) as ld:
        it = iter(ld)
        first = []
        for _ in range(7):
            first.extend(int(r) for r in next(it).row_ids)
        state = ld.state_dict()
    with scfetch.Loader(data["sparse"], **kw) as ld:
        ld.load_state_dict(state)
        rest = rows_of(ld)
    assert first + rest == full
    with scfetch.Loader(data["sparse"], **dict(kw, seed=3)) as ld:
        with pytest.raises(scfetch.Error):
            ld.load_state_dict(state)
