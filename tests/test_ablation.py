"""The ablation grid's plumbing: overrides, DVC queue commands, collecting experiments."""

from pathlib import Path

import pytest
import yaml

from bsegn import ablation
from bsegn.config import apply_overrides, load_params, stage_config

ROOT = Path(__file__).resolve().parents[1]


def test_variant_overrides_apply_to_the_dataset_block():
    params = load_params("params.yaml")
    p = apply_overrides(params, ablation.overrides("bsegn", "SYN"))
    train, classify = stage_config(p, "train", "SYN"), stage_config(p, "classify", "SYN")
    assert train.fem and train.cycle and classify.mfim_levels == ["semantic", "fem"]
    assert stage_config(p, "train", "SYN").lr == stage_config(params, "train", "SYN").lr  # rest untouched
    assert stage_config(params, "train", "SYN").fem  # shipped params: BSeGN; the original is not modified
    base = apply_overrides(params, ablation.overrides("baseline", "SYN"))
    # the baseline switches everything off explicitly, whatever params.yaml ships
    assert not stage_config(base, "train", "SYN").fem and not stage_config(base, "train", "SYN").cycle
    assert stage_config(base, "classify", "SYN").mfim_levels == ["visual"]


def test_queue_commands_are_dvc_exp_runs_with_set_params():
    (cmd,) = ablation.queue_commands("SYN", [0, 1], ["fem_bidir"])
    assert cmd[:5] == ["dvc", "exp", "run", "--queue", "-n"]
    sets = dict(arg.split("=", 1) for arg in cmd[6:] if arg != "-S")
    assert yaml.safe_load(sets["base.seeds"]) == [0, 1]
    assert yaml.safe_load(sets["train.SYN.fem"]) is True
    assert yaml.safe_load(sets["train.SYN.fem_balance"]) is False


def test_collect_reads_exp_show_json():
    def rev(name, h):
        return {"name": name, "data": {"rev": "a" * 40, "metrics": {"reports/metrics.json": {"data": {
            "SYN": {"T1": 60.0, "U": 40.0, "S": 90.0, "H": h}}}},
            "params": {"params.yaml": {"data": {"base": {"seeds": [0, 1, 2]}}}}}}
    shown = [{"rev": "workspace", "data": {"rev": "workspace"}, "experiments": [
        {"revs": [rev("abl-fem-SYN", 50.0)]}, {"revs": [rev("abl-cycle+mfim-SYN", 45.0)]},
        {"revs": [rev("abl-bsegn-s2f-SYN_SHIFT", 40.0)]}]}]
    df = ablation.collect_experiments(shown)
    assert list(df["variant"]) == ["fem", "cycle+mfim", "bsegn-s2f"]
    assert list(df["H"]) == [50.0, 45.0, 40.0] and set(df["seeds"]) == {3}


@pytest.mark.parametrize("variant", list(ablation.VARIANTS))
@pytest.mark.parametrize("dataset", ["SYN", "SYN_SHIFT", "CUB"])
def test_queued_names_map_back_to_their_variants(variant, dataset):
    """Each variant's queued experiment name is read back as that variant, not a neighbour."""
    name = ablation.queue_commands(dataset, [0], [variant])[0][5]
    assert ablation.variant_of(name) == variant


def test_run_grid_reports_each_finished_run_in_job_order(tmp_path, monkeypatch):
    """A grid cut short still leaves its finished rows: on_row sees them after every run."""
    monkeypatch.chdir(tmp_path)  # the download cache goes here
    params = apply_overrides(load_params(ROOT / "params.yaml"), {
        "train.SYN.epochs": 1, "train.SYN.hidden": 16, "train.SYN.fem_hidden": 16, "train.SYN.cls_pretrain_epochs": 1,
        "generate.SYN.syn_num": 5, "classify.SYN.epochs": 1, "classify.SYN.calibration": False})
    seen: list[list[tuple]] = []
    df = ablation.run_grid(params, ["SYN"], [0, 1], ["baseline"], workers=1,
                           on_row=lambda d: seen.append(list(zip(d["variant"], d["seed"]))))
    assert list(zip(df["variant"], df["seed"])) == [("baseline", 0), ("baseline", 1)]
    assert seen == [[("baseline", 0)], [("baseline", 0), ("baseline", 1)]]
    assert {"H", "H_test_selected"} <= set(df.columns)
