"""The ablation grid's plumbing: overrides, DVC queue commands, collecting experiments."""

import dataclasses
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bsegn import config
from bsegn.research import ablation
from bsegn.config import apply_overrides, load_params, stage_config

ROOT = Path(__file__).resolve().parents[1]


def test_variant_overrides_apply_to_the_dataset_block():
    params = load_params("params.yaml")
    p = apply_overrides(params, ablation.overrides("bsegn", "SYN"))
    train, classify = stage_config(p, "train", "SYN"), stage_config(p, "classify", "SYN")
    assert train.fem and train.cycle and classify.mfim_levels == ["semantic", "fem"]
    assert stage_config(p, "train", "SYN").lr == stage_config(params, "train", "SYN").lr  # rest untouched
    base = apply_overrides(params, ablation.overrides("f-clswgan", "SYN"))
    assert params["base"]["method"] == "bsegn"  # the original is not modified
    assert not stage_config(base, "train", "SYN").fem and not stage_config(base, "train", "SYN").cycle
    assert stage_config(base, "classify", "SYN").mfim_levels == ["visual"]
    # one module off means the same on every dataset: the FEM level goes with the FEM
    no_fem = apply_overrides(params, ablation.overrides("bsegn-fem", "SYN", params=params))
    assert not stage_config(no_fem, "train", "SYN").fem
    assert stage_config(no_fem, "classify", "SYN").mfim_levels == ["semantic"]
    with_fem = apply_overrides(params, ablation.overrides("bsegn+fem", "SYN_CUB", params=params))
    assert stage_config(with_fem, "train", "SYN_CUB").fem
    assert stage_config(with_fem, "classify", "SYN_CUB").mfim_levels == ["visual", "fem"]
    assert stage_config(with_fem, "train", "SYN_CUB").fem_space == "attribute"
    wide = apply_overrides(params, ablation.overrides("bsegn+fem_embedding", "SYN_CUB", params=params))
    assert stage_config(wide, "train", "SYN_CUB").fem and stage_config(wide, "train", "SYN_CUB").fem_space == "embedding"
    assert stage_config(wide, "classify", "SYN_CUB").mfim_levels == ["visual", "fem"]


def test_a_levels_change_names_a_known_level():
    """Levels(drop="fems") would drop nothing and the variant would run as its method."""
    with pytest.raises(ValueError, match="unknown mFIM level 'fems'"):
        ablation.Levels(drop="fems")
    with pytest.raises(ValueError, match="unknown mFIM level 'pixels'"):
        ablation.Levels(add="pixels")
    assert ablation.Levels(drop="fem").apply(["semantic", "fem"]) == ["semantic"]
    both = ablation.Levels(drop=["fem", "embedding"])  # a YAML list
    assert both.apply(["visual", "fem", "embedding"]) == ["visual"] and hash(both)
    with pytest.raises(ValueError, match="unknown mFIM level 'embeding'"):
        ablation.Levels(drop=["fem", "embeding"])


def test_module_less_variants_switch_the_module_off_in_either_fem_form():
    """Where bsegn's FEM is CE-GZSL's embedding (embed + embed_unseen, s2f and balance on),
    taking out the FEM, s2f or the balance loss switches off that form's own keys too."""
    on_embedding = {"base.method": "bsegn", "train.SYN_SUN.embed": True, "train.SYN_SUN.embed_unseen": True,
                    "train.SYN_SUN.embed_s2f": True, "train.SYN_SUN.embed_balance_weight": 1.0,
                    "classify.SYN_SUN.mfim_levels": ["visual", "embedding"]}
    params = apply_overrides(config.load_params(), on_embedding)

    def resolved(variant):
        p = apply_overrides(params, ablation.overrides(variant, "SYN_SUN", params=params))
        return stage_config(p, "train", "SYN_SUN"), stage_config(p, "classify", "SYN_SUN")

    train, classify = resolved("bsegn-fem")
    assert not train.embed and not train.fem and classify.mfim_levels == ["visual"]
    train, classify = resolved("bsegn-s2f")
    assert train.embed and not train.embed_s2f and train.embed_balance_weight == 1.0
    train, _ = resolved("bsegn-balance")
    assert train.embed_s2f and train.embed_balance_weight == 0.0


