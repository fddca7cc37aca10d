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
import torch.nn.functional as F_

from bsegn import evaluate, losses, mfim, pipeline, trainer
from bsegn.config import MFIM_LEVELS, ConfigError
from bsegn.data import Benchmark, prepare
from bsegn.metrics import gzsl_scores
from bsegn.model import build_model, generate, run_generate
from bsegn.nets import cosine_logits
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


def test_cycle_loss_weighted_l1_is_the_decoders_and_the_cycle_terms_loss(bench, monkeypatch):
    """Planted: weighted_l1 reaching only one of R's step and G's cycle term."""
    s = fresh(bench, cycle_loss="weighted_l1", vae=False)
    xb, yb = s.x[:8], s.y[:8]
    monkeypatch.setattr(trainer.TrainState, "batch", lambda self: (xb, yb))
    with torch.no_grad():
        before = losses.weighted_l1_loss(s.model.decoder(xb)[0], s.att[yb])
    assert torch.allclose(trainer.decoder_step(s)["decoder"], before)
    calls = []
    original = losses.weighted_l1_loss
    monkeypatch.setattr(losses, "weighted_l1_loss", lambda p, t: calls.append(len(p)) or original(p, t))
    monkeypatch.setattr(losses, "reconstruction_loss", lambda p, t: pytest.fail("squared error in the cycle term"))
    trainer.generator_step(s)
    assert calls == [CFG.batch_size, CFG.batch_size]  # seen fakes, unseen fakes


def test_an_iteration_takes_decoder_steps_decoder_steps(bench, monkeypatch):
    """Planted: the R step taken once whatever decoder_steps says; the critic and generator
    still take their usual steps."""
    for n in (1, 3):
        s = fresh(bench, decoder_steps=n)
        counts = {"decoder": 0, "critic": 0, "generator": 0}
        for name in counts:
            original = getattr(trainer, f"{name}_step")
            monkeypatch.setattr(trainer, f"{name}_step",
                                lambda st, _o=original, _n=name: counts.__setitem__(_n, counts[_n] + 1) or _o(st))
        trainer.iteration(s)
        monkeypatch.undo()
        assert counts == {"decoder": n, "critic": CFG.critic_iters, "generator": 1}


def test_decoder_fakes_add_generated_unseen_features(bench):
    a, b = fresh(bench, decoder_fakes=False), fresh(bench, decoder_fakes=True)
    trainer.decoder_step(a)
    trainer.decoder_step(b)
    assert not same(params_of(a.model.decoder), params_of(b.model.decoder))


def test_encoded_noise_makes_the_critics_fakes_from_the_real_batch(bench):
    """encoded_noise: the critic's fakes are G(E(x, a)), so they follow the real batch x (the
    VAE reconstructions); from prior noise they do not depend on x at all."""
    for encoded in (False, True):
        s = fresh(bench, vae=True, encoded_noise=encoded)
        xb, yb = s.x[:8], s.y[:8]
        state = s.gen.get_state()
        f1 = s.critic_fake(xb, yb)
        s.gen.set_state(state)  # same noise draw, other real features of the same classes
        f2 = s.critic_fake(xb.flip(1), yb)
        assert torch.equal(f1, f2) != encoded, encoded
        assert not f1.requires_grad


def test_encoded_noise_puts_the_adversarial_term_on_the_vae_reconstructions(bench, monkeypatch):
    """With encoded_noise the generator step has no prior-noise seen fakes: the critic scores
    the reconstructions, so g_adv is the critic's mean score of G(E(x, a))."""
    s = fresh(bench, vae=True, encoded_noise=True, cycle=False, fem=False)
    xb, yb = s.x[:s.cfg.batch_size], s.y[:s.cfg.batch_size]
    monkeypatch.setattr(trainer.TrainState, "batch", lambda self: (xb, yb))
    state = s.gen.get_state()
    with torch.no_grad():
        expected = -s.D(s.critic_fake(xb, yb), s.att[yb]).mean()
    s.gen.set_state(state)
    logs = trainer.generator_step(s)
    assert torch.allclose(logs["g_adv"], expected, atol=1e-6)


def test_encoder_layers_2_is_tf_vaegans_encoder(bench):
    """Planted: the key ignored when E is built. Two layers: d_hidden, then 2 x d_noise
    before the heads; one layer: the heads read the d_hidden layer."""
    d_noise = bench.d_att  # noise_dim 0
    for layers, widths in ((1, [CFG.hidden]), (2, [CFG.hidden, 2 * d_noise])):
        E = fresh(bench, encoder_layers=layers).E
        linears = [m for m in E.body if isinstance(m, torch.nn.Linear)]
        assert [m.out_features for m in linears] == widths
        assert E.mu.in_features == E.logvar.in_features == widths[-1]
        mu, logvar = E(torch.as_tensor(bench.train_x[:4]), torch.as_tensor(bench.att[bench.train_y[:4]]))
        assert mu.shape == logvar.shape == (4, d_noise)


