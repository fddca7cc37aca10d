"""No command writes over a record by default: a file in records/ is written only where the
command line names it (``--out``, ``--into``, ``--to``), so a rerun to look at a result
cannot replace what a GPU lease measured. A command either needs ``--out`` or, without it,
prints what it made and writes nothing (``python -m bsegn.research.bench``: tests/test_bench.py)."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "records"


def _records() -> dict[str, tuple[bytes, int]]:
    """Every file of records/: its bytes and its modification time (written over with the same bytes shows too)."""
    return {str(p.relative_to(ROOT)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(RECORDS.rglob("*"))
            if p.is_file()}


# their output is a CSV that later commands read: --out is required, checked before any work
NEEDS_OUT = {
    "ablation run": ["bsegn.research.ablation", "run", "--datasets", "SYN", "--variants", "f-clswgan"],
    "ablation collect": ["bsegn.research.ablation", "collect"],
    "comparison": ["bsegn.research.comparison", "--recorded", str(RECORDS / "realistic.csv")],
}
# they print what they made; --out also writes it
PRINTS = {
    "fidelity": ["bsegn.research.fidelity", str(RECORDS / "fidelity_runs.csv"), "--public",
                 f"tf-vaegan={RECORDS / 'tfvaegan_runs.csv'}", f"ce-gzsl={RECORDS / 'public' / 'cegzsl_curves.csv'}"],
    "tfvaegan collect": ["bsegn.research.tfvaegan", "collect",
                         *[f"{p.stem}={p}" for p in sorted((RECORDS / "tfvaegan").glob("*.log"))]],
}


@pytest.mark.parametrize("name", sorted(NEEDS_OUT))
def test_a_command_that_writes_a_csv_needs_out(name, tmp_path):
    before = _records()
    done = subprocess.run([sys.executable, "-m", *NEEDS_OUT[name]], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "the following arguments are required: --out" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == [] and _records() == before


@pytest.mark.parametrize("name", sorted(PRINTS))
def test_a_command_without_out_prints_and_writes_nothing(name, tmp_path):
    """Run from ROOT, where the old defaults (records/fidelity.csv, records/tfvaegan_runs.csv) were written."""
    before = _records()
    done = subprocess.run([sys.executable, "-m", *PRINTS[name]], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "SYN_" in done.stdout and "wrote" not in done.stdout  # the table, printed
    assert _records() == before
    out = tmp_path / "table.csv"
    done = subprocess.run([sys.executable, "-m", *PRINTS[name], "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0 and f"wrote {out}" in done.stdout and out.stat().st_size > 0


def test_the_qa_reports_are_printed_and_written_only_to_out(tmp_path, monkeypatch, capsys):
    """tools/planted_bugs.py (records/planted_bugs.txt) and tools/mutation_report.py
    (records/mutation.txt), each on no work at all: no bug planted, one mutant killed."""
    monkeypatch.chdir(tmp_path)
    before = _records()
    planted = load_tool("planted_bugs")
    monkeypatch.setattr(planted, "BUGS", {})
    mutation = load_tool("mutation_report")
    monkeypatch.setattr(mutation.subprocess, "run", lambda *a, **k: SimpleNamespace(stdout="m__mutmut_1: killed\n"))
    for tool, says in ((planted, "0 of 0 caught"), (mutation, "killed (incl. timeouts): 1 of 1")):
        with pytest.raises(SystemExit) as done:
            tool.main([])
        assert done.value.code == 0 and says in capsys.readouterr().out
        assert list(tmp_path.iterdir()) == [] and _records() == before
        with pytest.raises(SystemExit):
            tool.main(["--out", "report.txt"])
        assert says in (tmp_path / "report.txt").read_text()
        (tmp_path / "report.txt").unlink()
