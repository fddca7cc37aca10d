"""Typed configuration: params.yaml is parsed once into dataclasses and validated.

params.yaml is the one place defaults live: the dataclasses have none (only the
kind-specific keys of a download source may be absent), and a missing key is an error
that names it.

Every error names the key that is wrong (``train.CUB.lr``) and what was expected, so a
typo in ``dvc exp run -S`` fails at once instead of deep inside training.

Sections with per-dataset settings (``train``, ``generate``, ``classify``) are resolved in
layers by :func:`stage_config`, each overriding the one before (docs/methods.md):

1. ``params.yaml`` ``<section>.common``: every key (the defaults);
2. ``methods.yaml`` ``<method>.<section>``: the design of the method ``base.method`` selects;
3. ``methods.yaml`` ``<method>.<DS>.<section>``: its published settings for benchmark ``DS``;
4. ``params.yaml`` ``<section>.<DS>``: this project's settings for ``DS``, whatever the method;
5. ``params.yaml`` ``<section>.SYN_<DS>``: those of the realistic benchmark alone;
6. ``params.yaml`` ``<section>.SYN_<DS>_CONF``: those of its confirmation draw alone.

A realistic benchmark ``SYN_<DS>`` stands in for ``DS``, so layers 3 and 4 are ``DS``'s: it
has no block of its own unless a user gives it one. Its confirmation draw ``SYN_<DS>_CONF``
(the same splits, other generated features: docs/METHOD.md, "The confirmation family") runs
exactly what ``SYN_<DS>`` runs, so layer 5 is ``SYN_<DS>``'s too. An error names the layer a
bad key is in.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import PipelineError

KNOWN_BENCHMARKS = ("CUB", "SUN", "AWA1", "AWA2", "APY", "FLO")


class ConfigError(PipelineError, ValueError):
    """A params.yaml value is missing, unknown, of the wrong type or out of range."""


def _rng(lo=None, hi=None, choices=None):
    """Field metadata: inclusive numeric bounds or the allowed values of a field."""
    return {"lo": lo, "hi": hi, "choices": choices}


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class BaseConfig:
    method: str  # a method of methods.yaml: f-clswgan | f-vaegan | tf-vaegan | ce-gzsl | bsegn
    datasets: list[str]
    seeds: list[int]
    device: str = field(metadata=_rng(choices=("auto", "cpu", "cuda")))
    tf32: bool  # CUDA only: float32 matrix products on the tensor cores (docs/METHOD.md)


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded benchmark (see :mod:`bsegn.synthetic`)."""

    seed: int
    n_seen: int = field(metadata=_rng(lo=2))
    n_unseen: int = field(metadata=_rng(lo=2))
    n_val: int = field(metadata=_rng(lo=1))  # seen classes held out for validation
    per_class: int = field(metadata=_rng(lo=10))
    d_att: int = field(metadata=_rng(lo=2))
    d_latent: int = field(metadata=_rng(lo=1))
    d_feat: int = field(metadata=_rng(lo=2))
    n_groups: int = field(metadata=_rng(lo=1))
    shift: float = field(metadata=_rng(lo=0.0))  # seen/unseen latent shift
    unexplained: float = field(metadata=_rng(lo=0.0))  # class variation not in attributes
    kinship: float = field(metadata=_rng(lo=0.0, hi=1.0))  # unseen share of a seen parent's
    noise: float = field(metadata=_rng(lo=0.0))  # instance noise
    test_seen_fraction: float = field(metadata=_rng(lo=0.05, hi=0.9))


@dataclass(frozen=True)
class RealisticConfig:
    """A realistic benchmark: real split files, generated features (see :mod:`bsegn.realistic`)."""

    splits: str  # folder with the real att_splits.mat and class lists (data/splits/<DATASET>)
    seed: int
    unseen_classes: int = field(metadata=_rng(lo=1))  # checked against testclasses.txt; drawn without it
    val_classes: int = field(metadata=_rng(lo=1))  # checked against valclasses1.txt; drawn without it
    count_spread: float = field(metadata=_rng(lo=0.0))  # class-size variation where labels are not real
    d_feat: int = field(metadata=_rng(lo=2))
    d_code: int = field(metadata=_rng(lo=1))  # latent class factors
    explained: float = field(metadata=_rng(lo=0.0, hi=1.0))  # their share the semantics predict
    kinship: float = field(metadata=_rng(lo=0.0, hi=1.0))  # unseen share of seen neighbours' rest
    neighbours: int = field(metadata=_rng(lo=1))
    class_spread: float = field(metadata=_rng(lo=0.0))  # scale of the class signal
    d_instance: int = field(metadata=_rng(lo=0))  # rank of the within-class shared variation
    instance_spread: float = field(metadata=_rng(lo=0.0))
    noise: float = field(metadata=_rng(lo=0.0))  # per-dimension noise
    sparsity: float = field(metadata=_rng(lo=0.01, hi=0.99))  # share of near-zero values
    tail: float = field(metadata=_rng(lo=0.0))  # log-sd of image energy and dimension scales


