"""bsegn.config: the real params.yaml validates; each single fault names its exact key path."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest

from bsegn import config
from bsegn.config import ConfigError, load_params, stage_config, validate_all

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture(scope="module")
def real_params() -> dict:
    return load_params(PARAMS_FILE)


def with_value(params: dict, dotted: str, value) -> dict:
    """A deep copy of ``params`` with the key at ``dotted`` (``a.b.c``) set to ``value``."""
    faulty = copy.deepcopy(params)
    *parents, last = dotted.split(".")
    node = faulty
    for key in parents:
        node = node[key]
    node[last] = value
    return faulty


def config_error(params: dict) -> str:
    """The message of the ConfigError that ``validate_all(params)`` must raise."""
    with pytest.raises(ConfigError) as err:
        validate_all(params)
    return str(err.value)


# --------------------------------------------------------------------------- the real file


def test_real_params_file_is_valid(real_params):
    validate_all(real_params)


def test_real_params_lists_syn(real_params):
    # the fault tests below change the SYN block; it is only checked for listed datasets
    assert "SYN" in real_params["base"]["datasets"]
    assert "SYN" in real_params["train"]


def test_override_block_is_merged_over_common(real_params):
    syn, common = real_params["train"]["SYN"], real_params["train"]["common"]
    assert "lr" in syn and syn["lr"] != common["lr"], "precondition: SYN overrides lr"
    assert "beta1" not in syn, "precondition: SYN keeps common's beta1"

    cfg = stage_config(real_params, "train", "SYN")

    assert cfg.lr == syn["lr"]
    assert cfg.beta1 == common["beta1"]


def test_layers_apply_in_order_and_errors_name_the_layer(real_params):
    """common < the method's design < its benchmark column < params' <DS> < params' SYN_<DS>."""
    params = copy.deepcopy(real_params)
    method = params["base"]["method"]
    params["train"]["common"]["epochs"] = 1
    params["methods"][method]["train"] = {**params["methods"][method].get("train", {}), "epochs": 2}
    params["methods"][method]["CUB"]["train"]["epochs"] = 3
    assert stage_config(params, "train", "SYN_SHIFT").epochs == 40  # its own block: no benchmark column
    params["train"].pop("SYN_SHIFT")
    assert stage_config(params, "train", "SYN_SHIFT").epochs == 2
    assert stage_config(params, "train", "SYN_CUB").epochs == 3
    params["train"]["CUB"] = {"epochs": 4}
    assert stage_config(params, "train", "CUB").epochs == stage_config(params, "train", "SYN_CUB").epochs == 4
    params["train"]["SYN_CUB"] = {"epochs": 5}
    assert (stage_config(params, "train", "CUB").epochs, stage_config(params, "train", "SYN_CUB").epochs) == (4, 5)
    params["methods"][method]["CUB"]["train"]["lr"] = "fast"
    with pytest.raises(ConfigError, match=rf"^methods.yaml: {method}.CUB.train.lr: expected a number"):
        stage_config(params, "train", "SYN_CUB")


@pytest.mark.parametrize("method", list(load_params(PARAMS_FILE)["methods"]))
def test_a_realistic_benchmark_takes_its_real_benchmarks_settings(real_params, method):
    params = with_value(real_params, "base.method", method)
    for ds in config.KNOWN_BENCHMARKS:
        for section in config.PER_DATASET_SECTIONS:
            assert stage_config(params, section, f"SYN_{ds}") == stage_config(params, section, ds), (ds, section)


CONFIRMED = ("CUB", "SUN", "AWA2", "FLO")  # the realistic family of the issues' claims


