"""`python -m bsegn.research.bench --quick`: the speed harness runs on the CPU and reports what it promises."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_runs_and_writes_its_report(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "bsegn.research.bench", "--quick", "--device", "cpu", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["device"].startswith("cpu")
    assert report["matmul_tflop_s"] > 0 and report["host_peak_mib"] > 0
    syn = report["shapes"]["SYN"]
    for run in ("reference", "fast", "baseline_fast", "seeds"):
        assert syn[run]["s_per_epoch"] > 0, run
        assert syn[run]["epochs"] == 2, run
    assert syn["ratio"] == round(syn["reference"]["s_per_epoch"] / syn["fast"]["s_per_epoch"], 2)
    assert syn["seeds"]["n"] == 2 and syn["seeds"]["vs_one"] > 0
    assert syn["flop_per_iter"] > 0 and 0 < syn["fast"]["of_matmul_rate"]
    assert syn["generate_s"] >= 0 and syn["classify_s"] > 0
    assert "x faster" in res.stdout and "SYN" in res.stdout  # the printed table


def test_bench_rejects_a_bad_argument():
    res = subprocess.run([sys.executable, "-m", "bsegn.research.bench", "--epochs", "0"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 2 and "--epochs must be at least 1" in res.stderr


def test_bench_without_out_leaves_the_committed_record_alone(tmp_path):
    record = (ROOT / "records" / "bench.json").read_bytes()
    res = subprocess.run([sys.executable, "-m", "bsegn.research.bench", "--quick", "--device", "cpu", "--seeds", "1",
                          "--ref-epochs", "1", "--epochs", "1", "--params", str(ROOT / "params.yaml")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "x faster" in res.stdout and " -> " not in res.stdout
    assert list(tmp_path.iterdir()) == [] and (ROOT / "records" / "bench.json").read_bytes() == record
