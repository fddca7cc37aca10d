"""The BSeGN ablation grid: which component adds what.

Each variant is a set of ``-S`` overrides on params.yaml. Two ways to run the grid:

* through DVC (every run is a cached, shareable experiment)::

      python -m bsegn.ablation queue --dataset SYN     # prints and runs `dvc exp run --queue ...`
      dvc queue start -j 1 && dvc queue status
      python -m bsegn.ablation collect                 # dvc exp show --json -> reports/ablation.csv

* in one process, for a quick benchmark that prints the table (no DVC involved)::

      python -m bsegn.ablation run --datasets SYN SYN_SHIFT --seeds 0 1 2

  ``--split val`` screens the variants on the class-level validation split instead (train on
  its seen classes, score its held-out classes; no test image is looked at), which is where
  design choices are made; ``--gpus N`` spreads the workers over N GPUs; ``--set KEY=VALUE``
  applies one more override to every variant (``--set 'classify.{ds}.select_epochs="val"'``).
  ``choose SCREEN.csv`` applies the design rule to such a screen; ``protocols RUNS.csv ...
  --out NEW.csv`` writes the honest and test-selected rows of test runs, and ``--into
  reports/realistic.csv`` puts them in place of that record's rows of the same dataset and
  variant; ``record RUNS.csv --to reports/realistic_runs.csv`` appends runs to a record,
  refusing a run it already holds.

Both write ``reports/ablation.csv``: one row per variant x dataset x seed, plus the
mean over seeds printed as a table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from io import StringIO
from pathlib import Path

import pandas as pd
import torch
import yaml

from . import config, data, download, evaluate, pipeline, trainer
from .io import save_text
from .report import PROTOCOL_COLUMNS, replace_rows, result_row
from .runtime import seed_everything

# variant -> {dotted params key: value}; keys are relative to the dataset's blocks
# every variant but "shipped" starts from the f-CLSWGAN baseline, whatever params.yaml ships:
# OFF sets every design switch a dataset block may ship (DESIGN_KEYS), so that a block's choice
# (CUB's VAE weight 0.3, say) never leaks into the variants measured on that dataset
OFF = {"train.{ds}.fem": False, "train.{ds}.cycle": False, "train.{ds}.vae": False,
       "train.{ds}.vae_weight": 1.0, "train.{ds}.vae_loss": "mse", "train.{ds}.encoded_noise": False,
       "train.{ds}.generator_output": "relu", "train.{ds}.gp_adaptive": False,
       "train.{ds}.decoder_fakes": False, "train.{ds}.decoder_steps": 1, "train.{ds}.feedback": False,
       "train.{ds}.cycle_loss": "mse", "train.{ds}.decoder_output": "linear",
       "train.{ds}.encoder_layers": 1, "train.{ds}.encoder_optimizer": "shared",
       "train.{ds}.decoder_cycle_step": False,
       "classify.{ds}.mfim_levels": ["visual"], "classify.{ds}.mfim_per_sample": False,
       "classify.{ds}.mfim_scaling": "visual_norm"}
DESIGN_KEYS = {tuple(k.split(".{ds}.")) for k in OFF}  # (section, key)
FULL = {**OFF, "train.{ds}.fem": True, "train.{ds}.cycle": True, "classify.{ds}.mfim_levels": ["semantic", "fem"]}
VHS = {"classify.{ds}.mfim_levels": ["visual", "hidden", "semantic"]}  # mFIM keeping the visual level
RAW = {"classify.{ds}.mfim_scaling": "none"}  # levels unscaled, as TF-VAEGAN's classifier reads them
CYCLE_VAE = {**OFF, "train.{ds}.cycle": True, "train.{ds}.vae": True}  # FEM off, cycle + f-VAEGAN encoder
W03 = {**CYCLE_VAE, "train.{ds}.vae_weight": 0.3}  # round 6's SYN_CUB / CUB design
W03_ENC_FB = {**W03, "train.{ds}.encoded_noise": True, "train.{ds}.feedback": True}  # CUB's round 8 design
# R trained as TF-VAEGAN's code trains it: a step per critic step, unit-norm output (round 10)
TFV_DECODER = {"train.{ds}.decoder_steps": 5, "train.{ds}.decoder_output": "l2norm"}
R5_DN = {**W03_ENC_FB, **TFV_DECODER}  # what CUB shipped in round 10
BCE_W01 = {"train.{ds}.generator_output": "sigmoid", "train.{ds}.vae_loss": "bce", "train.{ds}.vae_weight": 0.1}
TFV = {**CYCLE_VAE, **BCE_W01, "train.{ds}.encoded_noise": True, "train.{ds}.gp_adaptive": True,
       "train.{ds}.cls_weight": 0.0}  # TF-VAEGAN's practices but its feedback module
TFV_FB_R5_DN = {**TFV, "train.{ds}.feedback": True, **TFV_DECODER}  # with its feedback module and R's training
VHS_VAE_R5_DN = {**CYCLE_VAE, **VHS, **TFV_DECODER}  # CUB's decoder training on AWA2's design (round 11)
VARIANTS: dict[str, dict[str, object]] = {
    "shipped": {},  # params.yaml as it is: the per-dataset design each dataset block ships
    "baseline": OFF,  # f-CLSWGAN: every BSeGN switch off, classifier on visual features
    "cycle": {**OFF, "train.{ds}.cycle": True},
    "fem_f2s": {**OFF, "train.{ds}.fem": True, "train.{ds}.fem_s2f": False, "train.{ds}.fem_balance": False},
    "fem_bidir": {**OFF, "train.{ds}.fem": True, "train.{ds}.fem_balance": False},
    "fem": {**OFF, "train.{ds}.fem": True},  # FEM trained and fed back to G; classifier still on visual
    "cycle+mfim": {**OFF, "train.{ds}.cycle": True, "classify.{ds}.mfim_levels": ["hidden", "semantic"]},
    "bsegn": FULL,  # FEM + cycle + mFIM over the cycle and FEM levels
    "bsegn-s2f": {**FULL, "train.{ds}.fem_s2f": False},
    "bsegn-balance": {**FULL, "train.{ds}.fem_balance": False},
    "bsegn-fake_seen": {**FULL, "train.{ds}.fem_fake_seen": False},
    "bsegn-cycle": {**FULL, "train.{ds}.cycle": False},
    "bsegn+visual": {**FULL, "classify.{ds}.mfim_levels": ["visual", "hidden", "semantic", "fem"]},
    # mFIM designs that keep the visual level, for the realistic benchmarks (2048-d features,
    # where dropping it lost; docs/METHOD.md, "Realistic benchmarks")
    "bsegn_vf": {**FULL, "classify.{ds}.mfim_levels": ["visual", "fem"]},
    "bsegn_vhs": {**FULL, **VHS},
    "bsegn_vae": {**FULL, "train.{ds}.vae": True, "classify.{ds}.mfim_levels": ["visual", "hidden", "semantic", "fem"]},
    # one generator component at a time under the [visual, hidden, semantic] classifier: what
    # bsegn_vhs's losses on SYN_CUB/SYN_AWA2 come from (round 3: docs/METHOD.md, "Results")
    "baseline_vhs": {**OFF, **VHS},
    "cycle_vhs": {**OFF, "train.{ds}.cycle": True, **VHS},
    "fem_vhs": {**OFF, "train.{ds}.fem": True, **VHS},
    # bsegn_vhs with a lighter FEM signal to the generator (0.01: the weight of f-CLSWGAN's own
    # classification loss, against 0.1), and with f-VAEGAN's encoder branch
    "bsegn_vhs_light": {**FULL, "train.{ds}.fem_weight": 0.01, **VHS},
    "bsegn_vhs_vae": {**FULL, "train.{ds}.vae": True, **VHS},
    # the same generators with the classifier on the visual features alone (where the cycle
    # branch's levels cost H: SYN_CUB, docs/METHOD.md)
    "bsegn_v": {**FULL, "classify.{ds}.mfim_levels": ["visual"]},
    "bsegn_v_light": {**FULL, "train.{ds}.fem_weight": 0.01, "classify.{ds}.mfim_levels": ["visual"]},
    "bsegn_v_vae": {**FULL, "train.{ds}.vae": True, "classify.{ds}.mfim_levels": ["visual"]},
    # the VAE designs without the FEM: what the FEM adds to them (round 3 shipped cycle_v_vae
    # on SYN_CUB, cycle_vhs_vae on SYN_SUN and SYN_AWA2, cycle_vhs on SYN_FLO; what each ships
    # now is CLAIMED in tests/test_ablation.py)
    "cycle_vhs_vae": {**CYCLE_VAE, **VHS},
    "cycle_v_vae": CYCLE_VAE,
    # SYN_CUB against TF-VAEGAN (docs/METHOD.md, "TF-VAEGAN"): what it does differently from the
    # shipped cycle_v_vae, one change each. Its adversarial term is weighted 10x its VAE loss
    # (gammaG 10), its decoder also learns from fakes, and its classifier reads
    # [visual, decoder hidden, decoder output]; per-sample normalisation tests whether the mFIM's
    # CUB loss is a scale mismatch between real and fake levels
    "cycle_v_vae_w01": {**CYCLE_VAE, "train.{ds}.vae_weight": 0.1},
    "cycle_v_vae_w03": W03,
    "cycle_vhs_vae_dfake": {**CYCLE_VAE, "train.{ds}.decoder_fakes": True, **VHS},
    "cycle_vhs_vae_ps": {**CYCLE_VAE, **VHS, "classify.{ds}.mfim_per_sample": True},
    # round 6 chose cycle_v_vae_w03 (shipped until round 8); two more TF-VAEGAN practices on it,
    # screened with the last of the lease: its decoder learning from fakes, and the decoder's
    # hidden level beside the visual one (TF-VAEGAN's classifier reads both)
    "cycle_v_vae_w03_dfake": {**W03, "train.{ds}.decoder_fakes": True},
    "cycle_vh_vae_w03": {**W03, "classify.{ds}.mfim_levels": ["visual", "hidden"]},
    # next screen (docs/METHOD.md, "Round 6"): TF-VAEGAN's generator practices on W03 -- the GAN
    # on encoder noise (--encoded_noise), no seen-class classification loss, both; and encoder
    # noise at round 3's VAE weight, since scoring the reconstructions changes that balance
    "cycle_v_vae_w03_enc": {**W03, "train.{ds}.encoded_noise": True},
    "cycle_v_vae_w03_nocls": {**W03, "train.{ds}.cls_weight": 0.0},
    "cycle_v_vae_w03_enc_nocls": {**W03, "train.{ds}.encoded_noise": True, "train.{ds}.cls_weight": 0.0},
    "cycle_v_vae_enc": {**CYCLE_VAE, "train.{ds}.encoded_noise": True},
    # and its gradient-penalty schedule (gp_adaptive), alone and with encoder noise
    "cycle_v_vae_w03_gpa": {**W03, "train.{ds}.gp_adaptive": True},
    "cycle_v_vae_w03_enc_gpa": {**W03, "train.{ds}.encoded_noise": True, "train.{ds}.gp_adaptive": True},
    # its VAE term: sigmoid output and binary cross-entropy, weighted 0.1 (its adversarial term
    # is weighted 10, gammaG); then every TF-VAEGAN practice above at once, without its feedback
    # module: if this reaches TF-VAEGAN's H, the feedback module is not what BSeGN lacks
    "cycle_v_vae_bce_w01": {**CYCLE_VAE, **BCE_W01},
    "cycle_v_vae_tfv": TFV,
    # its feedback module (CUB's a1 = a2 = 1, feed_lr 1e-5: the params.yaml defaults), on the
    # shipped design and on all of the above
    "cycle_v_vae_w03_fb": {**W03, "train.{ds}.feedback": True},
    "cycle_v_vae_tfv_fb": {**TFV, "train.{ds}.feedback": True},
    # and its classifier input, [visual, hidden, semantic] (its feature transformation), which
    # cost BSeGN 12 H on CUB: does it help once the generator is trained its way?
    "cycle_vhs_vae_tfv_fb": {**TFV, "train.{ds}.feedback": True, **VHS},
    # round 8 (docs/METHOD.md): the three best single changes of rounds 6-7 on validation
    # (encoder noise, feedback, decoder on fakes; each within 0.5 H of W03) two at a time with
    # encoder noise. The rule chose cycle_v_vae_w03_enc_fb; its claim raised the honest H by 1.2
    # (test-selected -0.5), so SYN_CUB and CUB ship it
    "cycle_v_vae_w03_enc_fb": W03_ENC_FB,
    "cycle_v_vae_w03_enc_dfake": {**W03, "train.{ds}.encoded_noise": True, "train.{ds}.decoder_fakes": True},
    # round 9 (docs/METHOD.md): TF-VAEGAN's classifier reads [visual, hidden, semantic]
    # unscaled, where the mFIM scales every level to the visual norm (a 312-d semantic level then
    # weighs as much as the 2048-d features). On CUB's shipped generator, scaled and raw, and with
    # the hidden level alone; then raw on the designs SUN, AWA2 (cycle_vhs_vae) and FLO
    # (cycle_vhs) ship scaled. Unscaled recovered 9.5 of the levels' CUB loss; the CUB winner
    # (_vh_..._raw) lost its claim; SUN's and FLO's raw designs won validation, and round 10
    # claimed them: SUN's won (SYN_SUN and SUN ship it), FLO's lost
    "cycle_vhs_vae_w03_enc_fb": {**W03_ENC_FB, **VHS},
    "cycle_vhs_vae_w03_enc_fb_raw": {**W03_ENC_FB, **VHS, **RAW},
    "cycle_vh_vae_w03_enc_fb_raw": {**W03_ENC_FB, "classify.{ds}.mfim_levels": ["visual", "hidden"], **RAW},
    # and with its decoder also trained on fakes, as TF-VAEGAN's is: its whole classifier input
    "cycle_vhs_vae_w03_enc_fb_dfake_raw": {**W03_ENC_FB, "train.{ds}.decoder_fakes": True, **VHS, **RAW},
    # TF-VAEGAN's decoder loss (its WeightedL1) for R and the cycle term, on CUB's shipped design
    "cycle_v_vae_w03_enc_fb_wl1": {**W03_ENC_FB, "train.{ds}.cycle_loss": "weighted_l1"},
    "cycle_vhs_vae_raw": {**CYCLE_VAE, **VHS, **RAW},
    "cycle_vhs_raw": {**OFF, "train.{ds}.cycle": True, **VHS, **RAW},
    # round 10 (round 9's probe): TF-VAEGAN's SYN_CUB H still rises after 120 passes of data,
    # where BSeGN trains 56 epochs; 112 epochs did not help round 3's design (session 15), but
    # the design shipped since generates differently (encoder noise, feedback). And all of
    # TF-VAEGAN's practices (round 7: 49.9 at 56 epochs) trained as long as its code: its own
    # curve is at 48-52 after 50-60 passes, so round 7 may have judged it early. Longer training
    # cost the shipped design 2.7 (112) and 10.6 (224); TF-VAEGAN's practices gained 5.9 at 224
    "cycle_v_vae_w03_enc_fb_e112": {**W03_ENC_FB, "train.{ds}.epochs": 112},
    "cycle_v_vae_w03_enc_fb_e224": {**W03_ENC_FB, "train.{ds}.epochs": 224},
    "cycle_v_vae_tfv_fb_e224": {**TFV, "train.{ds}.feedback": True, "train.{ds}.epochs": 224},
    # TF-VAEGAN's decoder takes a step inside every critic iteration: 5 R steps per generator
    # step, where ours takes 1. A better-trained R changes what the cycle term and the feedback
    # module (R's hidden layer) tell the generator
    "cycle_v_vae_w03_enc_fb_r5": {**W03_ENC_FB, "train.{ds}.decoder_steps": 5},
    # and its decoder's output, scaled to unit norm like the class vectors (its AttDec), alone
    # and with its pace: R's whole training as TF-VAEGAN's code has it, but for the fakes.
    # The rule chose _r5_dn; its claim raised the honest H by 1.4, so SYN_CUB and CUB ship it
    "cycle_v_vae_w03_enc_fb_dn": {**W03_ENC_FB, "train.{ds}.decoder_output": "l2norm"},
    "cycle_v_vae_w03_enc_fb_r5_dn": R5_DN,
    # TF-VAEGAN's encoder on the design CUB ships since round 10: its second layer (hidden,
    # then 2 x noise dim), its own Adam (beta1 0.9, where E shares G's 0.5), both. Round 11:
    # the rule chose _eopt; its claim raised honest H by 0.3 (within a seed's spread), and
    # SYN_CUB and CUB shipped it until round 12
    "cycle_v_vae_w03_enc_fb_r5_dn_el2": {**R5_DN, "train.{ds}.encoder_layers": 2},
    "cycle_v_vae_w03_enc_fb_r5_dn_eopt": {**R5_DN, "train.{ds}.encoder_optimizer": "own"},
    "cycle_v_vae_w03_enc_fb_r5_dn_el2_eopt": {**R5_DN, "train.{ds}.encoder_layers": 2,
                                              "train.{ds}.encoder_optimizer": "own"},
    # and the last difference in R's training: TF-VAEGAN's R also steps with G on the fakes'
    # reconstruction (CUB, SUN, FLO; frozen on AWA). Round 11: within 0.1 of the shipped
    "cycle_v_vae_w03_enc_fb_r5_dn_dcs": {**R5_DN, "train.{ds}.decoder_cycle_step": True},
    # does CUB's decoder training carry over? On the designs SUN (unscaled), FLO and AWA2 ship.
    # FLO's won its claim (+4.6 honest H; FLO ships it), AWA2's lost its claim, SUN's lost on
    # validation (round 11)
    "cycle_vhs_vae_raw_r5_dn": {**VHS_VAE_R5_DN, **RAW},
    "cycle_vhs_r5_dn": {**OFF, "train.{ds}.cycle": True, **VHS, **TFV_DECODER},
    "cycle_vhs_vae_r5_dn": VHS_VAE_R5_DN,  # AWA2's
    # FLO's VAE collapse (U = 0, round 3): its first suspect, FLO's seen-class loss weight (0.1,
    # ten times every other dataset's), at the others' 0.01. Round 11: still U = 0, not the cause
    "cycle_vhs_vae_cls001": {**CYCLE_VAE, **VHS, "train.{ds}.cls_weight": 0.01},
    # its second suspect: FLO's noise is as wide as its 1024-d text embeddings (noise_dim 0 means
    # the attribute dim; CUB 312, SUN 102, AWA2 85). Encoded, so wide a z can carry the class
    # itself, G may learn to ignore the class vector, and prior noise then gives every class the
    # same features. Narrower noise on the design FLO ships, with the VAE (and without: _r5_dn)
    "cycle_vhs_vae_r5_dn_nz312": {**VHS_VAE_R5_DN, "train.{ds}.noise_dim": 312},
    "cycle_vhs_vae_r5_dn_nz128": {**VHS_VAE_R5_DN, "train.{ds}.noise_dim": 128},
    # and the VAE term lighter (CUB's weight): on FLO it outweighs G's adversarial term 30 to 1.
    # Round 12: at 1024-d noise it collapsed again, at 312-d and 128-d it trained (validation
    # 85.7, 85.8 against 85.5 without the VAE); _nz128's claim lost (honest 79.2 against 79.8)
    "cycle_vhs_vae_r5_dn_w03": {**VHS_VAE_R5_DN, "train.{ds}.vae_weight": 0.3},
    # round 10's two CUB leaders together: all of TF-VAEGAN's practices at 224 epochs, with its
    # decoder training. Round 11: validation 57.5, the best CUB row; its claim (finished in
    # round 12): honest 59.2, test-selected 63.1: 3.9 apart, past issue 8's bound of 3
    "cycle_v_vae_tfv_fb_r5_dn_e224": {**TFV_FB_R5_DN, "train.{ds}.epochs": 224},
    # round 12, around that leader: where its curve peaks, and round 11's encoder optimiser on
    # top of it. The rule chose _e168 (validation 58.4); its claim raised honest H by 5.1
    # (60.8) and test-selected by 6.7 (63.2), so SYN_CUB and CUB ship it
    "cycle_v_vae_tfv_fb_r5_dn_e112": {**TFV_FB_R5_DN, "train.{ds}.epochs": 112},
    "cycle_v_vae_tfv_fb_r5_dn_e168": {**TFV_FB_R5_DN, "train.{ds}.epochs": 168},
    "cycle_v_vae_tfv_fb_r5_dn_e336": {**TFV_FB_R5_DN, "train.{ds}.epochs": 336},
    "cycle_v_vae_tfv_fb_r5_dn_eopt_e224": {**TFV_FB_R5_DN, "train.{ds}.epochs": 224,
                                           "train.{ds}.encoder_optimizer": "own"},
}


def overrides(variant: str, dataset: str, extra: dict[str, object] | None = None) -> dict[str, object]:
    """The variant's ``-S`` overrides for ``dataset``, then ``extra`` (same ``{ds}`` keys) on top."""
    sets = {**VARIANTS[variant], **(extra or {})}
    return {k.format(ds=dataset): v for k, v in sets.items()}


