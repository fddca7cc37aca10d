"""Every method x dataset resolves to the settings docs/methods.md documents, and to nothing else.

docs/methods.md is the documented table (one per method: a row per setting, an `all` column
and a column per real benchmark, each cell with its source below the table); methods.yaml is
what the pipeline reads. Here every method is resolved on every dataset, every key of the
train, generate and classify configs is compared with params.yaml's `common` overlaid by the
documented cells, so a published setting typed wrong, or one method's setting reaching another
(the f-CLSWGAN baseline once trained with BSeGN's CUB epochs), fails.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from bsegn import config
from bsegn.config import apply_overrides, load_params, stage_config

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")
METHODS = ("f-clswgan", "f-vaegan", "tf-vaegan", "ce-gzsl", "bsegn")


def documented_tables(text: str) -> dict[str, dict[str, dict[str, object]]]:
    """docs/methods.md -> {method: {column (all, CUB, ...): {"section.key": value}}}."""
    tables: dict[str, dict[str, dict[str, object]]] = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        method = block.split("\n", 1)[0].strip()
        rows = [line for line in block.splitlines() if line.startswith("| ")]
        header = [c.strip() for c in rows[0].strip("|").split("|")]
        assert header == ["setting", "all", *config.KNOWN_BENCHMARKS], (method, header)
        cols: dict[str, dict[str, object]] = {c: {} for c in header[1:]}
        for line in rows[1:]:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if set(cells[0]) <= {"-"}:
                continue
            for col, cell in zip(header[1:], cells[1:]):
                if cell:
                    cols[col][cells[0].strip("`")] = yaml.safe_load(cell.strip("`"))
        tables[method] = cols
    return tables


TABLES = documented_tables((ROOT / "docs" / "methods.md").read_text())


def expected(method: str, dataset: str, section: str) -> dict:
    """common, the documented `all` and benchmark cells, then params.yaml's dataset blocks."""
    cols = TABLES[method]
    out = dict(PARAMS[section]["common"])
    bench = config.benchmark_of(dataset)
    for col in ["all"] + ([bench] if bench else []):
        out.update({k.split(".", 1)[1]: v for k, v in cols[col].items() if k.split(".", 1)[0] == section})
    for block in ([bench] if bench and bench != dataset else []) + [dataset]:
        out.update(PARAMS[section].get(block) or {})
    return out


def test_the_documented_methods_are_the_five_of_methods_yaml():
    assert list(TABLES) == list(METHODS)
    assert list(PARAMS["methods"]) == list(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_and_dataset_resolves_to_its_documented_settings(method):
    params = apply_overrides(PARAMS, {"base.method": method})
    for dataset in PARAMS["download"]["sources"]:
        for section in config.PER_DATASET_SECTIONS:
            resolved = dataclasses.asdict(stage_config(params, section, dataset))
            want = expected(method, dataset, section)
            diff = {k: (resolved[k], want[k]) for k in resolved if resolved[k] != want[k]}
            assert not diff, f"{method} on {dataset}, {section} (resolved, documented): {diff}"


# the switches that make a method what it is; every method's `all` column sets each of them
DESIGN = {f"train.{k}" for k in (
    "cls_weight", "fem", "cycle", "cycle_unseen", "vae", "vae_weight", "vae_loss", "encoded_noise", "generator_output",
    "gp_adaptive", "decoder_fakes", "decoder_steps", "decoder_output", "cycle_loss", "decoder_cycle_step",
    "feedback", "encoder_layers", "encoder_optimizer", "embed", "embed_unseen", "embed_s2f",
    "embed_balance_weight")} | {
    f"classify.{k}" for k in ("mfim_levels", "mfim_scaling", "mfim_per_sample")}


def test_every_all_column_sets_every_design_switch():
    """No method inherits another's design through `common`: each `all` column sets every
    design switch (so a switch changed in `common` changes no method)."""
    for method, cols in TABLES.items():
        assert DESIGN <= set(cols["all"]), (method, sorted(DESIGN - set(cols["all"])))


def test_f_clswgan_on_cub_is_its_published_setting():
    params = apply_overrides(PARAMS, {"base.method": "f-clswgan"})
    for ds in ("CUB", "SYN_CUB"):
        train = stage_config(params, "train", ds)
        assert (train.epochs, train.cls_weight, train.lr) == (56, 0.01, 1e-4)
        assert not (train.fem or train.cycle or train.vae or train.feedback or train.embed)
        assert stage_config(params, "generate", ds).syn_num == 300
        assert stage_config(params, "classify", ds).mfim_levels == ["visual"]


def test_every_method_is_valid_on_every_dataset():
    for method in METHODS:
        params = apply_overrides(PARAMS, {"base.method": method,
                                          "base.datasets": list(PARAMS["download"]["sources"])})
        config.validate_all(params)
