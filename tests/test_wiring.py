"""Each loss term, FEM batch component and mFIM level is wired where docs/METHOD.md says.

These tests drive the real step functions (``bsegn.trainer``), the mFIM and the final
classifier's training sets, and look at what each term moves or what each step was fed;
they hold no copy of the formulas. Every test here was written against a planted one-line
bug (listed in its docstring) and fails with it.
"""

import dataclasses

import numpy as np
import pytest
import torch

from bsegn import evaluate, losses, mfim, pipeline, trainer
from bsegn.data import prepare
from bsegn.metrics import gzsl_scores
from bsegn.model import generate
from bsegn.runtime import seed_everything
from bsegn.synthetic import write_benchmark
from shipped import classify_cfg, generate_cfg, prepare_cfg, synthetic_cfg, train_cfg

CPU = torch.device("cpu")
TINY_SYN = synthetic_cfg(seed=6, n_seen=6, n_unseen=3, n_val=2, per_class=16, d_att=5, d_latent=3, d_feat=12)
# the shipped BSeGN (FEM, cycle, balance, fake seen in the FEM batch), small, with the VAE on too
CFG = train_cfg(epochs=1, hidden=16, fem_hidden=16, lr=1e-3, decoder_lr=1e-3, fem_lr=1e-3, vae=True,
                cls_pretrain_epochs=1, batch_size=8)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    write_benchmark(TINY_SYN, folder)
    return prepare(folder, prepare_cfg())["test"]


def fresh(bench, **changes) -> trainer.TrainState:
    """A new state from seed 0: the same weights and random stream every time."""
    seed_everything(0)
    return trainer.setup(bench, dataclasses.replace(CFG, **changes), CPU)