@pytest.mark.parametrize("method", list(load_params(PARAMS_FILE)["methods"]))
def test_a_confirmation_draw_runs_what_its_realistic_benchmark_runs(real_params, method):
    """SYN_<DS>_CONF takes every layer SYN_<DS> takes, its SYN_<DS> block too, then its own."""
    params = with_value(real_params, "base.method", method)
    for ds in CONFIRMED:
        for section in config.PER_DATASET_SECTIONS:
            assert stage_config(params, section, f"SYN_{ds}_CONF") == stage_config(params, section, f"SYN_{ds}")
    params["train"]["SYN_CUB"] = {"epochs": 5}
    assert stage_config(params, "train", "SYN_CUB_CONF").epochs == 5
    params["train"]["SYN_CUB_CONF"] = {"epochs": 6}
    assert (stage_config(params, "train", "SYN_CUB").epochs, stage_config(params, "train", "SYN_CUB_CONF").epochs) \
        == (5, 6)
    assert config.benchmark_of("SYN_SHIFT") is None and config.benchmark_of("CUB_CONF") is None


def test_the_confirmation_family_is_the_documented_second_draw(real_params):
    """Fixed before the design rounds (docs/METHOD.md, "The confirmation family"): generator
    seed 1, explained, kinship and noise 25 % below SYN_<DS>'s, everything else the same."""
    sources = real_params["download"]["sources"]
    for ds in CONFIRMED:
        base, conf = sources[f"SYN_{ds}"]["realistic"], sources[f"SYN_{ds}_CONF"]["realistic"]
        assert set(conf) == set(base)
        assert {k for k in base if base[k] != conf[k]} == {"seed", "explained", "kinship", "noise"}, ds
        assert (base["seed"], conf["seed"]) == (0, 1)
        for k in ("explained", "kinship", "noise"):
            assert conf[k] == pytest.approx(0.75 * base[k]), (ds, k)