def parse_set(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with a YAML value, as ``dvc exp run -S`` takes it."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. 'classify.{{ds}}.select_epochs=val'")
    return key, yaml.safe_load(value)


def load_variants(path: str) -> list[str]:
    """Add the variants of a YAML file ``{name: {"train.{ds}.fem": true, ...}}``; return their names."""
    extra = yaml.safe_load(Path(path).read_text()) or {}
    VARIANTS.update(extra)
    return list(extra)


# --------------------------------------------------------------------------- in-process


# params, variant, dataset, seed, prepared .npz, split, the variant's resolved overrides. The
# overrides travel with the job because spawned workers re-import this module: a variant that
# --variants-file added to VARIANTS in the parent does not exist in them.
Job = tuple[dict, str, str, int, str, str, dict]


def _run_one(job: Job) -> dict:
    """One variant x dataset x seed: the per-seed stages' own functions, in their order.

    ``split`` ``test``: the pipeline's run, scored on the test split. ``val``: the stage
    ``train_val`` alone and the validation-split choices (classifier epochs, calibration
    constant) that ``classify`` would make from it; the row holds what they score there.
    """
    params, variant, dataset, seed, prepared_path, split, sets = job
    run = pipeline.run_config(config.apply_overrides(params, sets), dataset)
    label = f"{variant} {dataset} {seed}"
    validation = None
    if split == "val" or evaluate.validation_needed(run.classify):
        validation = trainer.run_train_val(data.load_prepared(prepared_path, split="val"), run, seed,
                                            label=f"{label} train_val")
    if split == "val":
        seed_everything(seed)
        selection = evaluate.choose_on_validation(validation.bench, validation.model, validation.syn_x,
                                                  validation.syn_y, run.classify, run.device)
        return screening_row(variant, dataset, seed, selection)
    bench = data.load_prepared(prepared_path)
    model, _ = trainer.run_train(bench, run, seed, label=label)
    x, y = pipeline.run_generate(bench, model, run, seed)
    metrics, _, _, selection = evaluate.run_classify(bench, model, x, y, run, seed, validation)
    return experiment_row(variant, dataset, seed, metrics, selection)