def test_noise_dim_sets_the_width_of_every_noise_the_nets_read(bench):
    """noise_dim other than the attribute dim (0): G, E and the feedback path take that width
    and a generator iteration with every branch on runs; generated features keep their shape.
    Planted: the width of E's heads left at the attribute dim (a shape error here)."""
    d_noise = bench.d_att + 3
    s = fresh(bench, noise_dim=d_noise, vae=True, encoded_noise=True, feedback=True, cycle=True, fem=True)
    assert s.model.generator.d_noise == d_noise
    assert s.E.mu.out_features == s.E.logvar.out_features == d_noise
    logs = trainer.generator_step(s)
    assert all(torch.isfinite(v) for v in logs.values())
    x, y = generate(s.model, s.att, s.unseen, per_class=2)
    assert x.shape == (2 * len(s.unseen), bench.d_feat) and len(y) == len(x)


def test_encoder_optimizer_own_gives_e_tf_vaegans_beta1_and_g_keeps_its_own(bench):
    """Planted: E's group left at G's beta1. E still steps with G (same loss, same step), so
    G's update does not change, E's does."""
    shared, own = fresh(bench), fresh(bench, encoder_optimizer="own")
    assert [g["betas"][0] for g in shared.opt_g.param_groups] == [CFG.beta1, CFG.beta1]
    assert [g["betas"][0] for g in own.opt_g.param_groups] == [CFG.beta1, 0.9]
    e_before = params_of(shared.E)
    for s in (shared, own):
        for _ in range(2):  # Adam's first step is the same whatever beta1 (bias correction)
            trainer.generator_step(s)
    assert same(params_of(shared.model.generator), params_of(own.model.generator))
    assert not same(params_of(shared.E), params_of(own.E))
    assert not same(params_of(own.E), e_before)


def test_decoder_cycle_step_steps_r_on_the_cycle_terms_gradient_alone(bench):
    """Without it the generator step leaves R as it is; with it R steps, on the gradient of
    this step's loss only. Planted: R not stepped; R's gradient of its last decoder step left
    in (the step then differs from one taken with R's gradient cleared first)."""
    off = fresh(bench)
    trainer.decoder_step(off)
    r_before = params_of(off.model.decoder)
    trainer.generator_step(off)
    assert same(params_of(off.model.decoder), r_before)
    on, cleared = fresh(bench, decoder_cycle_step=True), fresh(bench, decoder_cycle_step=True)
    for s in (on, cleared):
        trainer.decoder_step(s)  # leaves R's gradient set
    cleared.opt_r.zero_grad(set_to_none=True)
    r_before = params_of(on.model.decoder)
    trainer.generator_step(on)
    trainer.generator_step(cleared)
    assert not same(params_of(on.model.decoder), r_before)
    assert same(params_of(on.model.decoder), params_of(cleared.model.decoder))
    assert same(params_of(on.model.generator), params_of(cleared.model.generator))


def test_gp_adaptive_moves_the_penalty_weight_by_tf_vaegans_rule(bench):
    """x1.1 above a mean penalty of 1.05, /1.1 below 1.001, unchanged between; only with
    gp_adaptive does an iteration move it, and the loss log then reports it."""
    s = fresh(bench)
    for gp_mean, factor in ((2.0, 1.1), (0.5, 1 / 1.1), (1.02, 1.0)):
        before = s.gp_weight.clone()
        trainer.adapt_gp_weight(s, torch.tensor(gp_mean))
        assert torch.allclose(s.gp_weight, before * factor), gp_mean
    fixed, adaptive = fresh(bench), fresh(bench, gp_adaptive=True)
    assert "gp_weight" not in trainer.iteration(fixed) and float(fixed.gp_weight) == CFG.gp_weight
    logs = trainer.iteration(adaptive)
    assert float(adaptive.gp_weight) != CFG.gp_weight and torch.equal(logs["gp_weight"], adaptive.gp_weight)


def test_feedback_refines_every_fake_and_learns_with_the_generator(bench):
    """With the feedback module each fake is G's second pass, its hidden layer corrected by
    feedback_weight * F_b(R's hidden layer of the first pass): weight 0 gives G's plain
    output, weight 1 another. F_b moves with the generator step, not with the critic's."""
    s = fresh(bench, feedback=True, feedback_lr=1e-3)
    z, a = torch.randn(8, s.model.generator.d_noise), s.att[s.y[:8]]
    plain = s.model.generator(z, a)
    assert not torch.allclose(s.model.features(z, a), plain)
    off = fresh(bench, feedback=True, feedback_weight=0.0)
    assert torch.allclose(off.model.features(z, a), off.model.generator(z, a), atol=1e-6)
    assert torch.equal(off.model.generator(z, a), plain)  # F_b is built after G and R: same G
    torch.manual_seed(0)
    x, y = generate(s.model, s.att, s.unseen, 4)  # what the generate stage writes: refined fakes
    torch.manual_seed(0)
    assert torch.equal(x, s.model.features(torch.randn(len(y), s.model.generator.d_noise), s.att[y]))
    before = params_of(s.model.feedback)
    trainer.critic_step(s)
    assert same(params_of(s.model.feedback), before)
    trainer.generator_step(s)
    assert not same(params_of(s.model.feedback), before)


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


