"""The command-line tool (build/scfetch, or $SCFETCH_CLI): errors that name
the bad option or value, matrices listed, errno reasons, the default label of
tune, per-epoch lines, and zstd files read back by anndata."""
import os
import re
import subprocess

import numpy as np
import pytest

import scfetch


def _cli():
    path = os.environ.get("SCFETCH_CLI") or os.path.join(
        os.path.dirname(os.path.realpath(scfetch.library_path)), "scfetch")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no scfetch tool at {path} (set SCFETCH_CLI)")
    return path


def cli(*args):
    return subprocess.run([_cli(), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, says", [
    (["--strategy", "random"], "--strategy random: unknown strategy"),
    (["--block", "x"], "--block x: expected positive whole numbers"),
    (["--batch", "64.5"], "--batch 64.5: expected a positive whole number"),
    (["--epochs", "0"], "--epochs 0: expected a positive whole number"),
    (["--strategy", "balanced"], "--strategy balanced needs --balance-obs"),
    (["--chunk-cache", "x"], "--chunk-cache x: expected MiB, a whole number (0: off)"),
    (["--chunk-cache", "-1"], "--chunk-cache -1: expected MiB"),
])
def test_bench_names_the_bad_option(data, args, says):
    r = cli("bench", data["sparse"], *args)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert "usage:" not in r.stderr


@pytest.mark.parametrize("value", ["0", "257", "x", "-2"])
def test_repack_names_a_bad_thread_count(data, tmp_path, value):
    r = cli("repack", data["sparse"], tmp_path / "out.h5ad", "--threads", value)
    assert r.returncode == 2, r.stderr
    assert f"--threads {value}: expected a whole number 1..256" in r.stderr, r.stderr
    assert not (tmp_path / "out.h5ad").exists()


def test_bench_reports_its_strategy_and_each_epoch(data):
    r = cli("bench", data["sparse"], "--strategy", "balanced", "--balance-obs", "cell_type",
            "--epochs", "3", "--buffered", "--threads", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("balanced block 16 fetch 16 batch 64: 3 epochs of ")
    assert [ln.split(":")[0].strip() for ln in lines[1:4]] == ["epoch 1/3", "epoch 2/3",
                                                               "epoch 3/3"]
    assert lines[4].startswith("balanced ")


def test_wrong_matrix_lists_the_files_matrices(data):
    r = cli("info", data["sparse"], "--matrix", "layers/nope")
    assert r.returncode == 1
    assert "its matrices: X, layers/counts" in r.stderr, r.stderr
    r = cli("bench", data["sparse"], "--matrix", "raw/X", "--buffered")
    assert r.returncode == 1 and "its matrices: X, layers/counts" in r.stderr, r.stderr


def test_missing_file_gives_the_reason(tmp_path):
    for cmd in (["info"], ["repack"], ["tune"]):
        args = cmd + [tmp_path / "absent.h5ad"] + ([tmp_path / "out.h5ad"]
                                                    if cmd == ["repack"] else [])
        r = cli(*args)
        assert r.returncode == 1
        assert r.stderr.strip() == f"scfetch: {tmp_path / 'absent.h5ad'}: No such file or " \
                                   "directory", r.stderr
    (tmp_path / "bad.h5ad").write_bytes(b"not hdf5" * 100)
    r = cli("repack", tmp_path / "bad.h5ad", tmp_path / "out.h5ad")
    assert r.returncode == 1 and "HDF5-DIAG" not in r.stderr and r.stderr.count("\n") == 1


def test_info_columns_align(data):
    r = cli("info", data["sparse"])
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines()[1:] if ln.startswith("  ") and
            not ln.startswith("   ")]
    assert len(rows) >= 5
    starts = {re.match(r"  \S+\s+", ln).end() for ln in rows}
    assert starts == {19}, r.stdout


def test_tune_defaults_to_the_first_categorical_column(data):
    r = cli("tune", data["sparse"], "--seconds", "0.01", "--batch", "32")
    assert r.returncode in (0, 1), r.stderr
    assert r.stdout.startswith("label: obs/cell_type, the first categorical obs column")


def test_zstd_repack_reads_back_in_anndata(data, tmp_path):
    anndata = pytest.importorskip("anndata")
    out = tmp_path / "zstd.h5ad"
    r = cli("repack", data["sparse"], out, "--codec", "zstd")
    assert r.returncode == 0, r.stderr
    assert "hdf5plugin" in r.stdout  # says what anndata needs to read it
    try:
        import hdf5plugin
    except ImportError:
        pytest.skip("hdf5plugin is not installed (apt-get install python3-hdf5plugin)")
    if "zstd" not in hdf5plugin.get_config().registered_filters:
        pytest.skip("this hdf5plugin has no zstd filter (Debian 12's python3-hdf5plugin "
                    "4.0.1 ships no filter binaries)")
    a = anndata.read_h5ad(out)
    got = a.X.tocsr()
    assert (got != data["x"]).nnz == 0
    assert np.array_equal(got.indptr, data["x"].indptr)
