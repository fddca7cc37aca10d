"""records/methods.csv, and the tables of README.md and docs/METHOD.md, generated from the records."""

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bsegn.research import comparison

ROOT = Path(__file__).resolve().parents[1]


def _run(variant: str, seed: int, h: float) -> dict:
    return {"variant": variant, "dataset": "SYN_CUB", "seed": seed, "split": "test", "T1": 50.0, "U": 40.0,
            "S": 60.0, "H": h, "U_cs": 45.0, "S_cs": 55.0, "H_cs": h + 1, "T1_test_selected": 52.0,
            "U_test_selected": 41.0, "S_test_selected": 70.0, "H_test_selected": h + 2}


def test_method_rows_take_both_protocols_of_the_methods_runs_only():
    runs = pd.DataFrame([_run("f-clswgan", 3, 40.0), _run("bsegn-fem", 3, 10.0), _run("bsegn", 4, 50.0)])
    rows = comparison.method_rows(runs)
    assert list(rows.columns) == comparison.COLUMNS
    assert list(zip(rows["method"], rows["protocol"], rows["H"])) == [
        ("f-clswgan", "honest", 41.0), ("f-clswgan", "test_selected", 42.0),
        ("bsegn", "honest", 51.0), ("bsegn", "test_selected", 52.0)]


def test_rows_of_grid_experiments_name_their_experiment():
    """bsegn.grid collect's CSV has each run's experiment: both its protocol rows carry it."""
    runs = pd.DataFrame([{**_run("bsegn", 3, 50.0), "experiment": "bsegn-SYN_CUB-s3"},
                         {**_run("bsegn-fem", 3, 10.0), "experiment": "other"},
                         {**_run("f-clswgan", 4, 40.0), "experiment": "f-clswgan-SYN_CUB-s4"}])
    rows = comparison.method_rows(runs)
    assert list(zip(rows["method"], rows["protocol"], rows["experiment"])) == [
        ("bsegn", "honest", "bsegn-SYN_CUB-s3"), ("bsegn", "test_selected", "bsegn-SYN_CUB-s3"),
        ("f-clswgan", "honest", "f-clswgan-SYN_CUB-s4"), ("f-clswgan", "test_selected", "f-clswgan-SYN_CUB-s4")]
    assert set(comparison.method_rows(runs.drop(columns="experiment"))["experiment"]) == {""}


def test_combine_orders_the_line_and_refuses_unknown_methods_and_repeated_runs():
    runs = pd.DataFrame([_run("bsegn", 3, 50.0), _run("f-clswgan", 3, 40.0)])
    public = pd.DataFrame([{"dataset": "SYN_CUB", "method": "tf-vaegan-public", "seed": 3483,
                            "protocol": "test_selected", "T1": 61.4, "U": 46.8, "S": 84.5, "H": 60.3}])
    df = comparison.combine([runs], [public])
    assert list(df["method"]) == ["f-clswgan", "f-clswgan", "bsegn", "bsegn", "tf-vaegan-public"]
    with pytest.raises(ValueError, match="unknown method"):
        comparison.combine([runs], [public.assign(method="tfvaegan")])
    with pytest.raises(ValueError, match="given twice"):
        comparison.combine([runs, runs], [])
    table = comparison.markdown_table(df)
    assert "| SYN_CUB | bsegn | 1 | 50.0 | 45.0 | 55.0 | 51.0 | 52.0 |" in table
    assert "| SYN_CUB | tf-vaegan-public | 1 |  |  |  |  | 60.3 |" in table


def test_diverged_runs_are_counted_in_the_tables_and_cannot_also_have_finished():
    """A run the trainer stopped on a diverged loss is a ``diverged`` row without metrics: the
    tables count it beside the seeds that finished (not a silent gap), both halves of one run
    count once, and a run recorded as both diverged and finished is refused."""
    runs = pd.DataFrame([_run("f-vaegan", 4, 60.0)])
    lost = pd.DataFrame([{"variant": "f-vaegan", "dataset": "SYN_CUB", "seed": s, "part": part, "epoch": 16,
                          "loss": "vae", "value": 1.5e10} for s, part in ((3, "val"), (5, "val"), (5, "test"))])
    df = comparison.combine([runs], [], diverged=[lost])
    assert list(df.columns) == comparison.COLUMNS
    assert sorted(df[df["protocol"] == comparison.DIVERGED]["seed"]) == [3, 5]
    assert df[df["protocol"] == comparison.DIVERGED][["T1", "U", "S", "H"]].isna().all().all()
    assert comparison.overview_table(df).splitlines()[2] == "| f-vaegan | 61.0 / 62.0 (1; 2 diverged) |"
    assert "| SYN_CUB | f-vaegan | 1 + 2 diverged | 50.0 | 45.0 | 55.0 | 61.0 | 62.0 |" in comparison.markdown_table(df)
    only_lost = comparison.combine([], [], diverged=[lost])
    assert comparison.overview_table(only_lost).splitlines()[2] == "| f-vaegan | – / – (2 diverged) |"
    with pytest.raises(ValueError, match="both diverged and finished"):
        comparison.combine([runs], [], diverged=[lost.assign(seed=4)])