@dataclass(frozen=True)
class SourceConfig:
    """Where one dataset's ``res101.mat`` + ``att_splits.mat`` come from."""

    kind: str = field(metadata=_rng(choices=("url", "archive", "folder", "synthetic")))
    url: str | None = None  # kind=url: the archive's address
    sha256: str | None = None  # kind=url/archive: pin the archive's digest
    path: str | None = None  # kind=archive (a .zip) or folder (an extracted tree)
    synthetic: SyntheticConfig | None = None  # kind=synthetic: the toy model (SYN)
    realistic: RealisticConfig | None = None  # kind=synthetic: real splits, generated features


@dataclass(frozen=True)
class DownloadConfig:
    cache_dir: str
    sources: dict[str, SourceConfig]
    timeout_s: float = field(metadata=_rng(lo=1.0))
    retries: int = field(metadata=_rng(lo=0))


@dataclass(frozen=True)
class PrepareConfig:
    feature_scaling: str = field(metadata=_rng(choices=("minmax", "none")))
    normalize_attributes: bool  # L2-normalise each class's semantic vector
    val_seen_fraction: float = field(metadata=_rng(lo=0.05, hi=0.9))
    split_seed: int  # picks the held-out images of the validation split


@dataclass(frozen=True)
class TrainConfig:
    """Generator training. All switches off = the f-CLSWGAN baseline."""

    epochs: int = field(metadata=_rng(lo=1))
    batch_size: int = field(metadata=_rng(lo=2))
    lr: float = field(metadata=_rng(lo=0.0))
    beta1: float = field(metadata=_rng(lo=0.0, hi=0.999))
    hidden: int = field(metadata=_rng(lo=1))
    # G's output layer: relu (f-CLSWGAN; features are non-negative) or sigmoid (TF-VAEGAN;
    # the min-max scaled training features lie in [0, 1])
    generator_output: str = field(metadata=_rng(choices=("relu", "sigmoid")))
    noise_dim: int = field(metadata=_rng(lo=0))  # 0 = attribute dim (published default)
    critic_iters: int = field(metadata=_rng(lo=1))
    gp_weight: float = field(metadata=_rng(lo=0.0))
    # TF-VAEGAN's schedule for gp_weight: x1.1 after an iteration whose mean penalty is above
    # 1.05, /1.1 below 1.001 (docs/METHOD.md); gp_weight is then its starting value
    gp_adaptive: bool
    cls_weight: float = field(metadata=_rng(lo=0.0))  # f-CLSWGAN classification loss
    cls_pretrain_epochs: int = field(metadata=_rng(lo=1))
    # the Adam of that seen classifier's pretraining (f-CLSWGAN's: 1e-3, beta1 0.5), its own,
    # not the generator's lr and beta1
    seen_classifier_lr: float = field(metadata=_rng(lo=0.0))
    seen_classifier_beta1: float = field(metadata=_rng(lo=0.0, hi=0.999))
    # VAE encoder (f-VAEGAN / TF-VAEGAN)
    vae: bool
    vae_weight: float = field(metadata=_rng(lo=0.0))
    # the critic and G's adversarial term score fakes made from encoder noise E(x, a) (the VAE
    # reconstructions), not prior noise: f-VAEGAN's and TF-VAEGAN's --encoded_noise
    encoded_noise: bool
    # the VAE's reconstruction term: mse (squared error) or bce (TF-VAEGAN's binary cross-entropy,
    # summed over dims; needs generator_output sigmoid)
    vae_loss: str = field(metadata=_rng(choices=("mse", "bce")))
    # E's layers before its mean and log-variance heads: 1 (d_hidden), or 2 as TF-VAEGAN's
    # encoder (d_hidden, then 2 * d_noise)
    encoder_layers: int = field(metadata=_rng(choices=(1, 2)))
    # E's Adam: shared (one optimiser with G, so G's beta1) or own (its own Adam with PyTorch's
    # default beta1 0.9 and G's learning rate, as TF-VAEGAN's code builds it)
    encoder_optimizer: str = field(metadata=_rng(choices=("shared", "own")))
    # cycle-consistency branch
    cycle: bool
    # the cycle term also scores generated unseen features (ours); false: seen fakes only, as
    # TF-VAEGAN's code (its generator step sees seen classes alone)
    cycle_unseen: bool
    cycle_weight: float = field(metadata=_rng(lo=0.0))
    # R's loss and the cycle term: mse (squared error) | weighted_l1 (TF-VAEGAN's WeightedL1)
    cycle_loss: str = field(metadata=_rng(choices=("mse", "weighted_l1")))
    decoder_lr: float = field(metadata=_rng(lo=0.0))
    # R's output: linear, or l2norm (TF-VAEGAN's AttDec: each reconstruction scaled to unit
    # norm, to match the L2-normalised class vectors of prepare.normalize_attributes)
    decoder_output: str = field(metadata=_rng(choices=("linear", "l2norm")))
    decoder_fakes: bool  # also train R on generated unseen features
    # R steps per iteration, each on a fresh batch: 1 (ours), or one per critic step as in
    # TF-VAEGAN's code, whose decoder takes a step inside every critic iteration (5)
    decoder_steps: int = field(metadata=_rng(lo=1))
    # R also takes a step on G's cycle term, with G's step (the fakes' reconstructions): as in
    # TF-VAEGAN's code, whose decoder is stepped with G unless --freeze_dec (set for AWA only)
    decoder_cycle_step: bool
    # TF-VAEGAN's feedback module: every fake is made twice, the second time with G's hidden
    # layer corrected by feedback_weight * F_b(R's hidden layer of the first fake)
    feedback: bool
    feedback_weight: float = field(metadata=_rng(lo=0.0))
    feedback_lr: float = field(metadata=_rng(lo=0.0))
    # feature-to-semantic embedding module
    fem: bool
    fem_f2s: bool  # feature -> semantics contrastive direction
    fem_s2f: bool  # semantics -> feature contrastive direction
    fem_balance: bool
    fem_fake_seen: bool  # FEM batches also hold generated seen features (see docs/METHOD.md)
    fem_lr: float = field(metadata=_rng(lo=0.0))
    fem_temperature: float = field(metadata=_rng(lo=1e-4))
    fem_hidden: int = field(metadata=_rng(lo=1))
    # where F embeds: attribute (F(x) in the class vectors' own space, scored against them),
    # embedding (F(x) in a fem_dim-wide space, scored against the class vectors' learned
    # projections P(a) into it) or contrastive (CE-GZSL's shape: a fem_dim-wide ReLU layer h,
    # the mFIM's level, and a fem_out_dim-wide head scored against P(a)): docs/METHOD.md, "FEM"
    fem_space: str = field(metadata=_rng(choices=("attribute", "embedding", "contrastive")))
    fem_dim: int = field(metadata=_rng(lo=1))  # width of the embedding space (embedding, contrastive)
    fem_out_dim: int = field(metadata=_rng(lo=1))  # width of the scored head (fem_space: contrastive)
    fem_ins_weight: float = field(metadata=_rng(lo=0.0))  # instance-level contrast among F's embeddings
    balance_weight: float = field(metadata=_rng(lo=0.0))
    fem_weight: float = field(metadata=_rng(lo=0.0))  # FEM loss on the generator
    # CE-GZSL's contrastive embedding (Han et al., CVPR 2021; docs/METHOD.md): an embedding net
    # x -> h -> z, trained in the critic step on real features (with D's Adam, unweighted
    # losses), whose two contrastive losses also reach G on its fakes
    embed: bool
    embed_dim: int = field(metadata=_rng(lo=1))  # width of the embedding h (its embedSize)
    embed_out_dim: int = field(metadata=_rng(lo=1))  # width of the L2-normalised projection z (outzSize)
    embed_hidden: int = field(metadata=_rng(lo=1))  # hidden units of the comparator F(h, a) (nhF)
    embed_ins_weight: float = field(metadata=_rng(lo=0.0))  # instance-level loss on G (ins_weight)
    embed_ins_temperature: float = field(metadata=_rng(lo=1e-4))  # its temperature (ins_temp)
    embed_cls_weight: float = field(metadata=_rng(lo=0.0))  # class-level loss on G (cls_weight)
    embed_cls_temperature: float = field(metadata=_rng(lo=1e-4))  # its temperature (cls_temp)
    # BSeGN's FEM built on that embedding (ours, docs/METHOD.md "The FEM on CE-GZSL's embedding"):
    # G's fakes of both domains join its batch and the comparator scores every class
    embed_unseen: bool
    embed_s2f: bool  # the semantics -> feature direction over the comparator's scores
    embed_balance_weight: float = field(metadata=_rng(lo=0.0))  # balance loss over those scores
    checkpoint_every: int = field(metadata=_rng(lo=0))  # epochs between checkpoints; 0 = none