def test_mfim_computes_every_level_config_names(bench):
    """config.MFIM_LEVELS is the one list of level names: mfim gives each of them, and a level
    whose module the model lacks fails naming the train switch MFIM_LEVELS gives it."""
    x = torch.as_tensor(bench.test_seen_x[:3])
    every = build_model(dataclasses.replace(CFG, fem=True, embed=True), bench.d_att, bench.d_att, bench.d_feat)
    assert [len(v) for v in mfim.levels(every, x, list(MFIM_LEVELS))] == [3] * len(MFIM_LEVELS)
    bare = build_model(dataclasses.replace(CFG, fem=False, embed=False), bench.d_att, bench.d_att, bench.d_feat)
    for level, switch in MFIM_LEVELS.items():
        if switch is None:
            mfim.levels(bare, x, [level])  # every model has it
        else:
            with pytest.raises(ConfigError, match=rf"includes '{level}' .* train\.{switch}: false"):
                mfim.levels(bare, x, [level])
    with pytest.raises(ConfigError, match="unknown level 'pixels'; known: .*'embedding'"):
        mfim.levels(every, x, ["pixels"])


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


def test_mfim_scaling_none_concatenates_the_levels_as_they_come(splits, model):
    """Planted: mfim_scaling none still scaling the levels. TF-VAEGAN's classifier input: the
    classifier's features are the levels side by side, unscaled, for every feature set."""
    test = splits["test"]
    seed_everything(5)
    x, _ = generate(model, torch.as_tensor(test.att), torch.as_tensor(test.unseen), 10)
    names = ["visual", "hidden", "semantic"]
    feats = evaluate.mfim_features(test, model, x.numpy(), classify_cfg(mfim_levels=names, mfim_scaling="none"), CPU)
    for got, raw in ((feats.train, test.train_x), (feats.syn, x.numpy()), (feats.test_unseen, test.test_unseen_x)):
        assert torch.equal(got, torch.cat(mfim.levels(model, torch.as_tensor(raw), names), dim=1))
    scaled = evaluate.mfim_features(test, model, x.numpy(), classify_cfg(mfim_levels=names), CPU)
    assert not torch.allclose(scaled.train, feats.train)  # the default does scale them


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