def test_with_table_replaces_only_what_is_between_the_markers():
    readme = f"intro\n{comparison.BEGIN}\nold\n{comparison.END}\nrest\n"
    assert comparison.with_table(readme, "NEW") == f"intro\n{comparison.BEGIN}\nNEW\n{comparison.END}\nrest\n"
    with pytest.raises(ValueError, match="markers"):
        comparison.with_table("no markers", "NEW")


def test_with_tables_remakes_each_table_from_its_own_file(tmp_path):
    """Every table whose markers a document holds is remade from its file, the rest untouched."""
    (tmp_path / "records").mkdir()
    pd.DataFrame([{"dataset": "SYN_CUB", "variant": v, "seed": 3, "protocol": p, "T1": 1.0, "U": 2.0, "S": 3.0,
                   "H": h + (p == "test_selected")} for v, h in (("baseline", 40.0), ("bsegn", 50.0))
                  for p in ("honest", "test_selected")]).to_csv(tmp_path / "records" / "realistic.csv", index=False)
    begin, end = comparison.markers("realistic")
    text = f"a\n{begin}\nold\n{end}\nb\n{comparison.BEGIN}\nkept\n{comparison.END}\n"
    with pytest.raises(FileNotFoundError):  # the methods table's file is not there
        comparison.with_tables(text, tmp_path)
    out = comparison.with_tables(text.replace(comparison.BEGIN, "<!-- x -->"), tmp_path)
    assert "| SYN_CUB | bsegn | 1 | 1.0 | 2.0 | 3.0 | 50.0 | 51.0 | -1.0 | +10.0 |" in out
    assert "| SYN_CUB | baseline | 1 | 1.0 | 2.0 | 3.0 | 40.0 | 41.0 | -1.0 |  |" in out
    assert "old" not in out and out.startswith("a\n") and "kept" in out


def test_realistic_table_leaves_empty_what_a_variant_has_not_measured():
    rows = [{"dataset": "SYN_AWA2", "variant": "tfvaegan", "seed": 9182, "protocol": "test_selected", "T1": 71.1,
             "U": 64.9, "S": 57.8, "H": 61.2}]
    assert comparison.realistic_table(pd.DataFrame(rows)).splitlines()[-1] == "| SYN_AWA2 | tfvaegan | 1 |  |  |  |  | 61.2 |  |  |"


def test_fidelity_table_and_first_table():
    fid = pd.read_csv(ROOT / "records" / "fidelity.csv").head(1)
    assert comparison.fidelity_table(fid).splitlines()[2] == "| ce-gzsl | SYN_AWA2 | 10 | 10 | 47.5 | 39.7 | +7.7 | 55.0 | 52.5 |"
    md = "# R\n\nintro\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nmore\n\n| c |\n|---|\n"
    assert comparison.first_table(md) == "| a | b |\n|---|---|\n| 1 | 2 |"
    with pytest.raises(ValueError, match="no markdown table"):
        comparison.first_table("no table")


def test_readme_overview_table_is_generated_from_records_methods_csv():
    """The README's table is overview_table(records/methods.csv): a new row without the README
    following (python -m bsegn.research.comparison --out records/methods.csv --docs README.md docs/METHOD.md) fails here."""
    df = pd.read_csv(ROOT / "records" / "methods.csv")
    assert list(df.columns) == comparison.COLUMNS
    readme = (ROOT / "README.md").read_text()
    assert comparison.with_table(readme, comparison.overview_table(df), *comparison.markers("overview")) == readme