def experiment_row(variant: str, dataset: str, seed: int, metrics: dict, selection: dict | None = None) -> dict:
    """One row of reports/ablation.csv from a run's metrics (runs/<DS>/seed<S>/metrics.json),
    with the validation split's choices and scores when the run made them."""
    row = {"variant": variant, "dataset": dataset, "seed": seed, "split": "test", **result_row(metrics)}
    if selection is not None:
        row.update({**_choices(selection), "val_T1": selection["val_T1"], "val_H": selection["val_H"],
                    "val_H_cs": selection["val_H_cs"]})
    return row


def _choices(selection: dict) -> dict:
    """What :func:`bsegn.evaluate.select_on_validation` chose: the constant and the epochs."""
    return {"gamma": selection["gamma"], "epochs_zsl": selection["epochs"]["zsl"],
            "epochs_gzsl": selection["epochs"]["gzsl"]}


def screening_row(variant: str, dataset: str, seed: int, selection: dict) -> dict:
    """One row of a validation-split screen: the scores at the epochs and calibration constant
    chosen there (:func:`bsegn.evaluate.select_on_validation`), the numbers a design is chosen by."""
    curve = {r["epoch"]: r for r in selection["curve"]}
    gzsl = curve[selection["epochs"]["gzsl"]]
    return {"variant": variant, "dataset": dataset, "seed": seed, "split": "val",
            "T1": curve[selection["epochs"]["zsl"]]["T1"], **{k: gzsl[k] for k in ("U", "S", "H")},
            **{k: gzsl[k] for k in ("U_cs", "S_cs", "H_cs")}, **_choices(selection)}