# the design each realistic benchmark ships, and the variant its claim rows were measured as
# (records/realistic_runs.csv, renamed "bsegn" in records/realistic.csv). Those variants were
# retired when variants became a method plus overrides; the designs they resolved to are
# tests/claimed_designs.json (every train, generate and classify key, as resolved at 0a7e6b4)
CLAIMED = {"SYN_CUB": "cycle_v_vae_tfv_fb_r5_dn_e168", "SYN_SUN": "cycle_vhs_vae_raw", "SYN_AWA2": "cycle_vhs_vae",
           "SYN_FLO": "cycle_vhs_r5_dn"}
CLAIMED_DESIGNS = json.loads((ROOT / "tests" / "claimed_designs.json").read_text())


@pytest.mark.parametrize("dataset", sorted(CLAIMED))
def test_bsegn_is_the_design_the_realistic_claim_measured(dataset):
    """methods.yaml's bsegn and the claim cannot drift apart: bsegn on the dataset resolves to
    the claimed design key for key (keys added since take their defaults), and the real
    benchmark gets the same design as its stand-in."""
    params = apply_overrides(load_params("params.yaml"), {"base.method": "bsegn"})
    real = dataset.removeprefix("SYN_")
    for stage in ("train", "generate", "classify"):
        resolved = dataclasses.asdict(stage_config(params, stage, dataset))
        claimed = CLAIMED_DESIGNS[dataset][stage]
        assert {k: resolved[k] for k in claimed} == claimed, stage
        new = {k: v for k, v in resolved.items() if k not in claimed}
        assert new == {k: v for k, v in params[stage]["common"].items() if k in new}, stage
        assert stage_config(params, stage, real) == stage_config(params, stage, dataset)
    assert not stage_config(params, "train", dataset).fem  # off: it did not help (docs/METHOD.md)


@pytest.mark.parametrize("dataset", sorted(CLAIMED))
def test_realistic_csv_reports_the_claim_of_the_shipped_design(dataset):
    """records/realistic.csv's "bsegn" rows are the recorded claim of the design params.yaml
    ships (its seeds 3-5 in records/realistic_runs.csv, both protocols), so shipping a new design
    without rewriting them, or rewriting them from another variant's runs, fails here."""
    import pandas as pd
    runs = pd.read_csv(ROOT / "records" / "realistic_runs.csv")
    claim = runs[(runs["variant"] == CLAIMED[dataset]) & (runs["dataset"] == dataset) & (runs["split"] == "test")]
    assert sorted(claim["seed"]) == [3, 4, 5]
    expected = ablation.protocol_rows(claim).assign(variant="bsegn")
    realistic = pd.read_csv(ROOT / "records" / "realistic.csv")
    reported = realistic[(realistic["dataset"] == dataset) & (realistic["variant"] == "bsegn")]
    key = ["seed", "protocol"]
    expected, reported = (df.sort_values(key).reset_index(drop=True) for df in (expected, reported))
    assert reported[key].equals(expected[key])
    metrics = ["T1", "U", "S", "H"]  # realistic.csv keeps 2 decimals of the record's 4
    assert (reported[metrics] - expected[metrics]).abs().max().max() <= 0.005 + 1e-9


# what params.yaml's dataset blocks may set: the embedded benchmarks' net sizes and the
# protocol. A design switch or a published setting there would reach every method.
SETTINGS = {"epochs", "lr", "decoder_lr", "fem_lr", "hidden", "fem_hidden", "fem_dim", "fem_out_dim", "batch_size", "embed_dim",
            "embed_out_dim", "embed_hidden", "select_epochs"}


def test_params_dataset_blocks_hold_no_method_design():
    """A method's design and published settings live in methods.yaml alone: params.yaml's
    dataset blocks set only SETTINGS, and only the embedded benchmarks set more than the protocol."""
    params = load_params("params.yaml")
    for section in ("train", "generate", "classify"):
        for ds, block in params[section].items():
            if ds != "common":
                assert set(block) <= SETTINGS, (section, ds, set(block) - SETTINGS)
                assert ds in ("SYN", "SYN_SHIFT") or set(block) <= {"select_epochs"}, (section, ds)


def test_queue_commands_are_dvc_exp_runs_with_set_params():
    (cmd,) = ablation.queue_commands("SYN", [0, 1], ["bsegn-balance"])
    assert cmd[:5] == ["dvc", "exp", "run", "--queue", "-n"]
    sets = dict(arg.removeprefix("++").split("=", 1) for arg in cmd[6:] if arg != "-S")
    assert all(arg.startswith("++") for arg in cmd[7::2])  # params.yaml's SYN block lacks fem_balance
    assert yaml.safe_load(sets["base.seeds"]) == [0, 1]
    assert yaml.safe_load(sets["base.method"]) == "bsegn"
    assert yaml.safe_load(sets["train.SYN.fem_balance"]) is False