@pytest.mark.parametrize("select_epochs, calibration", [("fixed", True), ("val", True), ("val", False)])
def test_stage_functions_chain_into_consistent_metrics(splits, select_epochs, calibration):
    """train -> generate -> train_val -> classify, as the stages run them: shapes, the
    validation choices and the headline metrics agree with the curves they come from."""
    test, val = splits["test"], splits["val"]
    run = pipeline.RunConfig(CFG, generate_cfg(syn_num=10),
                             classify_cfg(epochs=4, select_epochs=select_epochs, calibration=calibration), CPU)
    model, history = trainer.run_train(test, run, seed=0)
    assert [r["epoch"] for r in history] == list(range(1, CFG.epochs + 1))
    assert {"wasserstein", "decoder", "fem", "g_adv", "vae", "g_cls", "g_cycle", "g_fem"} <= set(history[0])
    x, y = run_generate(test, model, run, seed=0)
    assert x.shape == (10 * len(test.unseen), test.d_feat) and (np.unique(y, return_counts=True)[1] == 10).all()
    assert set(y) == set(test.unseen)
    validation = trainer.run_train_val(val, run, seed=0)
    assert validation.bench is val and set(validation.syn_y) == set(val.unseen)
    # fakes per held-out class scaled by the share of seen images the validation split trains on
    per_class = np.unique(validation.syn_y, return_counts=True)[1]
    share = len(val.train_y) / (len(val.train_y) + len(val.test_seen_y))
    assert share < 0.95 and (per_class == round(10 * share)).all() and len(validation.syn_x) == per_class.sum()
    with pytest.raises(ValueError, match="train_val"):
        evaluate.run_classify(test, model, x, y, run, 0, None)

    metrics, curve, predictions, selection = evaluate.run_classify(test, model, x, y, run, 0, validation)
    val_curve = selection["curve"]
    assert [r["epoch"] for r in val_curve] == [1, 2, 3, 4]
    if select_epochs == "val":
        assert selection["epochs"] == {"zsl": max(val_curve, key=lambda r: r["T1"])["epoch"],
                                       "gzsl": max(val_curve, key=lambda r: r["H_cs" if calibration else "H"])["epoch"]}
    else:
        assert selection["epochs"] == {"zsl": 4, "gzsl": 4}
    gzsl_row = next(r for r in val_curve if r["epoch"] == selection["epochs"]["gzsl"])
    assert selection["gamma"] == gzsl_row["gamma"] and selection["val_H_cs"] == gzsl_row["H_cs"]

    # the classifiers ran for the chosen epochs; the headline is that epoch's row of the curve
    assert (metrics["epochs_zsl"], metrics["epochs_gzsl"]) == (selection["epochs"]["zsl"], selection["epochs"]["gzsl"])
    assert [r["epoch"] for r in curve] == [1, 2, 3, 4]  # the whole budget, whatever was chosen
    last = next(r for r in curve if r["epoch"] == metrics["epochs_gzsl"])
    assert metrics["T1"] == next(r for r in curve if r["epoch"] == metrics["epochs_zsl"])["T1"]
    assert (metrics["U"], metrics["S"], metrics["H"]) == (last["U"], last["S"], last["H"])
    if calibration:
        assert metrics["calibrated"] == {"gamma": selection["gamma"], "U": last["U_cs"], "S": last["S_cs"],
                                         "H": last["H_cs"]}
    else:  # chosen epochs without calibration: no calibrated scores anywhere
        assert "calibrated" not in metrics and not any(k.endswith("_cs") for r in curve for k in r)
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
    # both classifiers run the whole budget; the headline T1 is the chosen epoch's
    assert curve[0].keys() == curve[1].keys() == {"epoch", "T1", "U", "S", "H"}
    assert metrics["T1"] == curve[0]["T1"] and metrics["H"] == curve[1]["H"]
    with pytest.raises(ValueError, match="classify.epochs"):
        evaluate.evaluate(test, model, x.numpy(), y.numpy(), classify_cfg(epochs=2), CPU, epochs={"zsl": 3, "gzsl": 2})
    assert all(0.0 <= r[k] <= 100.0 for r in curve for k in r if k != "epoch")


# --------------------------------------------------------------------------- protocol details


def test_validation_is_needed_for_calibration_or_chosen_epochs():
    for calibration, select, needed in [(True, "fixed", True), (False, "val", True), (True, "val", True),
                                        (False, "fixed", False)]:
        cfg = classify_cfg(calibration=calibration, select_epochs=select)
        assert evaluate.validation_needed(cfg) is needed, (calibration, select)


def test_searched_gamma_is_the_best_on_the_grid(splits, model):
    """At every validation epoch the calibrated H is the best over the gamma grid, which holds
    0 (no calibration): so it is never below the uncalibrated H."""
    val = splits["val"]
    seed_everything(4)
    x, y = generate(model, torch.as_tensor(val.att), torch.as_tensor(val.unseen), 10)
    _, curve, _ = evaluate.evaluate(val, model, x.numpy(), y.numpy(), classify_cfg(epochs=2), CPU, search_gamma=True)
    for row in curve:
        assert row["H_cs"] >= row["H"]
    # and the reported gamma reproduces the reported calibrated scores
    g = curve[-1]["gamma"]
    metrics, _, _ = evaluate.evaluate(val, model, x.numpy(), y.numpy(), classify_cfg(epochs=2), CPU, gamma=g)
    assert metrics["calibrated"]["H"] == curve[-1]["H_cs"]


def test_more_zsl_than_gzsl_epochs_and_per_sample_mfim(splits, model):
    test = splits["test"]
    seed_everything(5)
    x, y = generate(model, torch.as_tensor(test.att), torch.as_tensor(test.unseen), 10)
    cfg = classify_cfg(epochs=2, mfim_per_sample=True)
    metrics, curve, _ = evaluate.evaluate(test, model, x.numpy(), y.numpy(), cfg, CPU, epochs={"zsl": 2, "gzsl": 1})
    assert curve[0].keys() == curve[1].keys() == {"epoch", "T1", "U", "S", "H"}
    assert (metrics["epochs_zsl"], metrics["epochs_gzsl"]) == (2, 1) and metrics["T1"] == curve[1]["T1"]
    assert metrics["H"] == curve[0]["H"]
    feats = evaluate.mfim_features(test, model, x.numpy(), cfg, CPU)
    # per-sample: every level of every feature has the same norm, so each row's norm is the same
    norms = torch.cat([feats.train, feats.syn, feats.test_seen, feats.test_unseen]).norm(dim=1)
    assert torch.allclose(norms, norms[0].expand_as(norms), rtol=1e-4)
    assert feats.train.shape == (len(test.train_y), 2 * test.d_att)  # [semantic, fem]
    assert feats.test_seen.shape[0] == len(test.test_seen_y) and feats.test_unseen.shape[0] == len(test.test_unseen_y)