def _init_worker(threads: int | None, counter, n_gpus: int) -> None:
    """Worker set-up: its thread count, and its GPU (round robin over ``n_gpus``), chosen by
    ``CUDA_VISIBLE_DEVICES`` before the worker first touches CUDA. Where the parent already
    restricts ``CUDA_VISIBLE_DEVICES`` (``2,3``), the workers take turns over that list."""
    if threads:
        torch.set_num_threads(threads)
    if n_gpus > 0:
        with counter.get_lock():
            k = counter.value
            counter.value += 1
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        ids = visible[:n_gpus] if visible else [str(i) for i in range(n_gpus)]
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[k % len(ids)]


def run_grid(params: dict, datasets: list[str], seeds: list[int], variants: list[str], workers: int,
             on_row: Callable[[pd.DataFrame], None] | None = None, split: str = "test",
             extra: dict[str, object] | None = None, gpus: int = 0) -> pd.DataFrame:
    """Every variant x dataset x seed in worker processes; download and prepare as their stages do.

    ``split``: ``test`` (the pipeline's runs) or ``val`` (screen on the validation split,
    :func:`_run_one`). ``extra``: overrides applied to every variant. ``gpus``: spread the
    workers over this many GPUs (0: each worker uses ``base.device`` as it resolves).
    ``on_row`` gets the rows finished so far after each run, in job order, so a grid cut short
    (a GPU lease running out) still leaves what it measured."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    cfg = config.download_config(params)
    prep_cfg = config.prepare_config(params)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for ds in datasets:
            raw = Path(tmp) / "raw" / ds
            download.fetch_dataset(ds, cfg.sources[ds], raw, Path(cfg.cache_dir), cfg.timeout_s, cfg.retries)
            prepared = Path(tmp) / f"{ds}.npz"
            data.save_prepared(prepared, data.prepare(raw, prep_cfg))
            jobs += [(params, v, ds, s, str(prepared), split, overrides(v, ds, extra)) for v in variants for s in seeds]
        # one thread per worker process when several share the cores (float sums may then
        # differ from a stage's in the last bits); one worker keeps the stages' thread count
        threads = 1 if workers > 1 else None
        rows: list[dict | None] = [None] * len(jobs)
        # spawned, not forked, workers: a fork of a parent whose torch already ran its thread
        # pool can hang in the child, and CUDA cannot be used in a forked child at all
        ctx = multiprocessing.get_context("spawn")
        counter = ctx.Value("i", 0)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(threads, counter, gpus)) as pool:
            order = {pool.submit(_run_one, job): i for i, job in enumerate(jobs)}
            for done in as_completed(order):
                rows[order[done]] = done.result()
                if on_row is not None:
                    on_row(pd.DataFrame([r for r in rows if r is not None]))
    return pd.DataFrame(rows)


def protocol_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The two protocols of each test-split run, one row each (``reports/realistic.csv``):

    * ``honest``: the classifier epochs, and the calibrated-stacking constant when the run
      has one (``U_cs``/``S_cs``/``H_cs``), chosen on the validation split;
    * ``test_selected``: the best classifier epoch on the test set, uncalibrated (what most
      published code reports).
    """
    rows = []
    for r in df[df["split"] == "test"].to_dict("records") if "split" in df else df.to_dict("records"):
        cs = "H_cs" in r and pd.notna(r["H_cs"])
        honest = {"T1": r["T1"], **{k: r[f"{k}_cs" if cs else k] for k in ("U", "S", "H")}}
        selected = {k: r[f"{k}_test_selected"] for k in ("T1", "U", "S", "H")}
        for protocol, values in (("honest", honest), ("test_selected", selected)):
            rows.append({"dataset": r["dataset"], "variant": r["variant"], "seed": r["seed"], "protocol": protocol,
                         **values})
    return pd.DataFrame(rows, columns=PROTOCOL_COLUMNS)


