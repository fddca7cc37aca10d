"""BSeGN's FEM built on CE-GZSL's embedding (train.embed_unseen, embed_s2f, embed_balance_weight).

The embedding net and comparator of ``train.embed`` become BSeGN's feature-to-semantic module:
G's seen and unseen fakes join the real batch they learn from, every class is scored, the
semantics -> feature direction and the balance loss are added over the comparator's scores, and
G gets the class-level and balance terms on its seen and unseen fakes (docs/METHOD.md, "The FEM
on CE-GZSL's embedding").
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bsegn import losses, trainer
from bsegn.config import ConfigError, apply_overrides, stage_config
from bsegn.research import reference
from bsegn.runtime import seed_everything
from shipped import PARAMS
from test_cegzsl import CFG as CE_CFG, CPU, bench, params_of, same, splits  # noqa: F401 (fixtures)
from test_fast_trainer import assert_histories_close

CFG = dataclasses.replace(CE_CFG, embed_unseen=True, embed_s2f=True, embed_balance_weight=0.5)


def fresh(bench, **changes) -> trainer.TrainState:
    seed_everything(0)
    return trainer.setup(bench, dataclasses.replace(CFG, **changes), CPU)


# --------------------------------------------------------------------------- the s2f loss


def test_semantics_to_features_with_one_row_per_class_is_the_transposed_cross_entropy():
    """Each class present once: its softmax over the batch's rows, its own row the target."""
    torch.manual_seed(0)
    logits = torch.randn(5, 8, dtype=torch.float64)
    y = torch.tensor([6, 0, 3, 7, 1])  # classes 2, 4, 5 absent
    expected = torch.nn.functional.cross_entropy(logits[:, y].T, torch.arange(5))
    torch.testing.assert_close(losses.semantics_to_features(logits, y), expected)


def test_semantics_to_features_known_value():
    """Two rows of classes [0, 1] scored [[s, 0], [0, s]]: class 0's softmax over the two rows puts
    e^s / (e^s + 1) on its own row, and so does class 1's, so L = log(1 + e^-s); a third class,
    absent from the batch, is left out of the mean however it scores."""
    for s in (0.5, 2.0):
        logits = torch.tensor([[s, 0.0, 7.0], [0.0, s, -3.0]], dtype=torch.float64)
        got = losses.semantics_to_features(logits, torch.tensor([0, 1]))
        assert got.item() == pytest.approx(math.log1p(math.exp(-s)), rel=1e-12)


# --------------------------------------------------------------------------- config


def test_balance_without_unseen_fakes_is_refused_naming_the_key():
    params = apply_overrides(PARAMS, {"base.method": "bsegn", "train.SYN.embed": True,
                                      "train.SYN.embed_balance_weight": 1.0})
    with pytest.raises(ConfigError, match=r"train\.SYN\.embed_balance_weight: needs embed_unseen"):
        stage_config(params, "train", "SYN")
    ok = apply_overrides(params, {"train.SYN.embed_unseen": True})
    assert stage_config(ok, "train", "SYN").embed_balance_weight == 1.0


# --------------------------------------------------------------------------- wiring


def _spy(monkeypatch, fed: list) -> None:
    original = trainer.embed_terms

    def spy(state, h, h_labels, z, z_labels, for_generator=False):
        fed.append({"h": h.detach(), "h_labels": h_labels, "z_labels": z_labels, "for_generator": for_generator})
        return original(state, h, h_labels, z, z_labels, for_generator)

    monkeypatch.setattr(trainer, "embed_terms", spy)


def test_critic_step_trains_the_embedding_on_real_and_fake_of_both_domains(bench, monkeypatch):
    """The embedding's batch is [real seen, the critic's seen fakes, fresh unseen fakes] (3B
    rows), scored against every class; its loss adds s2f and the weighted balance term."""
    s = fresh(bench)
    fed = []
    _spy(monkeypatch, fed)
    stepped = {}
    original_step = trainer._step
    monkeypatch.setattr(trainer, "_step", lambda opt, loss: (stepped.update(loss=loss.detach()), original_step(opt, loss)))
    logs = trainer.critic_step(s)
    B = CFG.batch_size
    (call,) = fed
    assert len(call["h"]) == 3 * B and not call["for_generator"]
    labels = call["h_labels"]
    assert not s.unseen_mask[labels[:2 * B]].any() and s.unseen_mask[labels[2 * B:]].all()
    assert torch.equal(labels[:B], labels[B:2 * B])  # the fakes are of the real batch's classes
    assert {"embed_ins", "embed_cls", "embed_s2f", "embed_balance"} <= set(logs)
    expected = (-logs["wasserstein"] + s.gp_weight * logs["gp"] + logs["embed_ins"] + logs["embed_cls"]
                + logs["embed_s2f"] + CFG.embed_balance_weight * logs["embed_balance"])
    torch.testing.assert_close(stepped["loss"], expected.detach())