def test_collect_reads_exp_show_json():
    def rev(name, h):
        return {"name": name, "data": {"rev": "a" * 40, "metrics": {"reports/metrics.json": {"data": {
            "SYN": {"T1": 60.0, "U": 40.0, "S": 90.0, "H": h}}}},
            "params": {"params.yaml": {"data": {"base": {"seeds": [0, 1, 2]}}}}}}
    shown = [{"rev": "workspace", "data": {"rev": "workspace"}, "experiments": [
        {"revs": [rev("abl-bsegn-fem-SYN", 50.0)]}, {"revs": [rev("abl-tf-vaegan-SYN", 45.0)]},
        {"revs": [rev("abl-bsegn-s2f-SYN_SHIFT", 40.0)]}]}]
    df = ablation.collect_experiments(shown)
    assert list(df["variant"]) == ["bsegn-fem", "tf-vaegan", "bsegn-s2f"]
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
    df = ablation.run_grid(params, ["SYN"], [0, 1], ["f-clswgan"], workers=1,
                           on_row=lambda d: seen.append(list(zip(d["variant"], d["seed"]))))
    assert list(zip(df["variant"], df["seed"])) == [("f-clswgan", 0), ("f-clswgan", 1)]
    assert seen == [[("f-clswgan", 0)], [("f-clswgan", 0), ("f-clswgan", 1)]]
    assert {"H", "H_test_selected"} <= set(df.columns)