RUN_KEY = ["variant", "dataset", "seed", "split"]  # one run of `run`: a row of its CSV


def record_text(record: str | None, new: pd.DataFrame, source: str) -> str:
    """The record CSV's text (``record``; None: none yet) with ``new``'s rows appended
    (``reports/realistic_runs.csv``, ``reports/realistic_screen.csv``). The recorded rows keep
    their bytes; ``new`` must have the record's columns in its order and no run
    (variant, dataset, seed, split) the record or ``new`` already has: a run measured twice
    would weigh twice in every mean taken over the record. ``source`` names ``new`` in errors."""
    missing = [k for k in RUN_KEY if k not in new.columns]
    if missing:
        raise ValueError(f"{source}: no column(s) {missing}; expected the CSV of `run`")
    header, rows = new.to_csv(index=False, float_format="%.4f").split("\n", 1)
    if record is None:  # a new record: new's header
        record = header + "\n"
    old = pd.read_csv(StringIO(record))
    if list(new.columns) != list(old.columns):
        raise ValueError(f"{source}: columns {list(new.columns)} differ from the record's {list(old.columns)}")
    keys = pd.concat([old[RUN_KEY], new[RUN_KEY]]).astype(str)
    twice = keys[keys.duplicated()]
    if len(twice):
        raise ValueError(f"{source}: run(s) already in the record (or twice in it): {twice.head(3).to_dict('records')}")
    return (record if record.endswith("\n") else record + "\n") + rows