def params_of(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- generator loss


@pytest.mark.parametrize("weight", ["cycle_weight", "fem_weight", "cls_weight", "vae_weight"])
def test_every_weighted_term_reaches_the_generator_update(bench, weight):
    """Planted: the cycle term dropped from G's loss; the FEM term dropped. A term that is
    computed and logged but not added leaves G's update unchanged when its weight changes."""
    a, b = fresh(bench), fresh(bench, **{weight: 5 * getattr(CFG, weight)})
    logs = trainer.generator_step(a)
    trainer.generator_step(b)
    assert {"g_adv", "vae", "g_cls", "g_cycle", "g_fem"} <= set(logs)
    assert not same(params_of(a.model.generator), params_of(b.model.generator)), weight


def test_generator_fem_term_leaves_out_semantics_to_feature(bench):
    """Planted: the semantics-to-feature loss also given to the generator. Switching that
    direction off must not change G's update (it trains the FEM only)."""
    a, b = fresh(bench), fresh(bench, fem_s2f=False)
    la, lb = trainer.generator_step(a), trainer.generator_step(b)
    assert torch.equal(la["g_fem"], lb["g_fem"])
    assert same(params_of(a.model.generator), params_of(b.model.generator))


@pytest.mark.parametrize("part", ["fem_f2s", "fem_balance"])
def test_generator_fem_term_holds_f2s_and_balance(bench, part):
    a, b = fresh(bench), fresh(bench, **{part: False})
    la, lb = trainer.generator_step(a), trainer.generator_step(b)
    assert not torch.equal(la["g_fem"], lb["g_fem"]), part


def test_cycle_loss_covers_generated_seen_and_unseen_features(bench, monkeypatch):
    """The cycle term reconstructs the semantics of both the seen and the unseen fakes."""
    s = fresh(bench, vae=False)  # the VAE's reconstruction would also call the function
    targets = []
    original = losses.reconstruction_loss

    def spy(pred, target):
        targets.append(target.detach().clone())
        return original(pred, target)

    monkeypatch.setattr(losses, "reconstruction_loss", spy)
    trainer.generator_step(s)
    assert len(targets) == 2, "one reconstruction for the seen fakes, one for the unseen fakes"
    classes_of = [{int(torch.nonzero((s.att == row).all(1))[0]) for row in t} for t in targets]
    unseen = set(s.unseen.tolist())
    assert classes_of[0].isdisjoint(unseen) and classes_of[1] <= unseen


# --------------------------------------------------------------------------- FEM


def test_fem_batch_holds_real_seen_fake_unseen_and_fake_seen(bench, monkeypatch):
    """Planted: the FEM batch without the generated unseen features."""
    s = fresh(bench)
    seen_by_fem = {}
    original = trainer.fem_loss

    def spy(state, feats, labels, for_generator):
        if not for_generator:
            seen_by_fem.update(feats=feats.detach().clone(), labels=labels.clone())
        return original(state, feats, labels, for_generator)

    monkeypatch.setattr(trainer, "fem_loss", spy)
    trainer.fem_step(s)
    feats, labels = seen_by_fem["feats"], seen_by_fem["labels"]
    B = CFG.batch_size
    assert len(labels) == 3 * B  # real seen, generated unseen, generated seen
    real = (feats[:, None, :] == s.x[None, :, :]).all(2).any(1)  # (3B,) rows that are real features
    is_unseen = s.unseen_mask[labels]
    assert real[:B].all() and not is_unseen[:B].any(), "real seen features first"
    assert not real[B:].any(), "the rest generated"
    assert is_unseen[B:2 * B].all() and not is_unseen[2 * B:].any(), "then unseen fakes, then seen fakes"
    # without fem_fake_seen the generated seen features go
    s = fresh(bench, fem_fake_seen=False)
    trainer.fem_step(s)
    assert len(seen_by_fem["labels"]) == 2 * B


@pytest.mark.parametrize("part", ["fem_f2s", "fem_s2f", "fem_balance"])
def test_every_fem_term_reaches_the_fem_update(bench, part):
    """Planted: the balance term never added. Each switch changes the FEM step's loss and update."""
    a, b = fresh(bench), fresh(bench, **{part: False})
    la, lb = trainer.fem_step(a), trainer.fem_step(b)
    assert not torch.equal(la["fem"], lb["fem"]), part
    assert not same(params_of(a.model.fem), params_of(b.model.fem)), part


def test_balance_weight_scales_the_balance_term(bench):
    a, b = fresh(bench), fresh(bench, balance_weight=3.0)
    assert not torch.equal(trainer.fem_step(a)["fem"], trainer.fem_step(b)["fem"])


# --------------------------------------------------------------------------- critic and decoder


def test_gradient_penalty_reaches_the_critic_update(bench):
    a, b = fresh(bench), fresh(bench, gp_weight=0.0)
    trainer.critic_step(a)
    trainer.critic_step(b)
    assert not same(params_of(a.D), params_of(b.D))


def test_decoder_learns_class_semantics_of_real_features(bench, monkeypatch):
    """Planted: the decoder trained on the wrong targets. Its loss on a fixed batch is the
    reconstruction error of that batch's class vectors, and the step lowers it."""
    s = fresh(bench, decoder_fakes=False)
    xb, yb = s.x[:8], s.y[:8]
    monkeypatch.setattr(trainer.TrainState, "batch", lambda self: (xb, yb))
    R = s.model.decoder
    with torch.no_grad():
        before = ((R(xb)[0] - s.att[yb]) ** 2).sum(1).mean()
    reported = trainer.decoder_step(s)["decoder"]
    assert torch.allclose(reported, before)
    for _ in range(20):
        trainer.decoder_step(s)
    with torch.no_grad():
        assert ((R(xb)[0] - s.att[yb]) ** 2).sum(1).mean() < before


def test_decoder_fakes_add_generated_unseen_features(bench):
    a, b = fresh(bench, decoder_fakes=False), fresh(bench, decoder_fakes=True)
    trainer.decoder_step(a)
    trainer.decoder_step(b)
    assert not same(params_of(a.model.decoder), params_of(b.model.decoder))


# --------------------------------------------------------------------------- mFIM


@pytest.fixture(scope="module")
def model(bench):
    seed_everything(1)
    return trainer.train(bench, CFG, CPU)[0]


def test_each_mfim_level_is_the_view_it_names(bench, model):
    """Planted: the ``semantic`` level returning the hidden activations."""
    x = torch.as_tensor(bench.test_seen_x[:5])
    visual, hidden, semantic, fem = mfim.levels(model, x, ["visual", "hidden", "semantic", "fem"])
    a_hat, h = model.decoder(x)
    assert torch.equal(visual, x)
    assert torch.equal(hidden, h) and hidden.shape == (5, CFG.hidden)
    assert torch.equal(semantic, a_hat) and semantic.shape == (5, bench.d_att)
    assert torch.equal(fem, model.fem(x)) and fem.shape == (5, bench.d_att)


@pytest.mark.parametrize("per_sample", [False, True])
def test_mfim_scales_give_every_level_the_visual_mean_norm(bench, model, per_sample):
    """Planted: all mFIM scales set to 1."""
    names = ["visual", "hidden", "semantic", "fem"]
    x = torch.as_tensor(bench.train_x)
    scales = mfim.fit_scales(model, x, names, per_sample)
    out = mfim.integrate(model, x, names, scales, per_sample)
    widths = [lvl.shape[1] for lvl in mfim.levels(model, x, names)]
    blocks = out.split(widths, dim=1)
    target = x.norm(dim=1).mean()
    for name, block in zip(names, blocks):
        assert torch.isclose(block.norm(dim=1).mean(), target, rtol=1e-4), name
        if per_sample:  # every feature's level has the same norm
            assert torch.allclose(block.norm(dim=1), target.expand(len(x)), rtol=1e-4), name
    assert not np.allclose(scales, 1.0)


# --------------------------------------------------------------------------- final classifier


def test_classifiers_train_on_the_sets_the_protocol_names(bench, model, monkeypatch):
    """Planted: the GZSL classifier trained without the real seen features. ZSL: synthetic
    unseen only, over the unseen classes; GZSL: real seen + synthetic unseen, over all."""
    seed_everything(2)
    syn_x, syn_y = generate(model, torch.as_tensor(bench.att), torch.as_tensor(bench.unseen), 10)
    calls = []
    original = evaluate.fit_softmax

    def spy(x, y_idx, n_classes, cfg, on_epoch=None):
        calls.append((x.clone(), y_idx.clone(), n_classes))
        return original(x, y_idx, n_classes, cfg, on_epoch)

    monkeypatch.setattr(evaluate, "fit_softmax", spy)
    cfg = classify_cfg(epochs=1, mfim_levels=["visual"])  # visual only: features pass unchanged but scaled
    evaluate.evaluate(bench, model, syn_x.numpy(), syn_y.numpy(), cfg, CPU)
    (zx, zy, zn), (gx, gy, gn) = calls
    n_train, n_syn = len(bench.train_y), len(syn_y)
    assert zn == len(bench.unseen) and len(zx) == n_syn
    assert gn == len(bench.seen) + len(bench.unseen) and len(gx) == n_train + n_syn
    classes = np.union1d(bench.seen, bench.unseen)
    assert set(classes[gy[:n_train].numpy()]) == set(bench.seen) and (classes[gy[:n_train].numpy()] == bench.train_y).all()
    assert set(classes[gy[n_train:].numpy()]) == set(bench.unseen)
    assert torch.allclose(gx[n_train:], zx)  # the same synthetic features in both


# --------------------------------------------------------------------------- the stages' functions


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_splits")
    write_benchmark(TINY_SYN, folder)
    return prepare(folder, prepare_cfg())


@pytest.mark.parametrize("select_epochs", ["fixed", "val"])
def test_stage_functions_chain_into_consistent_metrics(splits, select_epochs):
    """train -> generate -> train_val -> classify, as the stages run them: shapes, the
    validation choices and the headline metrics agree with the curves they come from."""
    test, val = splits["test"], splits["val"]
    run = pipeline.RunConfig(CFG, generate_cfg(syn_num=10), classify_cfg(epochs=4, select_epochs=select_epochs), CPU)
    model, history = trainer.run_train(test, run, seed=0)
    assert [r["epoch"] for r in history] == list(range(1, CFG.epochs + 1))
    assert {"wasserstein", "decoder", "fem", "g_adv", "vae", "g_cls", "g_cycle", "g_fem"} <= set(history[0])
    x, y = pipeline.run_generate(test, model, run, seed=0)
    assert x.shape == (10 * len(test.unseen), test.d_feat) and (np.unique(y, return_counts=True)[1] == 10).all()
    assert set(y) == set(test.unseen)
    validation = trainer.run_train_val(val, run, seed=0)
    assert validation.bench is val and set(validation.syn_y) == set(val.unseen) and len(validation.syn_x) == 10 * len(val.unseen)
    with pytest.raises(ValueError, match="train_val"):
        evaluate.run_classify(test, model, x, y, run, 0, None)

    metrics, curve, predictions, selection = evaluate.run_classify(test, model, x, y, run, 0, validation)
    val_curve = selection["curve"]
    assert [r["epoch"] for r in val_curve] == [1, 2, 3, 4]
    if select_epochs == "val":
        assert selection["epochs"] == {"zsl": max(val_curve, key=lambda r: r["T1"])["epoch"],
                                       "gzsl": max(val_curve, key=lambda r: r["H"])["epoch"]}
    else:
        assert selection["epochs"] == {"zsl": 4, "gzsl": 4}
    gzsl_row = next(r for r in val_curve if r["epoch"] == selection["epochs"]["gzsl"])
    assert selection["gamma"] == gzsl_row["gamma"] and selection["val_H_cs"] == gzsl_row["H_cs"]

    # the classifiers ran for the chosen epochs; the headline is that epoch's row of the curve
    assert (metrics["epochs_zsl"], metrics["epochs_gzsl"]) == (selection["epochs"]["zsl"], selection["epochs"]["gzsl"])
    assert [r["epoch"] for r in curve] == list(range(1, max(selection["epochs"].values()) + 1))
    last = next(r for r in curve if r["epoch"] == metrics["epochs_gzsl"])
    assert metrics["T1"] == next(r for r in curve if r["epoch"] == metrics["epochs_zsl"])["T1"]
    assert (metrics["U"], metrics["S"], metrics["H"]) == (last["U"], last["S"], last["H"])
    assert metrics["calibrated"] == {"gamma": selection["gamma"], "U": last["U_cs"], "S": last["S_cs"], "H": last["H_cs"]}
    best = max(curve, key=lambda r: r["H"])
    assert metrics["test_selected"] == {"T1": max(r["T1"] for r in curve), "U": best["U"], "S": best["S"],
                                        "H": best["H"], "epoch_T1": max(curve, key=lambda r: r["T1"])["epoch"],
                                        "epoch_H": best["epoch"]}
    # the predictions are the headline classifier's: they give its U and S
    scores = gzsl_scores(predictions["test_seen_y"], predictions["test_seen_pred"],
                         predictions["test_unseen_y"], predictions["test_unseen_pred"])
    if select_epochs == "fixed":
        assert round(scores["U"], 4) == metrics["U"] and round(scores["S"], 4) == metrics["S"]
    assert set(predictions["test_unseen_pred"]) <= set(test.seen) | set(test.unseen)
    assert (predictions["seen"] == test.seen).all() and (predictions["unseen"] == test.unseen).all()
    # and the same seed gives the same numbers
    assert evaluate.run_classify(test, model, x, y, run, 0, validation)[0] == metrics


def test_evaluate_without_calibration_reports_none(splits, model):
    test = splits["test"]
    seed_everything(3)
    x, y = generate(model, torch.as_tensor(test.att), torch.as_tensor(test.unseen), 10)
    metrics, curve, _ = evaluate.evaluate(test, model, x.numpy(), y.numpy(), classify_cfg(epochs=2), CPU,
                                          epochs={"zsl": 1, "gzsl": 2})
    assert "calibrated" not in metrics and not any(k.endswith("_cs") for r in curve for k in r)
    assert curve[0].keys() == {"epoch", "T1", "U", "S", "H"} and curve[1].keys() == {"epoch", "U", "S", "H"}
    assert all(0.0 <= r[k] <= 100.0 for r in curve for k in r if k != "epoch")
