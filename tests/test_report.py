"""Summaries: the spread over seeds, and none claimed for a single seed; the per-stage timings."""

import json
import math

import pandas as pd
import pytest

from bsegn import paths
from bsegn.report import TIMED_STAGES, markdown, stage_runs, summarise


def results(seeds):
    rows = [{"dataset": "SYN", "seed": s, "T1": 50.0 + s, "U": 40.0, "S": 80.0 + s, "H": 53.0} for s in seeds]
    for row in rows:
        row.update({f"{k}_test_selected": row[k] + 1 for k in ("T1", "U", "S", "H")})
    return pd.DataFrame(rows)


def test_one_seed_has_no_spread():
    summary = summarise(results([0]))
    assert math.isnan(summary.loc[0, "H_std"]) and summary.loc[0, "n_seeds"] == 1
    md = markdown(summary)
    assert "50.0 ± n/a" in md and "± 0.0" not in md


def test_several_seeds_give_the_sample_std():
    summary = summarise(results([0, 2]))
    assert summary.loc[0, "T1_mean"] == 51.0 and round(summary.loc[0, "T1_std"], 4) == round(2 ** 0.5, 4)
    assert "51.0 ± 1.4" in markdown(summary)


def test_a_run_at_chance_level_is_named_in_the_report():
    """classify.<DS>.lr=1e6 used to finish with H 0.8 and a report that read like any other."""
    from bsegn.report import at_chance, result_row

    rows = results([0, 1]).assign(H_chance=2.4)
    rows.loc[1, "H"] = 0.8
    assert list(at_chance(rows)["seed"]) == [1]
    md = markdown(summarise(rows), results=rows)
    assert "**At chance level** (H below 2 x what guessing scores): SYN seed 1 (H 0.8, chance 2.4)" in md
    assert "At chance" not in markdown(summarise(rows.iloc[:1]), results=rows.iloc[:1])
    # metrics of runs from before chance was recorded are read, and never marked
    old = {k: 1.0 for k in ("T1", "U", "S", "H")}
    row = result_row({**old, "test_selected": old})
    assert math.isnan(row["H_chance"]) and at_chance(pd.DataFrame([row])).empty


def test_stage_runs_gathers_each_stages_seconds_and_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for seed in (0, 1):
        for i, stage in enumerate(TIMED_STAGES):
            timing = {"seconds": 10.0 * seed + i} | ({"cpu": "GenuineIntel"} if seed else {})  # seed 0: an old file
            file = paths.seconds("SYN", seed, stage)
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(timing))
    runs = stage_runs(["SYN"], [0, 1])
    assert list(runs.columns) == ["dataset", "seed", "stage", "seconds", "cpu"]
    assert runs[["seed", "stage"]].values.tolist() == [[s, st] for s in (0, 1) for st in TIMED_STAGES]
    assert runs["seconds"].tolist() == [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]
    assert runs["cpu"].tolist() == ["unknown"] * 4 + ["GenuineIntel"] * 4
    paths.seconds("SYN", 1, "classify").unlink()
    with pytest.raises(FileNotFoundError, match="classify_seconds.json"):
        stage_runs(["SYN"], [1])