@dataclass(frozen=True)
class GenerateConfig:
    syn_num: int = field(metadata=_rng(lo=1))  # features per unseen class


@dataclass(frozen=True)
class ClassifyConfig:
    epochs: int = field(metadata=_rng(lo=1))
    batch_size: int = field(metadata=_rng(lo=1))
    lr: float = field(metadata=_rng(lo=0.0))
    beta1: float = field(metadata=_rng(lo=0.0, hi=0.999))
    # mFIM: the levels concatenated into the classifier's input; [visual] = plain features
    mfim_levels: list[str]
    mfim_per_sample: bool  # L2-normalise every level of every feature before scaling
    # visual_norm: each level scaled to the visual level's mean norm; none: concatenated as they
    # come (TF-VAEGAN's feature transformation)
    mfim_scaling: str = field(metadata=_rng(choices=("visual_norm", "none")))
    # fixed: train the classifiers for `epochs`; val: the epoch counts best on the validation split
    select_epochs: str = field(metadata=_rng(choices=("fixed", "val")))
    calibration: bool  # also report calibrated stacking, its constant chosen on validation


# The mFIM levels a classifier can read (classify.mfim_levels; bsegn/mfim.py computes each):
# the one list of their names, each with the train switch that builds the module it reads
# (None: x itself, or the decoder R, which every model has). embedding: CE-GZSL's h.
MFIM_LEVELS: dict[str, str | None] = {"visual": None, "hidden": None, "semantic": None, "fem": "fem",
                                      "embedding": "embed"}