def test_a_variant_from_a_variants_file_reaches_the_spawned_workers(tmp_path, monkeypatch):
    """--variants-file adds variants in the parent process; the spawned workers must get their
    overrides too (they once re-imported VARIANTS without them: KeyError). A file variant with
    the baseline's overrides gives the baseline's numbers."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ablation, "VARIANTS", dict(ablation.VARIANTS))
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({"my_clswgan": ablation.VARIANTS["f-clswgan"]}))
    assert ablation.load_variants(str(tmp_path / "extra.yaml")) == ["my_clswgan"]
    params = apply_overrides(load_params(ROOT / "params.yaml"), {
        "train.SYN.epochs": 1, "train.SYN.hidden": 16, "train.SYN.fem_hidden": 16, "train.SYN.cls_pretrain_epochs": 1,
        "generate.SYN.syn_num": 5, "classify.SYN.epochs": 1, "classify.SYN.calibration": False})
    df = ablation.run_grid(params, ["SYN"], [0], ["f-clswgan", "my_clswgan"], workers=2)
    base, mine = df.drop(columns="variant").to_dict("records")
    assert mine == base


def test_a_variants_file_changes_mfim_levels_per_dataset(tmp_path, monkeypatch):
    """``{add: LEVEL}`` in a variants file is a Levels change, resolved against the method's levels
    on each dataset (bsegn reads [visual] on SYN_CUB and more on SYN_FLO); a wrong key is named."""
    monkeypatch.setattr(ablation, "VARIANTS", dict(ablation.VARIANTS))
    (tmp_path / "extra.yaml").write_text("with_emb:\n  base.method: bsegn\n  train.{ds}.embed: true\n"
                                         "  classify.{ds}.mfim_levels: {add: embedding}\n")
    assert ablation.load_variants(str(tmp_path / "extra.yaml")) == ["with_emb"]
    params = load_params(ROOT / "params.yaml")
    for ds in ("SYN_CUB", "SYN_FLO"):
        method = config.stage_config(apply_overrides(params, {"base.method": "bsegn"}), "classify", ds).mfim_levels
        got = ablation.overrides("with_emb", ds, params=params)[f"classify.{ds}.mfim_levels"]
        assert got == [*method, "embedding"]
    (tmp_path / "bad.yaml").write_text("oops:\n  classify.{ds}.mfim_levels: {plus: embedding}\n")
    with pytest.raises(ValueError, match="oops.classify.{ds}.mfim_levels"):
        ablation.load_variants(str(tmp_path / "bad.yaml"))


def test_val_screen_scores_the_validation_choices_and_spreads_over_gpus(tmp_path, monkeypatch):
    """--split val trains on the validation split only; its row is the choice made there."""
    monkeypatch.chdir(tmp_path)
    params = apply_overrides(load_params(ROOT / "params.yaml"), {
        "train.SYN.epochs": 1, "train.SYN.hidden": 16, "train.SYN.fem_hidden": 16, "train.SYN.cls_pretrain_epochs": 1,
        "generate.SYN.syn_num": 5, "classify.SYN.epochs": 3})
    extra = dict([config.parse_set('classify.{ds}.select_epochs="val"')])
    assert extra == {"classify.{ds}.select_epochs": "val"}
    df = ablation.run_grid(params, ["SYN"], [0], ["f-clswgan"], workers=1, split="val", extra=extra)
    (row,) = df.to_dict("records")
    assert row["split"] == "val" and 1 <= row["epochs_gzsl"] <= 3 and 1 <= row["epochs_zsl"] <= 3
    assert {"T1", "U", "S", "H", "U_cs", "S_cs", "H_cs", "gamma"} <= set(row)
    assert row["H_cs"] >= row["H"] - 1e-9  # gamma 0 is among the candidates
    with pytest.raises(ValueError, match="KEY=VALUE"):
        config.parse_set("classify.SYN.epochs")
    with pytest.raises(ValueError, match="split"):
        ablation.run_grid(params, ["SYN"], [0], ["f-clswgan"], workers=1, split="train")


def test_workers_take_gpus_round_robin(monkeypatch):
    import multiprocessing
    counter = multiprocessing.Value("i", 0)
    seen = []
    for _ in range(5):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        ablation._init_worker(None, counter, 2)
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["0", "1", "0", "1", "0"]
    seen = []
    for _ in range(3):  # a parent restricted to GPUs 2 and 3 hands out 2 and 3
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
        ablation._init_worker(None, counter, 2)
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["3", "2", "3"]  # the counter stood at 5
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    ablation._init_worker(None, counter, 0)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_protocol_means_report_the_calibrated_h_as_honest():
    """What `run` prints under its table for test runs: the honest H is H_cs, not the table's H."""
    import pandas as pd
    runs = [{"variant": "v", "dataset": "SYN_CUB", "seed": s, "split": "test", "T1": 40.0, "U": 30.0, "S": 70.0,
             "H": 42.0 + s, "U_cs": 35.0, "S_cs": 60.0, "H_cs": 50.0 + s, "T1_test_selected": 41.0,
             "U_test_selected": 33.0, "S_test_selected": 66.0, "H_test_selected": 44.0} for s in (3, 5)]
    means = ablation.protocol_means(ablation.protocol_rows(pd.DataFrame(runs)))
    assert means.loc[("SYN_CUB", "v", "honest"), "H"] == 54.0
    assert means.loc[("SYN_CUB", "v", "test_selected"), "H"] == 44.0


def test_protocol_rows_take_the_calibrated_honest_numbers_and_the_test_selected_ones():
    import pandas as pd
    run = {"variant": "bsegn_vhs", "dataset": "SYN_CUB", "seed": 3, "split": "test", "T1": 40.0, "U": 30.0,
           "S": 70.0, "H": 42.0, "U_cs": 35.0, "S_cs": 60.0, "H_cs": 44.2, "T1_test_selected": 41.0,
           "U_test_selected": 33.0, "S_test_selected": 66.0, "H_test_selected": 44.0}
    val_row = {**run, "split": "val"}  # a screening row is no claim: left out
    plain = {k: v for k, v in run.items() if not k.endswith("_cs")}  # a run without calibration
    df = ablation.protocol_rows(pd.DataFrame([run, val_row, plain]))
    assert list(df.columns) == ablation.PROTOCOL_COLUMNS
    rows = df.to_dict("records")
    assert rows[0] == {"dataset": "SYN_CUB", "variant": "bsegn_vhs", "seed": 3, "protocol": "honest",
                       "T1": 40.0, "U": 35.0, "S": 60.0, "H": 44.2}
    assert rows[1]["protocol"] == "test_selected" and (rows[1]["T1"], rows[1]["H"]) == (41.0, 44.0)
    assert len(rows) == 4 and (rows[2]["U"], rows[2]["H"]) == (30.0, 42.0)