def choose(screen: pd.DataFrame, exclude: list[str] | None = None) -> tuple[dict[str, str], pd.DataFrame]:
    """The design rule of a validation screen (``run --split val``): per dataset, the variant
    with the best mean validation H, calibrated (``H_cs``) where the rows have it. Returns
    ``({dataset: variant}, the means it was chosen from)``; ``exclude`` leaves variants out
    (the baseline, when choosing among BSeGN designs)."""
    if "split" in screen and (screen["split"] != "val").any():
        raise ValueError("choose: only validation-split rows (run --split val) may choose a design")
    rows = screen[~screen["variant"].isin(exclude or [])]
    if rows.empty:
        raise ValueError("choose: no rows left to choose from")
    key = "H_cs" if "H_cs" in rows and rows["H_cs"].notna().all() else "H"
    means = rows.groupby(["dataset", "variant"])[key].agg(["mean", "count"]).reset_index()
    best = means.sort_values(["dataset", "mean"], ascending=[True, False], kind="stable").groupby("dataset").head(1)
    return dict(zip(best["dataset"], best["variant"])), means


# --------------------------------------------------------------------------- through DVC


def experiment_name(variant: str, dataset: str) -> str:
    """The queued experiment's name, ``abl-<variant>-<dataset>`` (git allows the ``+``)."""
    return f"abl-{variant}-{dataset}"