def test_an_unknown_method_and_a_methods_section_in_params_are_refused(real_params, tmp_path):
    assert config_error(with_value(real_params, "base.method", "clswgan")).startswith(
        "base.method: expected one of ['f-clswgan'")
    (tmp_path / "params.yaml").write_text(PARAMS_FILE.read_text() + "methods: {}\n")
    (tmp_path / "methods.yaml").write_text((PARAMS_FILE.parent / "methods.yaml").read_text())
    with pytest.raises(ConfigError, match="section 'methods' belongs in methods.yaml"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(PARAMS_FILE.read_text())
    (tmp_path / "methods.yaml").write_text("bsegn: {CUBB: {train: {epochs: 1}}}\n")
    with pytest.raises(ConfigError, match=r"methods.yaml: bsegn.CUBB: not a section or benchmark"):
        validate_all(load_params(tmp_path / "params.yaml"))


def test_a_misspelt_top_level_section_is_refused_by_name(tmp_path):
    """`trian:` used to be accepted and ignored, the shipped train defaults silently used."""
    (tmp_path / "methods.yaml").write_text((PARAMS_FILE.parent / "methods.yaml").read_text())
    (tmp_path / "params.yaml").write_text(PARAMS_FILE.read_text().replace("\ntrain:\n", "\ntrian:\n"))
    with pytest.raises(ConfigError, match=r"params.yaml: unknown section 'trian' \(did you mean 'train'\?\)"):
        load_params(tmp_path / "params.yaml")


def test_a_datasets_settings_records_change_with_its_own_layers_only(real_params):
    """What the settings stage writes for SYN (the file its per-seed stages depend on) is the
    same whatever SYN_CUB's or CUB's blocks say; SYN_CUB's record follows both (#24)."""
    params = copy.deepcopy(real_params)
    before = {ds: config.settings_records(params, ds) for ds in ("SYN", "SYN_CUB", "SYN_SUN")}
    params["train"]["SYN_CUB"] = {"epochs": 7}
    after = {ds: config.settings_records(params, ds) for ds in before}
    assert after["SYN"] == before["SYN"] and after["SYN_SUN"] == before["SYN_SUN"]
    assert after["SYN_CUB"]["train"]["train"]["epochs"] == 7
    assert after["SYN_CUB"]["generate"] == before["SYN_CUB"]["generate"]
    params["classify"]["CUB"] = {**params["classify"].get("CUB", {}), "epochs": 9}  # SYN_CUB's parent layer
    assert config.settings_records(params, "SYN_CUB")["classify"]["classify"]["epochs"] == 9
    assert config.settings_records(params, "SYN") == before["SYN"]


def test_per_seed_stages_run_with_their_settings_files_and_stop_on_stale_ones(real_params, tmp_path, monkeypatch):
    """A per-seed stage reads its sections from runs/<DS>/settings/ (its DVC deps), the same
    configs the params resolve to; a file the params no longer give (a stage run by hand after
    a params change) or a missing one stops it, naming the file, the key and the fix."""
    from bsegn import pipeline
    from bsegn.errors import PipelineError
    from bsegn.io import save_json

    monkeypatch.chdir(tmp_path)
    for ds in ("SYN", "SYN_CUB"):
        for section, record in config.settings_records(real_params, ds).items():
            save_json(record, tmp_path / f"runs/{ds}/settings/{section}.json")
        whole = pipeline.run_config(real_params, ds)
        for stage, sections in pipeline.STAGE_SECTIONS.items():
            run = pipeline.stage_run_config(real_params, ds, stage)
            for section in config.PER_DATASET_SECTIONS:
                assert getattr(run, section) == (getattr(whole, section) if section in sections else None)
            assert run.device == whole.device
    stale = with_value(real_params, "train.SYN.epochs", 3)
    pipeline.stage_run_config(stale, "SYN", "generate")  # generate does not read train.json
    with pytest.raises(PipelineError, match=r"^runs/SYN/settings/train.json: written for other settings than the "
                                            r"params now give \(train.epochs: 40 in the file, 3 in the params\); "
                                            r"the settings stage writes it: .*--dataset SYN`$"):
        pipeline.stage_run_config(stale, "SYN", "train_val")
    (tmp_path / "runs/SYN/settings/classify.json").unlink()
    with pytest.raises(PipelineError, match=r"^runs/SYN/settings/classify.json: missing; the settings stage"):
        pipeline.stage_run_config(real_params, "SYN", "classify")


def test_valid_sha256_pin_is_accepted(real_params):
    validate_all(with_value(real_params, "download.sources.CUB.sha256", "0123456789abcdef" * 4))


# --------------------------------------------------------------------------- one fault each


@pytest.mark.parametrize(
    "key, value, also_in_message",
    [
        # unknown keys, in the common block and in a dataset's override block
        ("train.common.lrr", 1e-3, "unknown"),
        ("train.SYN.lrr", 1e-3, "unknown"),
        ("prepare.split_sed", 1, "unknown"),
        # wrong types
        ("train.SYN.epochs", "ten", "integer"),
        ("train.common.epochs", True, "integer"),  # a bool is not an int
        ("prepare.normalize_attributes", "yes", "true or false"),
        ("base.datasets", "SYN", "list"),  # a string where a list is expected
        ("classify.common.mfim_levels", "visual", "list"),
        ("train.common.lr", "fast", "number"),
        # out of range
        ("train.common.lr", -1, ">= 0"),
        ("train.SYN.lr", -1, ">= 0"),
        ("prepare.val_seen_fraction", 1.5, "<= 0.9"),
        ("train.common.beta1", 1.0, "<= 0.999"),
        # bad choices
        ("base.device", "tpu", "auto"),
        ("prepare.feature_scaling", "zscore", "minmax"),
        ("classify.common.mfim_scaling", "l2", "visual_norm"),
        ("train.SYN.fem_space", "semantic", "embedding"),
    ],
)
def test_single_fault_names_its_key(real_params, key, value, also_in_message):
    message = config_error(with_value(real_params, key, value))
    assert key in message
    assert also_in_message in message


def test_unknown_dataset_lists_the_known_ones(real_params):
    message = config_error(with_value(real_params, "base.datasets", ["SYN", "CUBB"]))
    assert "base.datasets" in message and "'CUBB'" in message
    for known in real_params["download"]["sources"]:
        assert known in message


def test_unknown_mfim_level(real_params):
    message = config_error(with_value(real_params, "classify.common.mfim_levels", ["visual", "pixels"]))
    assert "classify.common.mfim_levels" in message
    assert "'pixels'" in message and "semantic" in message  # names the known levels


@pytest.mark.parametrize("pin", ["abc123", "g" * 64, "0" * 65])
def test_bad_sha256_pin(real_params, pin):
    message = config_error(with_value(real_params, "download.sources.CUB.sha256", pin))
    assert "download.sources.CUB.sha256" in message
    assert "64 hex" in message


def test_url_source_without_url(real_params):
    message = config_error(with_value(real_params, "download.sources.CUB", {"kind": "url"}))
    assert "download.sources.CUB.url" in message


def test_archive_source_without_path(real_params):
    message = config_error(with_value(real_params, "download.sources.CUB", {"kind": "archive"}))
    assert "download.sources.CUB.path" in message


def test_synthetic_source_needs_exactly_one_model(real_params):
    both = {**real_params["download"]["sources"]["SYN_CUB"], "synthetic": real_params["download"]["sources"]["SYN"]["synthetic"]}
    for source in ({"kind": "synthetic"}, both):
        message = config_error(with_value(real_params, "download.sources.SYN_CUB", source))
        assert "download.sources.SYN_CUB: kind 'synthetic' needs exactly one of" in message
    url_with_model = {**real_params["download"]["sources"]["SYN_CUB"], "kind": "url", "url": "http://x/y.zip"}
    message = config_error(with_value(real_params, "download.sources.SYN_CUB", url_with_model))
    assert "only go with kind 'synthetic'" in message


def test_missing_section(real_params):
    params = copy.deepcopy(real_params)
    del params["prepare"]
    assert "prepare" in config_error(params)


# --------------------------------------------------------------------------- the file itself


def test_missing_params_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match="not found") as err:
        load_params(path)
    assert str(path) in str(err.value)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("base:\n  datasets: [SYN\n  seeds: [0]\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_params(path)
    assert str(path) in str(err.value)


def test_top_level_not_a_mapping(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(path)


def test_override_block_for_unknown_dataset_is_an_error(real_params):
    params = copy.deepcopy(real_params)
    params["train"]["CUBB"] = {"lr": 1e-3}
    with pytest.raises(ConfigError, match=r"train\.CUBB: no dataset 'CUBB'"):
        stage_config(params, "train", "SYN")


def test_nan_is_rejected(real_params):
    assert "train.common.lr" in config_error(with_value(real_params, "train.common.lr", float("nan")))


def test_duplicate_seeds_are_rejected():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["base"]["seeds"] = [0, 1, 0]
    with pytest.raises(ConfigError, match=r"base.seeds: seed\(s\) \[0\] listed more than once"):
        validate_all(params)


def test_fem_level_without_a_trained_fem_fails_before_any_stage_runs():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["methods"]["bsegn"]["train"]["fem"] = False
    with pytest.raises(ConfigError, match=r"classify.SYN.mfim_levels includes 'fem' but train.SYN.fem is false"):
        validate_all(params)


def test_encoded_noise_without_the_encoder_is_refused_by_key():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["train"]["SYN"] = {**params["train"].get("SYN", {}), "vae": False, "encoded_noise": True}
    with pytest.raises(ConfigError, match=r"train.SYN.encoded_noise: needs the encoder \(vae: true\)"):
        stage_config(params, "train", "SYN")


def test_decoder_cycle_step_without_the_cycle_term_is_refused_by_key():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["train"]["SYN"] = {**params["train"].get("SYN", {}), "cycle": False, "decoder_cycle_step": True}
    with pytest.raises(ConfigError, match=r"train.SYN.decoder_cycle_step: needs the cycle term \(cycle: true\)"):
        stage_config(params, "train", "SYN")
    params["train"]["SYN"]["cycle"] = True
    assert stage_config(params, "train", "SYN").decoder_cycle_step


def test_bce_vae_loss_needs_a_sigmoid_generator_and_min_max_features():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["train"]["SYN"] = {**params["train"].get("SYN", {}), "vae": True, "vae_loss": "bce"}
    with pytest.raises(ConfigError, match=r"train.SYN.vae_loss: 'bce' needs generator_output: sigmoid \(got 'relu'"):
        stage_config(params, "train", "SYN")
    params["train"]["SYN"]["generator_output"] = "sigmoid"
    assert stage_config(params, "train", "SYN").vae_loss == "bce"
    params["prepare"]["feature_scaling"] = "none"
    with pytest.raises(ConfigError, match=r"train.SYN.vae_loss is 'bce' but prepare.feature_scaling is not 'minmax'"):
        validate_all(params)


def test_unit_norm_decoder_output_needs_normalised_class_vectors():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["train"]["SYN"] = {**params["train"].get("SYN", {}), "decoder_output": "l2norm"}
    validate_all(params)
    params["prepare"]["normalize_attributes"] = False
    with pytest.raises(ConfigError, match=r"train.SYN.decoder_output is 'l2norm' but prepare.normalize_attributes is false"):
        validate_all(params)


def _leaf_keys(params: dict) -> list[str]:
    """Every key of params.yaml that a config dataclass field reads, as a dotted path."""
    keys = [f"base.{k}" for k in params["base"]] + [f"prepare.{k}" for k in params["prepare"]]
    keys += [f"download.{k}" for k in params["download"] if k != "sources"]
    keys += [f"download.sources.SYN.synthetic.{k}" for k in params["download"]["sources"]["SYN"]["synthetic"]]
    keys += [f"download.sources.SYN_CUB.realistic.{k}" for k in params["download"]["sources"]["SYN_CUB"]["realistic"]]
    keys += [f"{section}.common.{k}" for section in ("train", "generate", "classify") for k in params[section]["common"]]
    return keys


@pytest.mark.parametrize("key", _leaf_keys(load_params(PARAMS_FILE)))
def test_every_key_missing_from_params_is_an_error_naming_it(key):
    """params.yaml is the one source of defaults: delete any key and validation names it."""
    params = load_params(PARAMS_FILE)
    *parents, leaf = key.split(".")
    node = params
    for p in parents:
        node = node[p]
    del node[leaf]
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: missing"):
        validate_all(params)


def test_config_dataclasses_carry_no_defaults():
    """No dataclass default can disagree with params.yaml. The only exceptions are the
    kind-specific keys of a download source, which are absent rather than defaulted."""
    absent_allowed = {("SourceConfig", "url"), ("SourceConfig", "sha256"), ("SourceConfig", "path"),
                      ("SourceConfig", "synthetic"), ("SourceConfig", "realistic")}
    for cls in (config.BaseConfig, config.SyntheticConfig, config.RealisticConfig, config.SourceConfig, config.DownloadConfig,
                config.PrepareConfig, config.TrainConfig, config.GenerateConfig, config.ClassifyConfig):
        for f in dataclasses.fields(cls):
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if (cls.__name__, f.name) in absent_allowed:
                assert f.default is None, (cls.__name__, f.name)
            else:
                assert not has_default, f"{cls.__name__}.{f.name} has a default; params.yaml is the place for it"


def test_a_public_code_runs_only_the_benchmarks_it_publishes_settings_for():
    assert config.published_benchmark("SYN_CUB", {"CUB": 1, "AWA2": 2}, "TF-VAEGAN") == "CUB"
    assert config.published_benchmark("AWA2", ["CUB", "AWA2"], "TF-VAEGAN") == "AWA2"
    for dataset in ("SYN", "APY", "SYN_APY"):
        with pytest.raises(ValueError, match=rf"dataset '{dataset}': CE-GZSL publishes settings for \['AWA2', 'CUB'\]"):
            config.published_benchmark(dataset, {"CUB": 1, "AWA2": 2}, "CE-GZSL")