def test_class_level_loss_scores_every_class(bench):
    """With embed_unseen the class-level loss starts near log(n_classes), not log(n_seen)."""
    s = fresh(bench, embed_s2f=False, embed_balance_weight=0.0)
    logs = trainer.critic_step(s)
    n_all = len(bench.seen) + len(bench.unseen)
    assert logs["embed_cls"].item() == pytest.approx(math.log(n_all), rel=0.05)
    assert "embed_s2f" not in logs and "embed_balance" not in logs


def test_generator_gets_class_and_balance_terms_on_both_domains_but_no_s2f(bench, monkeypatch):
    s = fresh(bench)
    fed = []
    _spy(monkeypatch, fed)
    logs = trainer.generator_step(s)
    (call,) = fed
    B = CFG.batch_size
    assert call["for_generator"] and len(call["h"]) == 2 * B
    assert not s.unseen_mask[call["h_labels"][:B]].any() and s.unseen_mask[call["h_labels"][B:]].all()
    assert len(call["z_labels"]) == 3 * B  # [seen fakes, unseen fakes, real] projections
    assert {"g_embed_ins", "g_embed_cls", "g_embed_balance"} <= set(logs) and "g_embed_s2f" not in logs


def test_the_balance_weight_reaches_the_generator_and_only_it_moves(bench):
    a, b = fresh(bench), fresh(bench, embed_balance_weight=5.0)
    nets = {"D": a.D, "emb": a.model.embedding, "F": a.comparator}
    before = {k: params_of(m) for k, m in nets.items()}
    trainer.generator_step(a)
    trainer.generator_step(b)
    assert not same(params_of(a.model.generator), params_of(b.model.generator))
    assert all(same(params_of(m), before[k]) for k, m in nets.items())


def test_switched_off_the_ce_gzsl_embedding_is_unchanged(bench):
    """embed_unseen off: the same history as CE-GZSL's embedding, whatever embed_s2f says (it
    needs the every-class scores)."""
    seed_everything(0)
    _, h1 = trainer.train(bench, dataclasses.replace(CE_CFG, epochs=1), CPU)
    seed_everything(0)
    _, h2 = trainer.train(bench, dataclasses.replace(CE_CFG, epochs=1, embed_s2f=True), CPU)
    assert h1 == h2 and "embed_s2f" not in h1[0]


def test_fast_path_gives_the_reference_losses_on_cpu(bench):
    cfg = dataclasses.replace(CFG, epochs=2, cycle=True, cycle_unseen=False)
    seed_everything(0)
    fast_model, fast = trainer.train(bench, cfg, CPU)
    seed_everything(0)
    ref_model, ref = reference.reference_train(bench, cfg, CPU)
    assert_histories_close(fast, ref)
    assert {"embed_s2f", "embed_balance", "g_embed_balance"} <= set(fast[0])
    # the embedding's biases sit near zero, where Adam's normalised step turns float-order noise
    # in a tiny gradient into up to half a step (lr 1e-3): 4.7e-4 on one of 24 when written
    for net, atol in (("generator", 2e-4), ("embedding", 1e-3)):
        for x, y in zip(getattr(fast_model, net).state_dict().values(), getattr(ref_model, net).state_dict().values()):
            torch.testing.assert_close(x, y, rtol=1e-3, atol=atol)


def test_losses_fall_over_a_short_training(bench):
    """The embedding learns from chance: its class-level loss over every class falls, and the
    balance term (seen rows' mass on seen classes, unseen rows' on unseen) falls too."""
    seed_everything(0)
    _, history = trainer.train(bench, dataclasses.replace(CFG, epochs=12, lr=3e-3), CPU)
    first, last = history[0], history[-1]
    assert first["embed_cls"] == pytest.approx(math.log(len(bench.seen) + len(bench.unseen)), rel=0.02)
    assert last["embed_cls"] < 0.9 * first["embed_cls"]  # 2.19 -> 1.87 when written
    assert last["embed_balance"] < 0.85 * first["embed_balance"]  # 0.75 -> 0.58
    assert last["embed_s2f"] < 0.95 * first["embed_s2f"]  # 3.87 -> 3.57
