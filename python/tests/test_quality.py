"""perf/quality.py --quick end to end: every strategy trains and is scored,
and the figures say what the method promises on a label-sorted file."""
import csv
import os
import subprocess
import sys

import pytest

import scfetch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "perf", "quality.py")


def test_quality_quick(tmp_path):
    pytest.importorskip("torch")
    # The package sits in BUILD/python/scfetch, scf_gen in BUILD.
    build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(scfetch.__file__))))
    if not os.access(os.path.join(build, "scf_gen"), os.X_OK) or not os.path.exists(SCRIPT):
        pytest.skip("needs the build tree's scf_gen and perf/quality.py")
    out = tmp_path / "out"
    subprocess.run([sys.executable, SCRIPT, "--quick", "--build", build,
                    "--data", str(tmp_path / "q.h5ad"), "--out", str(out)],
                   check=True, timeout=120, stdout=subprocess.DEVNULL)
    with open(out / "quality.csv") as f:
        rows = {r["strategy"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"streaming", "streaming+shuffle", "block 16 / fetch 64",
                         "block 16 / fetch 256", "block 256 / fetch 16", "true random"}
    with open(out / "quality.dat") as f:
        majority = float(f.read().split("# majority-class accuracy\n")[1].split()[0])
    acc = {k: float(r["accuracy"]) for k, r in rows.items()}
    ratio = {k: float(r["entropy_ratio"]) for k, r in rows.items()}
    assert acc["true random"] > majority + 0.2
    assert acc["block 16 / fetch 64"] > majority + 0.2
    assert ratio["block 16 / fetch 64"] > 0.9 and 0.95 < ratio["true random"] < 1.05
    assert ratio["streaming"] < 0.1 and acc["streaming"] < acc["true random"] - 0.2
    assert (out / "table.md").read_text().count("\n| ") == 7  # header + six strategies