def test_advance_counts_the_datasets_a_variant_clears_the_margin_on():
    rows = [("ctl", "A", 50.0), ("ctl", "B", 60.0), ("ctl", "C", 70.0), ("ctl", "D", 80.0),
            ("good", "A", 51.0), ("good", "B", 62.0), ("good", "C", 71.5), ("good", "D", 79.0),
            ("near", "A", 50.9), ("near", "B", 61.0), ("near", "C", 71.0), ("near", "D", 85.0),
            ("part", "A", 52.0), ("part", "B", 62.0)]  # C and D not run yet
    screen = pd.DataFrame(rows, columns=["variant", "dataset", "H_cs"])
    table = ablation.advance(screen, "ctl").set_index("variant")
    assert table.loc["good", "hits"] == 3 and table.loc["good", "passes"] and table.loc["good", "decided"]
    assert table.loc["near", "hits"] == 3 and table.loc["near", "passes"]  # A is 0.9 above: no hit
    assert table.loc["good", "A"] == pytest.approx(1.0)
    assert table.loc["part", "hits"] == 2 and not table.loc["part", "passes"] and not table.loc["part", "decided"]
    costs = ablation.advance(screen, "good", below=True).set_index("variant")  # what leaving a part out costs
    assert costs.loc["ctl", "hits"] == 3 and costs.loc["ctl", "passes"]  # 1, 2, 1.5 below good on A-C
    assert ablation.advance(screen, "ctl", margin=0.9).set_index("variant").loc["near", "hits"] == 4
    with pytest.raises(ValueError, match="no rows of the control 'bsegn'"):
        ablation.advance(screen, "bsegn")