def test_overview_has_a_row_per_method_and_a_column_per_dataset():
    rows = [("D1", "bsegn", s, p, 1.0, 1.0, 1.0, h, "") for s in (3, 4, 5)
            for p, h in (("honest", 60.0 + s), ("test_selected", 50.0))]
    rows += [("D2", "f-clswgan", 3, "test_selected", 1.0, 1.0, 1.0, 40.0, ""),
             ("D2", "tf-vaegan-public", 9, "test_selected", 1.0, 1.0, 1.0, 30.0, "")]
    table = comparison.overview_table(pd.DataFrame(rows, columns=comparison.COLUMNS)).splitlines()
    assert table[0] == "| method | D1 | D2 |"
    assert table[2:] == ["| f-clswgan |  | – / 40.0 (1) |", "| bsegn | 64.0 ± 1.0 / 50.0 |  |",
                         "| tf-vaegan-public |  | – / 30.0 (1) |"]


def _results_md_is_committed() -> bool:
    """reports/results.md is what HEAD holds (False after a `dvc exp run` or `dvc repro` with other
    params in this workspace; True where git is not there to ask)."""
    try:
        res = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "reports/results.md"], cwd=ROOT,
                             capture_output=True)
    except OSError:
        return True
    return res.returncode != 1


@pytest.mark.parametrize("doc, tables", [("README.md", {"results", "overview"}),
                                         ("docs/METHOD.md", {"realistic", "overview", "fidelity"})])
def test_documents_tables_are_generated_from_the_records(doc, tables):
    """Every results table of README.md and docs/METHOD.md is the generator's output from its
    record (the README's results table from the pipeline's reports/results.md): a result that
    ships changes its record, and the documents follow with
    python -m bsegn.research.comparison --out records/methods.csv --docs README.md docs/METHOD.md."""
    text = (ROOT / doc).read_text()
    held = {name for name in comparison.TABLES if comparison.markers(name)[0] in text}
    assert held == tables, doc
    if "results" in held and not _results_md_is_committed():
        pytest.skip("reports/results.md differs from HEAD's (an experiment's outputs in the workspace)")
    assert comparison.with_tables(text, ROOT) == text, f"{doc}: rerun python -m bsegn.research.comparison --out records/methods.csv --docs {doc}"


def test_recorded_rows_keep_the_methods_rows_of_a_protocols_record():
    record = pd.DataFrame([{"dataset": "SYN_CUB", "variant": v, "seed": 3, "protocol": "honest", "T1": 1.0,
                            "U": 2.0, "S": 3.0, "H": 4.0} for v in ("bsegn", "bsegn+fem", "baseline")])
    rows = comparison.recorded_rows(record)
    assert list(rows.columns) == comparison.COLUMNS and list(rows["method"]) == ["bsegn"]
    df = comparison.combine([], [], [record])
    assert list(df["method"]) == ["bsegn"]


def test_a_public_run_settles_at_its_published_epochs_or_three_evaluations_without_a_new_best():
    """issue #22's rule for a public-code row; an equal H is no new best."""
    assert comparison.settled([10.0, 20.0, 19.0, 20.0, 18.0], epochs_run=25, published_epochs=300)
    assert not comparison.settled([10.0, 20.0, 19.0, 18.0], epochs_run=20, published_epochs=300)
    assert not comparison.settled([10.0, 20.0, 21.0], epochs_run=15, published_epochs=300)
    assert comparison.settled([10.0, 20.0, 21.0], epochs_run=300, published_epochs=300)


def test_the_public_ce_gzsl_rows_are_those_of_its_settled_runs():
    """tools/cegzsl_public.py writes a best row only for a run that settled (its published epochs:
    AWA2 130, CUB 450); the committed records hold the row of each settled run and no other."""
    from tool_loader import load_tool
    cegzsl = load_tool("cegzsl_public")

    def run(ds, seed, hs):
        return [{"dataset": ds, "method": "ce-gzsl-public", "seed": seed, "epoch": 5 * (i + 1), "T1": 50.0 + i,
                 "U": 1.0, "S": 2.0, "H": h} for i, h in enumerate(hs)]

    curves = pd.DataFrame(run("SYN_AWA2", 9, [30.0, 60.0, 59.0, 58.0, 57.0]) + run("SYN_CUB", 3, [3.0, 7.0, 13.0]))
    assert cegzsl.best_rows(curves)[["dataset", "seed", "H", "T1"]].values.tolist() == [["SYN_AWA2", 9, 60.0, 51.0]]
    committed = pd.read_csv(ROOT / "records" / "public" / "cegzsl_curves.csv")
    pd.testing.assert_frame_equal(cegzsl.best_rows(committed).reset_index(drop=True),
                                  pd.read_csv(ROOT / "records" / "public" / "cegzsl_best.csv", keep_default_na=False),
                                  check_dtype=False)