def variant_of(name: str) -> str:
    """The variant an experiment name stands for: the longest known variant ``v`` with
    ``name == experiment_name(v, dataset)`` for some dataset (``bsegn-s2f`` before ``bsegn``);
    a name that is no ablation run stands for itself."""
    known = [v for v in VARIANTS if name.startswith(experiment_name(v, ""))]
    return max(known, key=len) if known else name


def queue_commands(dataset: str, seeds: list[int], variants: list[str]) -> list[list[str]]:
    cmds = []
    for v in variants:
        sets = {"base.datasets": [dataset], "base.seeds": seeds, **overrides(v, dataset)}
        cmd = ["dvc", "exp", "run", "--queue", "-n", experiment_name(v, dataset)]
        for k, val in sets.items():
            cmd += ["-S", f"{k}={json.dumps(val, separators=(',', ':'))}"]
        cmds.append(cmd)
    return cmds


def collect_experiments(exp_show_json: list) -> pd.DataFrame:
    """Rows (experiment name, params, per-dataset metrics) from ``dvc exp show --json``."""
    rows = []

    def visit(rev: dict) -> None:
        d = rev.get("data") or {}
        name = rev.get("name") or d.get("name") or d.get("rev", "")
        if len(name) == 40 and all(c in "0123456789abcdef" for c in name):
            name = name[:7]  # an unnamed commit: its short hash
        metrics = ((d.get("metrics") or {}).get("reports/metrics.json") or {}).get("data") or {}
        params = ((d.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        for ds, m in metrics.items():
            variant = variant_of(name)
            rows.append({"variant": variant, "dataset": ds, "seeds": len(params.get("base", {}).get("seeds", [])),
                         **{k: m.get(k) for k in ("T1", "U", "S", "H", "H_cs") if k in m}})
        for exp in rev.get("experiments") or []:
            for sub in exp.get("revs") or []:
                visit(sub)

    for rev in exp_show_json:
        visit(rev)
    return pd.DataFrame(rows)


def protocol_means(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean T1/U/S/H per dataset, variant and protocol of :func:`protocol_rows`' ``rows``: what
    ``reports/realistic.csv`` says. The honest H is the calibrated one where the runs have it,
    not the ``H`` column of :func:`table`."""
    return rows.groupby(["dataset", "variant", "protocol"])[["T1", "U", "S", "H"]].mean().round(2)


def table(df: pd.DataFrame) -> pd.DataFrame:
    order = {v: i for i, v in enumerate(VARIANTS)}
    cols = [c for c in ("T1", "U", "S", "H", "H_cs", "H_test_selected") if c in df]
    out = df.groupby(["dataset", "variant"])[cols].agg(["mean", "std"]).round(2)
    return out.sort_index(key=lambda idx: idx.map(lambda v: order.get(v, 99)) if idx.name == "variant" else idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the grid in-process and write reports/ablation.csv")
    r.add_argument("--datasets", nargs="+", default=["SYN", "SYN_SHIFT"])
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--variants", nargs="+", default=None, help=f"default: all of {list(VARIANTS)}")
    r.add_argument("--variants-file", help="YAML of extra variants {name: {dotted key: value}}")
    r.add_argument("--split", choices=["test", "val"], default="test",
                   help="val: screen on the validation split (train_val + its choices); test: the pipeline's runs")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an override for every variant, {ds} for the dataset (repeatable)")
    r.add_argument("--gpus", type=int, default=0, help="spread the workers over this many GPUs")
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--params", default="params.yaml")
    r.add_argument("--out", default="reports/ablation.csv")
    q = sub.add_parser("queue", help="queue the grid as DVC experiments")
    q.add_argument("--dataset", default="SYN")
    q.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    q.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    c = sub.add_parser("collect", help="dvc exp show --json -> reports/ablation.csv")
    c.add_argument("--out", default="reports/ablation.csv")
    p = sub.add_parser("protocols", help="runs' CSVs -> one row per protocol (honest, test_selected)")
    p.add_argument("csv", nargs="+", help="CSVs of `run` (test split), read as one")
    p.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW", help="variant names to report under")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="write the rows as a new CSV")
    where.add_argument("--into", help="replace this CSV's rows of the same (dataset, variant), in place "
                                      "(reports/realistic.csv, when a new design ships)")
    rc = sub.add_parser("record", help="append runs' CSVs to a record (reports/realistic_runs.csv ...)")
    rc.add_argument("csv", nargs="+", help="CSVs of `run`, appended in this order")
    rc.add_argument("--to", required=True, help="the record; created with the first CSV's header if absent")
    ch = sub.add_parser("choose", help="a validation screen's CSV -> the best variant per dataset")
    ch.add_argument("csv", help="the CSV of `run --split val`")
    ch.add_argument("--exclude", nargs="*", default=["baseline"], help="variants not to choose (default: baseline)")
    args = parser.parse_args()

    if args.cmd == "choose":
        screen = pd.read_csv(args.csv)
        if "split" in screen and (screen["split"] != "val").any():
            print(f"{args.csv}: {int((screen['split'] != 'val').sum())} test-split row(s) left out: "
                  "a design is chosen on validation rows only")
            screen = screen[screen["split"] == "val"]
        try:
            chosen, means = choose(screen, args.exclude)
        except ValueError as e:
            parser.error(str(e))
        print(means.round(2).to_string(index=False))
        print(json.dumps(chosen))
        return
    if args.cmd == "record":
        target = Path(args.to)
        text = target.read_text() if target.exists() else None
        try:
            for path in args.csv:
                text = record_text(text, pd.read_csv(path), path)
        except ValueError as e:
            parser.error(str(e))  # nothing written: the record is all or nothing
        except OSError as e:
            parser.error(f"{e.filename}: {e.strerror or e}")
        save_text(text, target)
        print(f"appended {', '.join(args.csv)} to {target}")
        return
    if args.cmd == "protocols":
        names = dict(t.split("=", 1) for t in args.rename)
        try:
            runs = pd.concat([pd.read_csv(c) for c in args.csv])
            record = pd.read_csv(args.into) if args.into else None
        except OSError as e:
            parser.error(f"{e.filename}: {e.strerror or e}")
        df = protocol_rows(runs.replace({"variant": names}))
        target, written = (args.out, df) if record is None else (args.into, replace_rows(record, df))
        save_text(written.to_csv(index=False, float_format="%.2f"), target)
        print(protocol_means(df).to_string())
        print(f"wrote {len(df)} row(s) into {target}")
        return

    if args.cmd == "run":
        names = load_variants(args.variants_file) if args.variants_file else []
        variants = args.variants or (names or list(VARIANTS))
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
        def partial(df: pd.DataFrame) -> None:
            save_text(df.to_csv(index=False, float_format="%.4f"), args.out)
            print(f"{len(df)} run(s) done, written to {args.out}", flush=True)

        try:
            extra = dict(parse_set(t) for t in args.set)
        except ValueError as e:
            parser.error(str(e))
        df = run_grid(config.load_params(args.params), args.datasets, args.seeds, variants, args.workers, partial,
                      split=args.split, extra=extra, gpus=args.gpus)
    elif args.cmd == "queue":
        for cmd in queue_commands(args.dataset, args.seeds, args.variants):
            print(" ".join(cmd))
            subprocess.run(cmd, check=True)
        print("queued; now run: dvc queue start -j 1, then python -m bsegn.ablation collect")
        return
    else:
        shown = subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True, text=True).stdout
        df = collect_experiments(json.loads(shown))
    save_text(df.to_csv(index=False, float_format="%.4f"), args.out)
    print(table(df).to_string())
    if "H_test_selected" in df and ("split" not in df or (df["split"] == "test").any()):
        print("by protocol (honest: calibrated where the runs are; as `protocols` writes them):")
        print(protocol_means(protocol_rows(df)).to_string())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