def test_advance_on_the_command_line_reads_several_screens_and_refuses_test_rows(tmp_path):
    import subprocess
    import sys
    cols = "variant,dataset,seed,split,H_cs\n"
    (tmp_path / "r1.csv").write_text(cols + "ctl,A,0,val,50\nctl,B,0,val,60\nctl,C,0,val,70\n")
    (tmp_path / "r2.csv").write_text(cols + "new,A,0,val,52\nnew,B,0,val,61.5\nnew,C,0,val,71\n")
    cmd = [sys.executable, "-m", "bsegn.research.ablation", "advance", str(tmp_path / "r1.csv"),
           str(tmp_path / "r2.csv"), "--control", "ctl"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[1].split() == ["new", "2.0", "1.5", "1.0", "3", "True", "True"]
    (tmp_path / "r2.csv").write_text(cols + "new,A,3,test,52\n")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "only validation-split rows" in done.stderr


def test_choose_takes_the_best_mean_validation_h_per_dataset_and_refuses_test_rows():
    import pandas as pd
    rows = [("SYN_CUB", "bsegn_vhs", 0, 20.0), ("SYN_CUB", "bsegn_vhs", 1, 18.0), ("SYN_CUB", "bsegn", 0, 25.0),
            ("SYN_CUB", "bsegn", 1, 10.0), ("SYN_CUB", "f-clswgan", 0, 99.0), ("SYN_FLO", "bsegn", 0, 70.0)]
    screen = pd.DataFrame([{"dataset": d, "variant": v, "seed": s, "split": "val", "H": 0.0, "H_cs": h}
                           for d, v, s, h in rows])
    chosen, means = ablation.choose(screen, exclude=["f-clswgan"])
    assert chosen == {"SYN_CUB": "bsegn_vhs", "SYN_FLO": "bsegn"}  # 19.0 beats 17.5; baseline left out
    assert set(means["variant"]) == {"bsegn", "bsegn_vhs"}
    assert ablation.choose(screen)[0]["SYN_CUB"] == "f-clswgan"
    with pytest.raises(ValueError, match="validation"):
        ablation.choose(screen.assign(split="test"))


def test_record_appends_runs_keeping_the_recorded_bytes_and_refuses_a_run_twice():
    """The shipped record, cut before its last rows, then those rows recorded again: the same
    file byte for byte. Planted: a run appended a second time (it would weigh twice in every
    mean over the record); a CSV of other columns (a screen's into the claims' record)."""
    import pandas as pd
    recorded = (ROOT / "records" / "realistic_runs.csv").read_text()
    lines = recorded.splitlines(keepends=True)
    head, tail = "".join(lines[:-3]), pd.read_csv(ROOT / "records" / "realistic_runs.csv").tail(3)
    assert ablation.record_text(head, tail, "tail.csv") == recorded
    with pytest.raises(ValueError, match=r"tail.csv: run\(s\) already in the record"):
        ablation.record_text(recorded, tail, "tail.csv")
    with pytest.raises(ValueError, match=r"twice"):
        ablation.record_text(head, pd.concat([tail, tail.head(1)]), "tail.csv")
    screen = pd.read_csv(ROOT / "records" / "realistic_screen.csv").tail(2)
    with pytest.raises(ValueError, match=r"screen.csv: columns .* differ from the record's"):
        ablation.record_text(recorded, screen, "screen.csv")
    # no record yet: the first CSV's header and rows
    assert ablation.record_text(None, tail, "tail.csv") == tail.to_csv(index=False, float_format="%.4f")


def test_record_cli_writes_nothing_when_one_csv_is_refused(tmp_path):
    import subprocess
    import sys
    import pandas as pd
    runs = pd.read_csv(ROOT / "records" / "realistic_runs.csv")
    record, first, second = tmp_path / "record.csv", tmp_path / "a.csv", tmp_path / "b.csv"
    runs.head(4).to_csv(record, index=False, float_format="%.4f")
    runs.iloc[4:6].to_csv(first, index=False, float_format="%.4f")
    runs.iloc[3:5].to_csv(second, index=False, float_format="%.4f")  # row 3 is recorded already
    before = record.read_bytes()
    cmd = [sys.executable, "-m", "bsegn.research.ablation", "record", str(first), str(second), "--to", str(record)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "b.csv: run(s) already in the record" in done.stderr
    assert record.read_bytes() == before
    missing = [*cmd[:5], str(tmp_path / "none.csv"), *cmd[6:]]  # a.csv, then a CSV that is not there
    done = subprocess.run(missing, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "none.csv" in done.stderr and "Traceback" not in done.stderr
    assert record.read_bytes() == before
    done = subprocess.run(cmd[:-3] + ["--to", str(record)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(record)) == 6


def test_protocols_into_the_record_puts_a_shipped_claim_in_place_of_the_old_rows(tmp_path):
    """Shipping a design rewrites its dataset's "bsegn" rows of records/realistic.csv: the
    record with SYN_FLO's rows spoiled, given SYN_FLO's claim, is the committed file byte for
    byte (the other rows and the order kept). Without a destination it refuses: the default
    was once records/realistic.csv itself, which a claim's rows alone would have replaced."""
    import subprocess
    import sys
    import pandas as pd
    runs = pd.read_csv(ROOT / "records" / "realistic_runs.csv")
    claim = runs[(runs["variant"] == CLAIMED["SYN_FLO"]) & (runs["dataset"] == "SYN_FLO") & (runs["split"] == "test")]
    claim.to_csv(tmp_path / "claim.csv", index=False, float_format="%.4f")
    committed = (ROOT / "records" / "realistic.csv").read_text()
    table = pd.read_csv(ROOT / "records" / "realistic.csv")
    flo = (table["dataset"] == "SYN_FLO") & (table["variant"] == "bsegn")
    table.loc[flo, "H"] = 0.0
    record = tmp_path / "realistic.csv"
    table.to_csv(record, index=False, float_format="%.2f")
    cmd = [sys.executable, "-m", "bsegn.research.ablation", "protocols", str(tmp_path / "claim.csv"),
           "--rename", f"{CLAIMED['SYN_FLO']}=bsegn"]
    done = subprocess.run(cmd + ["--into", str(record)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert record.read_text() == committed
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "--out" in done.stderr and "--into" in done.stderr
    done = subprocess.run(cmd + ["--into", str(tmp_path / "none.csv")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "none.csv" in done.stderr and "Traceback" not in done.stderr


def test_run_cli_writes_the_grid_and_prints_its_table(tmp_path):
    """The `run` command end to end, as the GPU rounds call it: one tiny run (1 generator and
    1 classifier epoch on SYN) gives a CSV row and the printed tables. Round 12 found it
    ending in a traceback after writing the CSV, because the `protocols` branch had bound the
    name `table` as a local of main()."""
    import subprocess
    import sys
    import pandas as pd
    out = tmp_path / "runs.csv"
    cmd = [sys.executable, "-m", "bsegn.research.ablation", "run", "--datasets", "SYN", "--variants", "f-clswgan",
           "--seeds", "0", "--workers", "1", "--set", "train.{ds}.epochs=1", "--set", "classify.{ds}.epochs=1",
           "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "by protocol" in done.stdout and f"wrote {out}" in done.stdout
    runs = pd.read_csv(out)
    assert list(runs[["variant", "dataset", "seed"]].itertuples(index=False, name=None)) == [("f-clswgan", "SYN", 0)]