@pytest.mark.parametrize("changes", [{}, {"gp_adaptive": True}, {"feedback": True, "feedback_lr": 1e-3}],
                         ids=["plain", "gp_adaptive", "feedback"])
def test_a_checkpoint_resumes_to_the_uninterrupted_run(bench, tmp_path, capsys, changes):
    """train() with a checkpoint path writes one every ``checkpoint_every`` epochs (not after
    the last) and a second call resumes from it to the same weights and loss log (with
    gp_adaptive, the penalty weight it had reached is part of the state; with feedback, the
    feedback module and its optimiser)."""
    cfg = dataclasses.replace(CFG, epochs=4, checkpoint_every=2, **changes)
    path = tmp_path / "ckpt.pt"
    seed_everything(0)
    first, history = trainer.train(bench, cfg, CPU, checkpoint_path=path)
    assert path.exists()  # written after epoch 2, kept: the stage removes it once its outputs are saved
    seed_everything(0)
    resumed, resumed_history = trainer.train(bench, cfg, CPU, label="again", checkpoint_path=path)
    assert "again: resuming after epoch 2" in capsys.readouterr().err
    assert resumed_history == history and len(history) == 4
    for a, b in zip(first.generator.state_dict().values(), resumed.generator.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_other_code_is_not_resumed(bench, tmp_path, capsys, monkeypatch):
    """A checkpoint left by a killed run resumes only the code that wrote it: after a change to
    the package (here: its digest), the run starts over."""
    from bsegn import checkpoint
    cfg = dataclasses.replace(CFG, epochs=4, checkpoint_every=2)
    path = tmp_path / "ckpt.pt"
    seed_everything(0)
    trainer.train(bench, cfg, CPU, checkpoint_path=path)
    monkeypatch.setattr(checkpoint, "code_digest", lambda: "0" * 64)
    seed_everything(0)
    _, history = trainer.train(bench, cfg, CPU, label="changed", checkpoint_path=path)
    err = capsys.readouterr().err
    assert "changed: ignoring checkpoint" in err and "other params, data or code" in err
    assert "resuming" not in err and len(history) == 4


def test_classify_without_validation_when_nothing_needs_it(splits, model):
    test = splits["test"]
    run = pipeline.RunConfig(CFG, generate_cfg(syn_num=10), classify_cfg(epochs=2, calibration=False), CPU)
    x, y = run_generate(test, model, run, seed=0)
    metrics, curve, _, selection = evaluate.run_classify(test, model, x, y, run, 0, None)
    assert selection is None and (metrics["epochs_zsl"], metrics["epochs_gzsl"]) == (2, 2) and len(curve) == 2
    assert "calibrated" not in metrics


def _captured_losses(s, step, monkeypatch) -> tuple[dict, dict]:
    """Run ``step``; return its logs and the loss each optimiser was stepped with."""
    stepped = {}
    original = trainer._step
    names = {id(s.opt_g): "G", id(s.opt_d): "D", id(s.opt_r): "R", id(s.opt_f): "F"}

    def spy(opt, loss):
        stepped[names[id(opt)]] = loss.detach().clone()
        original(opt, loss)

    monkeypatch.setattr(trainer, "_step", spy)
    return step(s), stepped


def test_generator_loss_is_the_weighted_sum_of_its_logged_terms(bench, monkeypatch):
    """L_G = g_adv + vae_weight vae + cls_weight g_cls + cycle_weight g_cycle + fem_weight g_fem
    (docs/METHOD.md): signs and weights as documented."""
    s = fresh(bench, cycle_weight=0.3, fem_weight=0.7, cls_weight=0.2, vae_weight=0.5)
    for _ in range(30):  # a trained decoder: its cycle loss is then well below 1 (a product and a
        trainer.decoder_step(s)  # quotient by it differ)
    logs, stepped = _captured_losses(s, trainer.generator_step, monkeypatch)
    assert logs["g_cycle"] < 0.9
    cfg = s.cfg
    expected = (logs["g_adv"] + cfg.vae_weight * logs["vae"] + cfg.cls_weight * logs["g_cls"]
                + cfg.cycle_weight * logs["g_cycle"] + cfg.fem_weight * logs["g_fem"])
    assert torch.allclose(stepped["G"], expected)


def test_fem_losses_are_the_sums_the_method_states(bench, monkeypatch):
    """The FEM's loss is L_f2s + L_s2f + balance_weight L_bal; the generator's FEM term drops L_s2f."""
    s = fresh(bench, balance_weight=0.6)
    feats = torch.as_tensor(bench.train_x[:12])
    labels = torch.cat([torch.as_tensor(bench.train_y[:8]), s.unseen[:1].repeat(4)])
    with torch.no_grad():
        emb = s.model.fem(feats)
        logits = cosine_logits(emb, s.att, CFG.fem_temperature)
        f2s = losses.contrastive_f2s(logits, labels)
        s2f = losses.contrastive_s2f(emb, s.att, labels, CFG.fem_temperature)
        bal = losses.balance_loss(logits, s.unseen_mask, s.unseen_mask[labels])
        assert torch.allclose(trainer.fem_loss(s, feats, labels, for_generator=False), f2s + s2f + 0.6 * bal)
        assert torch.allclose(trainer.fem_loss(s, feats, labels, for_generator=True), f2s + 0.6 * bal)
    logs, stepped = _captured_losses(s, trainer.fem_step, monkeypatch)
    assert torch.equal(stepped["F"], logs["fem"])


def test_critic_and_decoder_step_on_their_logged_losses(bench, monkeypatch):
    s = fresh(bench, gp_weight=0.0)  # without the penalty, D's loss is minus the Wasserstein estimate
    logs, stepped = _captured_losses(s, trainer.critic_step, monkeypatch)
    assert torch.equal(stepped["D"], -logs["wasserstein"])
    logs, stepped = _captured_losses(s, trainer.decoder_step, monkeypatch)
    assert torch.equal(stepped["R"], logs["decoder"])


def test_cycle_loss_reconstructs_each_group_from_its_own_fakes(bench, monkeypatch):
    """R's reconstruction of the seen fakes is compared with the seen classes' vectors, and
    of the unseen fakes with the unseen ones: the groups are not swapped."""
    s = fresh(bench, vae=False)
    calls, outputs = [], []
    original_rec, G = losses.reconstruction_loss, s.model.generator
    monkeypatch.setattr(losses, "reconstruction_loss", lambda p, t: calls.append(p.detach().clone()) or original_rec(p, t))
    G.register_forward_hook(lambda module, args, out: outputs.append(out.detach().clone()))
    trainer.generator_step(s)
    groups = outputs[-1].split(CFG.batch_size)  # fake seen first, fake unseen last
    with torch.no_grad():
        assert torch.allclose(calls[0], s.model.decoder(groups[0])[0])
        assert torch.allclose(calls[1], s.model.decoder(groups[-1])[0])


def test_a_seen_only_cycle_term_scores_the_seen_fakes_alone(bench, monkeypatch):
    """``cycle_unseen: false`` (TF-VAEGAN's code): the cycle term is R's loss on the seen fakes
    against their own class vectors, at full weight, and without the FEM G draws no unseen
    class at all. Planted: the unseen fakes still scored; the term halved."""
    s = fresh(bench, vae=False, fem=False, cycle=True, cycle_unseen=False)
    monkeypatch.setattr(s, "unseen_batch", lambda: pytest.fail("an unseen batch drawn for a seen-only cycle term"))
    calls, outputs = [], []
    original_rec, G = losses.reconstruction_loss, s.model.generator
    monkeypatch.setattr(losses, "reconstruction_loss",
                        lambda p, t: calls.append((p.detach().clone(), t)) or original_rec(p, t))
    G.register_forward_hook(lambda module, args, out: outputs.append(out.detach().clone()))
    yb = []
    original_batch = s.batch
    monkeypatch.setattr(s, "batch", lambda: (lambda b: yb.append(b[1]) or b)(original_batch()))
    logs = trainer.generator_step(s)
    (pred, target), = calls
    with torch.no_grad():
        assert torch.allclose(pred, s.model.decoder(outputs[-1])[0])  # G's one pass: the seen fakes only
    assert torch.equal(target, s.att[yb[-1]])
    assert float(logs["g_cycle"].detach()) == pytest.approx(float(original_rec(pred, target)))


@pytest.mark.parametrize("cycle, fem", [(True, False), (False, True), (False, False)])
def test_generator_step_runs_with_each_switch_alone(bench, cycle, fem):
    logs = trainer.generator_step(fresh(bench, cycle=cycle, fem=fem))
    assert ("g_cycle" in logs) == cycle and ("g_fem" in logs) == fem


def test_optimisers_use_the_configured_rates_and_betas(bench):
    s = fresh(bench, lr=2e-3, decoder_lr=3e-3, fem_lr=4e-3, beta1=0.4)
    for opt, lr in ((s.opt_g, 2e-3), (s.opt_d, 2e-3), (s.opt_r, 3e-3), (s.opt_f, 4e-3)):
        group = opt.param_groups[0]
        assert group["lr"] == lr and group["betas"] == (0.4, 0.999)
    assert fresh(bench, cls_weight=0.0).clf is None


def test_seen_classifier_pretrains_with_its_own_rate_and_beta1(bench, monkeypatch):
    """f-CLSWGAN's seen classifier has its own Adam (train.seen_classifier_lr, _beta1), not G's."""
    made = []
    adam = trainer._adam
    monkeypatch.setattr(trainer, "_adam", lambda params, lr, beta1, fast=True: made.append((lr, beta1))
                        or adam(params, lr, beta1, fast))
    fresh(bench, lr=2e-3, beta1=0.4, seen_classifier_lr=5e-3, seen_classifier_beta1=0.3)
    assert made.count((5e-3, 0.3)) == 1 and made[0] == (5e-3, 0.3)  # the first Adam made: setup pretrains first
    made.clear()
    fresh(bench, cls_weight=0.0, seen_classifier_lr=5e-3, seen_classifier_beta1=0.3)
    assert (5e-3, 0.3) not in made  # no seen-class loss: no classifier to pretrain


def test_pretrained_seen_classifier_fits_the_seen_classes(bench):
    """The frozen seen-class classifier of f-CLSWGAN learns its training data (well above chance)."""
    s = fresh(bench, cls_pretrain_epochs=40)
    with torch.no_grad():
        acc = (s.clf(s.x).argmax(1) == s.seen_index[s.y]).float().mean()
    assert acc > 0.4 and not any(p.requires_grad for p in s.clf.parameters())  # chance: 1/6; 0.57 as shipped


def test_the_searched_gamma_is_the_best_of_its_grid():
    """gzsl_row's search returns the grid constant with the highest calibrated H."""
    from types import SimpleNamespace
    gen = torch.Generator().manual_seed(1)
    classes = np.array([0, 1, 2, 3])
    seen_cols = torch.tensor([True, True, False, False])
    bench = SimpleNamespace(test_seen_y=np.array([0, 1] * 20), test_unseen_y=np.array([2, 3] * 20))
    scores_seen = torch.randn(40, 4, generator=gen).log_softmax(1)
    scores_unseen = (torch.randn(40, 4, generator=gen) + torch.tensor([1.0, 1.0, 0.0, 0.0])).log_softmax(1)
    row = evaluate.gzsl_row(bench, classes, seen_cols, scores_seen, scores_unseen, None, True)
    h_at = {}
    for g in evaluate.gamma_grid(torch.cat([scores_seen, scores_unseen]), seen_cols):
        pred_s = evaluate.calibrated_predictions(scores_seen, seen_cols, g).numpy()
        pred_u = evaluate.calibrated_predictions(scores_unseen, seen_cols, g).numpy()
        h_at[float(g)] = gzsl_scores(bench.test_seen_y, classes[pred_s], bench.test_unseen_y, classes[pred_u])["H"]
    assert row["H_cs"] == max(h_at.values()) and h_at[row["gamma"]] == row["H_cs"]
    assert row["H_cs"] > h_at[0.0]  # the data are biased to seen classes: calibration helps


def test_seen_classifier_is_pretrained_with_f_clswgans_settings(bench, monkeypatch):
    """lr 1e-3 and beta1 0.5, as f-CLSWGAN pretrains its seen-class classifier."""
    calls = []
    original = trainer._adam
    monkeypatch.setattr(trainer, "_adam", lambda params, lr, beta1, fast=True: calls.append((lr, beta1))
                        or original(params, lr, beta1, fast))
    s = fresh(bench)
    trainer.pretrain_seen_classifier(s.x, s.seen_index[s.y], len(bench.seen), s.cfg)
    assert calls[-1] == (1e-3, 0.5)


def test_stage_functions_hand_their_checkpoint_path_to_training(splits, tmp_path):
    """run_train and run_train_val checkpoint where the stage says (a killed stage resumes)."""
    run = pipeline.RunConfig(dataclasses.replace(CFG, epochs=2, checkpoint_every=1), generate_cfg(syn_num=5),
                             classify_cfg(), CPU)
    trainer.run_train(splits["test"], run, 0, checkpoint_path=tmp_path / "train.pt")
    trainer.run_train_val(splits["val"], run, 0, checkpoint_path=tmp_path / "train_val.pt")
    assert (tmp_path / "train.pt").exists() and (tmp_path / "train_val.pt").exists()


def test_validation_syn_num_keeps_the_fake_to_real_ratio_of_the_test_split():
    """80 of 100 seen images trained on -> 80 % of the fakes; never fewer than one."""
    def bench(n_train, n_test_seen):
        z = np.zeros((0, 2), np.float32)
        return Benchmark(np.zeros((2, 2), np.float32), np.array([0]), np.array([1]), z,
                         np.zeros(n_train, np.int64), z, np.zeros(n_test_seen, np.int64), z, np.zeros(0, np.int64))
    assert pipeline.validation_syn_num(bench(80, 20), 300) == 240
    assert pipeline.validation_syn_num(bench(50, 50), 3) == 2
    assert pipeline.validation_syn_num(bench(1, 99), 10) == 1


# --------------------------------------------------------------------------- FEM embedding space


def test_fem_in_the_embedding_space_scores_features_against_learned_prototypes(bench):
    """``fem_space: embedding``: F(x) and the prototypes P(a) are fem_dim wide, the FEM's losses
    score against P(a) (not the raw class vectors), and the FEM step trains P with F.
    Planted: scoring against ``s.att`` in the embedding space; P left out of F's optimiser."""
    s = fresh(bench, fem_space="embedding", fem_dim=7, balance_weight=0.6)
    feats = torch.as_tensor(bench.train_x[:12])
    labels = torch.cat([torch.as_tensor(bench.train_y[:8]), s.unseen[:1].repeat(4)])
    with torch.no_grad():
        emb, protos = s.model.fem(feats), s.model.fem.prototypes(s.att)
        assert emb.shape == (12, 7) and protos.shape == (len(s.att), 7)
        logits = cosine_logits(emb, protos, CFG.fem_temperature)
        expected = (losses.contrastive_f2s(logits, labels)
                    + losses.contrastive_s2f(emb, protos, labels, CFG.fem_temperature)
                    + 0.6 * losses.balance_loss(logits, s.unseen_mask, s.unseen_mask[labels]))
        assert torch.allclose(trainer.fem_loss(s, feats, labels, for_generator=False), expected)
    before = params_of(s.model.fem.project)
    trainer.fem_step(s)
    assert not same(before, params_of(s.model.fem.project))


def test_fem_in_the_attribute_space_has_no_projection(bench):
    """The default space keeps F as it was: its prototypes are the class vectors themselves."""
    s = fresh(bench)
    assert s.model.fem.project is None and s.model.fem.prototypes(s.att) is s.att


def test_fem_embedding_level_and_a_saved_model_keep_the_embedding(bench, tmp_path):
    """The mFIM's ``fem`` level is F(x) in the fem_dim-wide space, and save/load keeps P."""
    seed_everything(1)
    model = trainer.train(bench, dataclasses.replace(CFG, fem_space="embedding", fem_dim=9), CPU)[0]
    x = torch.as_tensor(bench.test_seen_x[:4])
    (fem,) = mfim.levels(model, x, ["fem"])
    assert fem.shape == (4, 9)
    model.save(tmp_path / "m.pt")
    loaded = type(model).load(tmp_path / "m.pt", CPU)
    att = torch.as_tensor(bench.att)
    assert torch.equal(loaded.fem.prototypes(att), model.fem.prototypes(att))


def test_a_contrastive_fem_scores_its_head_and_gives_the_mfim_its_wide_layer(bench, tmp_path):
    """``fem_space: contrastive``: F(x) is a fem_out_dim-wide head on a fem_dim-wide ReLU layer
    h; the prototypes live in the head's space; the mFIM's ``fem`` level is h; save/load keeps
    them. Planted: the level reading the head; P mapping into fem_dim."""
    seed_everything(1)
    cfg = dataclasses.replace(CFG, fem=True, fem_space="contrastive", fem_dim=10, fem_out_dim=5)
    model = trainer.train(bench, cfg, CPU)[0]
    x = torch.as_tensor(bench.test_seen_x[:4])
    att = torch.as_tensor(bench.att)
    assert model.fem(x).shape == (4, 5) and model.fem.prototypes(att).shape == (len(att), 5)
    (level,) = mfim.levels(model, x, ["fem"])
    assert level.shape == (4, 10) and bool((level >= 0).all())  # the ReLU layer, not the head
    with torch.no_grad():
        assert torch.equal(model.fem.net(level), model.fem(x))
    model.save(tmp_path / "m.pt")
    loaded = type(model).load(tmp_path / "m.pt", CPU)
    assert torch.equal(loaded.fem.level(x), level) and torch.equal(loaded.fem.prototypes(att), model.fem.prototypes(att))


def test_the_fem_instance_contrast_adds_its_weighted_loss(bench):
    """``fem_ins_weight`` adds w * the supervised contrastive loss of the unit-norm embeddings
    (same-class rows positive) to both the FEM's and the generator's FEM objective; 0 adds
    nothing. Planted: the weight ignored; the raw (unnormalised) embeddings used."""
    feats = torch.as_tensor(bench.train_x[:12])
    s = fresh(bench, fem=True, fem_space="contrastive", fem_dim=10, fem_out_dim=5)
    labels = torch.cat([torch.as_tensor(bench.train_y[:8]), s.unseen[:1].repeat(4)])
    with torch.no_grad():
        plain = {g: trainer.fem_loss(s, feats, labels, for_generator=g) for g in (False, True)}
        s.cfg = dataclasses.replace(s.cfg, fem_ins_weight=0.7)
        ins = losses.supervised_contrastive(F_.normalize(s.model.fem(feats), dim=1), labels, s.cfg.fem_temperature)
        assert float(ins) > 0
        for g in (False, True):
            torch.testing.assert_close(trainer.fem_loss(s, feats, labels, for_generator=g), plain[g] + 0.7 * ins)