PER_DATASET_SECTIONS = {"train": TrainConfig, "generate": GenerateConfig, "classify": ClassifyConfig}


# --------------------------------------------------------------------------- parsing


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _check_type(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def _build(cls: type, raw: Any, where: str):
    """Build dataclass ``cls`` from mapping ``raw``, naming ``where`` in every error."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        paths = ", ".join(f"{where}.{k}" for k in unknown)
        raise ConfigError(f"{paths}: unknown key(s); known keys of {where}: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}"
        if f.name not in raw:
            if f.default is dataclasses.MISSING:  # only kind-specific keys (url, path, ...) may be absent
                raise ConfigError(f"{key}: missing; params.yaml sets every key of {where} "
                                  "(it is the one place defaults live; see the shipped params.yaml)")
            continue
        value = _check_type(raw[f.name], hints[f.name], key)
        if isinstance(value, float) and value != value:
            raise ConfigError(f"{key}: must be a number, got NaN")
        meta = f.metadata
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise ConfigError(f"{key}: expected one of {list(meta['choices'])}, got {value!r}")
        if meta.get("lo") is not None and value < meta["lo"]:
            raise ConfigError(f"{key}: must be >= {meta['lo']}, got {value!r}")
        if meta.get("hi") is not None and value > meta["hi"]:
            raise ConfigError(f"{key}: must be <= {meta['hi']}, got {value!r}")
        kwargs[f.name] = value
    return cls(**kwargs)


METHODS_FILE = "methods.yaml"
METHODS = ("f-clswgan", "f-vaegan", "tf-vaegan", "ce-gzsl", "bsegn")  # its methods, in the line's order


def _read_yaml(path: Path, what: str) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return raw


SECTIONS = ("base", "download", "prepare", "train", "generate", "classify")  # params.yaml's top level


def load_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml, with the methods of the ``methods.yaml`` beside it under ``"methods"``
    (so one dict holds every layer, and ``apply_overrides`` reaches both files)."""
    path = Path(path)
    raw = _read_yaml(path, "parameters")
    if "methods" in raw:
        raise ConfigError(f"{path}: section 'methods' belongs in {METHODS_FILE}, beside params.yaml")
    for name in raw:
        if name not in SECTIONS:
            near = difflib.get_close_matches(str(name), SECTIONS, n=1)
            raise ConfigError(f"{path}: unknown section '{name}'" + (f" (did you mean '{near[0]}'?)" if near else "")
                              + f"; the sections are {', '.join(SECTIONS)}")
    raw["methods"] = _read_yaml(path.parent / METHODS_FILE, "methods")
    return raw


def parse_set(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with a YAML value, as ``dvc exp run -S`` takes it."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. 'classify.{{ds}}.select_epochs=val'")
    return key, yaml.safe_load(value)


def apply_overrides(params: dict, sets: dict[str, Any]) -> dict:
    """A copy of ``params`` with dotted-key ``sets`` applied, as ``dvc exp run -S key=value``
    does (``{"train.SYN.fem": False}``); missing blocks are created."""
    params = copy.deepcopy(params)
    for key, value in sets.items():
        node = params
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[leaf] = value
    return params


def _section(params: dict, name: str) -> Any:
    if name not in params:
        raise ConfigError(f"params.yaml: section '{name}' is missing")
    return params[name]


def base_config(params: dict) -> BaseConfig:
    cfg = _build(BaseConfig, _section(params, "base"), "base")
    method_name(params)  # one of methods.yaml's
    if not cfg.datasets:
        raise ConfigError("base.datasets: must list at least one dataset")
    if not cfg.seeds:
        raise ConfigError("base.seeds: must list at least one seed")
    repeated = sorted({s for s in cfg.seeds if cfg.seeds.count(s) > 1})
    if repeated:  # the same seed twice is the same run twice, reported as if independent
        raise ConfigError(f"base.seeds: seed(s) {repeated} listed more than once; list each seed once")
    sources = _section(params, "download").get("sources", {}) or {}
    for name in cfg.datasets:
        if name not in sources:
            raise ConfigError(
                f"base.datasets: unknown dataset '{name}'; datasets with a source in "
                f"download.sources: {sorted(sources)}"
            )
    return cfg


def download_config(params: dict) -> DownloadConfig:
    cfg = _build(DownloadConfig, _section(params, "download"), "download")
    for name, src in cfg.sources.items():
        where = f"download.sources.{name}"
        if src.kind == "url" and not src.url:
            raise ConfigError(f"{where}.url: required when kind is 'url'")
        if src.kind in ("archive", "folder") and not src.path:
            raise ConfigError(f"{where}.path: required when kind is '{src.kind}'")
        if src.kind == "synthetic" and (src.synthetic is None) == (src.realistic is None):
            raise ConfigError(f"{where}: kind 'synthetic' needs exactly one of 'synthetic' (the toy model, "
                              "as for SYN) or 'realistic' (real splits, as for SYN_CUB), with every key "
                              "of the shipped params.yaml")
        if src.kind != "synthetic" and (src.synthetic or src.realistic):
            raise ConfigError(f"{where}: 'synthetic'/'realistic' only go with kind 'synthetic', got kind {src.kind!r}")
        if src.sha256 is not None and (
            len(src.sha256) != 64 or any(c not in "0123456789abcdef" for c in src.sha256.lower())
        ):
            raise ConfigError(f"{where}.sha256: expected 64 hex digits, got {src.sha256!r}")
    return cfg


def dataset_source(params: dict, dataset: str) -> SourceConfig:
    cfg = download_config(params)
    if dataset not in cfg.sources:
        raise ConfigError(
            f"unknown dataset '{dataset}': no entry download.sources.{dataset}; "
            f"known: {sorted(cfg.sources)}"
        )
    return cfg.sources[dataset]


def prepare_config(params: dict) -> PrepareConfig:
    return _build(PrepareConfig, _section(params, "prepare"), "prepare")


CONFIRMATION = "_CONF"  # SYN_<DS>_CONF: the confirmation draw of SYN_<DS>


def benchmark_of(dataset: str) -> str | None:
    """The real benchmark whose settings ``dataset`` takes: itself, ``DS`` for a realistic
    ``SYN_DS`` and its confirmation draw ``SYN_DS_CONF``, None for the embedded
    ``SYN``/``SYN_SHIFT`` (no published settings)."""
    name = dataset.removeprefix("SYN_").removesuffix(CONFIRMATION) if dataset.startswith("SYN_") else dataset
    return name if name in KNOWN_BENCHMARKS else None


def published_benchmark(dataset: str, published: Iterable[str], code: str) -> str:
    """:func:`benchmark_of` for a public code that publishes settings for ``published`` only:
    SYN_CUB -> CUB; any other dataset is refused with a message naming ``code``."""
    base = benchmark_of(dataset)
    if base not in published:
        raise ValueError(f"dataset {dataset!r}: {code} publishes settings for {sorted(published)} "
                         "(and their SYN_* realistic counterparts) only")
    return base


def _methods(params: dict) -> dict:
    methods = params.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise ConfigError(f"{METHODS_FILE}: no methods (expected a mapping method -> settings)")
    allowed = set(PER_DATASET_SECTIONS) | set(KNOWN_BENCHMARKS)
    for name, m in methods.items():
        if not isinstance(m, dict):
            raise ConfigError(f"{METHODS_FILE}: {name}: expected a mapping of sections and benchmarks")
        unknown = sorted(set(m) - allowed)
        if unknown:
            raise ConfigError(f"{METHODS_FILE}: {name}.{unknown[0]}: not a section or benchmark; "
                              f"expected {sorted(PER_DATASET_SECTIONS)} or {list(KNOWN_BENCHMARKS)}")
        for ds in KNOWN_BENCHMARKS:
            block = m.get(ds) or {}
            bad = sorted(set(block) - set(PER_DATASET_SECTIONS)) if isinstance(block, dict) else ["(not a mapping)"]
            if bad:
                raise ConfigError(f"{METHODS_FILE}: {name}.{ds}.{bad[0]}: expected sections {sorted(PER_DATASET_SECTIONS)}")
    return methods


def method_name(params: dict) -> str:
    """``base.method``, checked against the methods of methods.yaml."""
    base = _section(params, "base")
    method = base.get("method") if isinstance(base, dict) else None
    methods = _methods(params)
    if method not in methods:
        raise ConfigError(f"base.method: expected one of {list(methods)} (the methods of {METHODS_FILE}), "
                          f"got {method!r}")
    return method


def layers(params: dict, section: str, dataset: str) -> list[tuple[str, dict]]:
    """The override layers of ``section`` for ``dataset`` over ``common``, lowest first, each
    with the name errors give it (module docstring); absent layers are left out."""
    raw = _section(params, section)
    method = method_name(params)
    spec = params["methods"][method]
    bench = benchmark_of(dataset)
    out = [(f"{METHODS_FILE}: {method}.{section}", spec.get(section))]
    if bench is not None:
        out.append((f"{METHODS_FILE}: {method}.{bench}.{section}", (spec.get(bench) or {}).get(section)))
        if bench != dataset:
            out.append((f"{section}.{bench}", raw.get(bench)))
    if bench is not None and dataset.endswith(CONFIRMATION):  # it runs what its SYN_<DS> runs
        realistic = dataset.removesuffix(CONFIRMATION)
        out.append((f"{section}.{realistic}", raw.get(realistic)))
    out.append((f"{section}.{dataset}", raw.get(dataset)))
    for where, block in out:
        if block is not None and not isinstance(block, dict):
            raise ConfigError(f"{where}: expected a mapping of overrides, got {block!r}")
    return [(where, block) for where, block in out if block]


def stage_config(params: dict, section: str, dataset: str):
    """The ``section`` settings for ``dataset`` under ``base.method``: ``common`` with the
    layers of :func:`layers` applied in order."""
    cls = PER_DATASET_SECTIONS[section]
    raw = _section(params, section)
    if not isinstance(raw, dict) or "common" not in raw:
        raise ConfigError(f"{section}: expected a mapping with a 'common' block")
    known = (params.get("download") or {}).get("sources") or {}
    for key in raw:
        if key == "common":
            continue
        if key not in known:  # a typo such as train.CUBB would otherwise be silently ignored
            raise ConfigError(f"{section}.{key}: no dataset '{key}' in download.sources (known: {sorted(known)})")
        if not isinstance(raw[key], dict):
            raise ConfigError(f"{section}.{key}: expected a mapping of overrides")
    where = f"{section}.common"
    cfg = _levels_checked(_build(cls, raw["common"], where), where)
    # each layer is checked on top of the valid ones below it, so an error in the merged
    # block comes from that layer and is reported under its name, e.g. train.CUB.lr
    for where, block in layers(params, section, dataset):
        cfg = _levels_checked(_build(cls, {**dataclasses.asdict(cfg), **block}, where), where)
    if section == "train" and cfg.encoded_noise and not cfg.vae:
        raise ConfigError(f"{where}.encoded_noise: needs the encoder (vae: true), which makes the noise")
    if section == "train" and cfg.decoder_cycle_step and not cfg.cycle:
        raise ConfigError(f"{where}.decoder_cycle_step: needs the cycle term (cycle: true), "
                          "whose gradient it steps R with")
    if section == "train" and cfg.embed_balance_weight > 0 and not cfg.embed_unseen:
        raise ConfigError(f"{where}.embed_balance_weight: needs embed_unseen: true (the balance loss weighs "
                          "the seen against the unseen classes, and without G's unseen fakes the "
                          "embedding's batch holds seen classes only)")
    if section == "train" and cfg.vae_loss == "bce" and cfg.generator_output != "sigmoid":
        raise ConfigError(f"{where}.vae_loss: 'bce' needs generator_output: sigmoid "
                          f"(got {cfg.generator_output!r}, whose outputs are not in [0, 1])")
    return cfg


def settings_records(params: dict, dataset: str) -> dict[str, dict]:
    """What ``dataset``'s per-seed stages run with, one JSON-ready record per section of
    :data:`PER_DATASET_SECTIONS`: ``{"base": {method, device, tf32}, section: its settings
    resolved by stage_config}``.

    The settings stage writes them to ``runs/<DS>/settings/<section>.json`` and the per-seed
    stages depend on those files (dvc.yaml), not on whole params.yaml sections: a change to
    another dataset's block then leaves them as they were, and DVC does not rerun the stages."""
    base = base_config(params)
    head = {"method": base.method, "device": base.device, "tf32": base.tf32}
    return {section: {"base": head, section: dataclasses.asdict(stage_config(params, section, dataset))}
            for section in PER_DATASET_SECTIONS}


def section_from_record(record: dict, section: str, where: str):
    """The ``section`` config held by a record of :func:`settings_records`; errors name ``where``."""
    if not isinstance(record, dict) or section not in record:
        raise ConfigError(f"{where}: expected a mapping with a '{section}' block")
    return _build(PER_DATASET_SECTIONS[section], record[section], f"{where}: {section}")


def _levels_checked(cfg, where: str):
    """``cfg`` if its mFIM levels (classify) are known ones; checked per layer, so that a
    bad level in ``common`` is reported even where a method sets its own."""
    if isinstance(cfg, ClassifyConfig):
        for lvl in cfg.mfim_levels:
            if lvl not in MFIM_LEVELS:
                raise ConfigError(f"{where}.mfim_levels: unknown level {lvl!r}; known: {list(MFIM_LEVELS)}")
        if not cfg.mfim_levels:
            raise ConfigError(f"{where}.mfim_levels: must name at least one level")
    return cfg


def validate_all(params: dict) -> None:
    """Parse every section for every listed dataset, and check the rules that join sections;
    raises ConfigError on the first problem."""
    base = base_config(params)
    download_config(params)
    prep = prepare_config(params)
    for name in base.datasets:
        cfg = {section: stage_config(params, section, name) for section in PER_DATASET_SECTIONS}
        for level in cfg["classify"].mfim_levels:
            switch = MFIM_LEVELS[level]
            if switch and not getattr(cfg["train"], switch):
                raise ConfigError(f"classify.{name}.mfim_levels includes {level!r} but train.{name}.{switch} is "
                                  "false: the model has no such module; turn it on or drop the level")
        if cfg["train"].vae_loss == "bce" and prep.feature_scaling != "minmax":
            raise ConfigError(f"train.{name}.vae_loss is 'bce' but prepare.feature_scaling is not 'minmax': "
                              "the binary cross-entropy needs training features in [0, 1]")
        if cfg["train"].decoder_output == "l2norm" and not prep.normalize_attributes:
            raise ConfigError(f"train.{name}.decoder_output is 'l2norm' but prepare.normalize_attributes is false: "
                              "a unit-norm reconstruction cannot match class vectors of other norms")
