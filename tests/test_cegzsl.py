"""CE-GZSL's contrastive embedding (train.embed): its losses, networks, wiring and persistence.

CE-GZSL (Han et al., CVPR 2021) trains an embedding net x -> h -> z (z unit-norm) and a
comparator F(h, a) in the critic step on real features, with an instance-level supervised
contrastive loss over z and a class-level cross-entropy over F's scores against every seen
class; the generator gets both losses on its fakes, and the final classifier reads h.
"""

import copy
import dataclasses
import math

import pytest
import torch

from bsegn import checkpoint, evaluate, losses, mfim, trainer
from bsegn.research import reference
from bsegn.config import ConfigError, apply_overrides, validate_all
from bsegn.data import prepare
from bsegn.model import GenerativeModel, generate
from bsegn.nets import Comparator, ContrastiveEmbedding
from bsegn.runtime import seed_everything
from bsegn.synthetic import write_benchmark
from shipped import PARAMS, classify_cfg, prepare_cfg, synthetic_cfg, train_cfg
from test_fast_trainer import assert_histories_close

CPU = torch.device("cpu")
TINY_SYN = synthetic_cfg(seed=5, n_seen=6, n_unseen=3, n_val=2, per_class=16, d_att=5, d_latent=3, d_feat=12)
# the f-CLSWGAN generator with CE-GZSL's embedding, small; every other branch off
CFG = train_cfg(epochs=2, batch_size=16, hidden=16, lr=1e-3, cls_weight=0.0, cls_pretrain_epochs=1, fem=False,
                cycle=False, vae=False, feedback=False, encoded_noise=False, gp_adaptive=False,
                generator_output="relu", decoder_steps=1, decoder_fakes=False, decoder_cycle_step=False,
                embed=True, embed_dim=24, embed_out_dim=8, embed_hidden=16, embed_ins_weight=0.1,
                embed_cls_weight=0.1, embed_ins_temperature=0.1, embed_cls_temperature=0.1)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_cegzsl")
    write_benchmark(TINY_SYN, folder)
    return prepare(folder, prepare_cfg())


@pytest.fixture(scope="module")
def bench(splits):
    return splits["test"]


def fresh(bench, **changes) -> trainer.TrainState:
    seed_everything(0)
    return trainer.setup(bench, dataclasses.replace(CFG, **changes), CPU)


def params_of(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- losses


def test_instance_loss_known_value():
    """z = [e1, e1, e2], classes [0, 0, 1]: anchors 0 and 1 each have one positive at cosine 1
    and one negative at cosine 0, so L = -log(e^{1/t} / (e^{1/t} + 1)) = log(1 + e^{-1/t});
    anchor 2 has no positive and is left out of the mean."""
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    for t in (1.0, 0.5, 0.1):
        assert losses.supervised_contrastive(z, y, t).item() == pytest.approx(math.log1p(math.exp(-1 / t)), rel=1e-9)


def test_instance_loss_two_samples():
    """Two rows of one class: each is the other's only candidate, so the softmax is 1 and the
    loss 0 whatever their angle; of two classes: no anchor has a positive, the loss is 0 (not
    CE-GZSL's 0/0) and its gradient finite."""
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0]]), dim=1).requires_grad_(True)
    assert losses.supervised_contrastive(z, torch.tensor([4, 4]), 0.1).item() == pytest.approx(0.0, abs=1e-6)
    loss = losses.supervised_contrastive(z, torch.tensor([1, 2]), 0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(z.grad).all()


def _supcon_by_hand(z, y, t):
    total, anchors = 0.0, 0
    for i in range(len(z)):
        others = [j for j in range(len(z)) if j != i]
        pos = [j for j in others if y[j] == y[i]]
        if not pos:
            continue
        log_den = torch.logsumexp(torch.stack([z[i] @ z[j] / t for j in others]), 0)
        total += -sum(float(z[i] @ z[p] / t - log_den) for p in pos) / len(pos)
        anchors += 1
    return total / anchors


def test_instance_loss_is_the_supervised_contrastive_loss_anchor_by_anchor():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(9, 4), dim=1)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 1])  # class 3 has a single row
    assert losses.supervised_contrastive(z, y, 0.3).item() == pytest.approx(_supcon_by_hand(z, y, 0.3), rel=1e-5)


def test_separated_embeddings_score_lower_than_shuffled_ones():
    """Rows clustered by class (each class near its own axis) against the same rows with the
    labels shuffled; and comparator scores peaking at the true class against shuffled ones."""
    torch.manual_seed(1)
    y = torch.arange(4).repeat_interleave(5)
    z = torch.nn.functional.normalize(torch.eye(4)[y] + 0.1 * torch.randn(20, 4), dim=1)
    shuffled = y[torch.randperm(20)]
    assert losses.supervised_contrastive(z, y, 0.1) < 0.5 * losses.supervised_contrastive(z, shuffled, 0.1)
    scores = 3.0 * torch.eye(4)[y] + 0.1 * torch.randn(20, 4)
    assert losses.class_contrastive(scores, y, 0.1) < 0.1 < losses.class_contrastive(scores, shuffled, 0.1)


def test_class_loss_known_value():
    """One embedding scored [2, 0] against two classes, its own the first: with temperature t
    the loss is log(1 + e^{-2/t}); the second class as its own: log(1 + e^{2/t})."""
    scores = torch.tensor([[2.0, 0.0]])
    assert losses.class_contrastive(scores, torch.tensor([0]), 1.0).item() == pytest.approx(math.log1p(math.exp(-2)))
    assert losses.class_contrastive(scores, torch.tensor([1]), 0.5).item() == pytest.approx(math.log1p(math.exp(4)))


# --------------------------------------------------------------------------- networks


def test_embedding_net_gives_nonnegative_h_and_unit_z():
    torch.manual_seed(0)
    net = ContrastiveEmbedding(12, 24, 8)
    h, z = net(torch.randn(5, 12))
    assert h.shape == (5, 24) and z.shape == (5, 8) and (h >= 0).all()
    assert torch.allclose(z.norm(dim=1), torch.ones(5))


def test_comparator_scores_every_pair_as_the_concatenated_forward():
    """The memory-saving split of the first layer gives F([h_i, a_c]) for every pair."""
    torch.manual_seed(0)
    F = Comparator(6, 3, 10)
    h, att = torch.randn(4, 6), torch.randn(5, 3)
    scores = F.scores(h, att)
    pairs = F(h.repeat_interleave(5, 0), att.repeat(4, 1)).reshape(4, 5)
    assert scores.shape == (4, 5)
    torch.testing.assert_close(scores, pairs)


# --------------------------------------------------------------------------- training


def test_switched_off_nothing_is_built_and_the_embed_keys_are_not_read(bench):
    off = fresh(bench, embed=False)
    assert off.model.embedding is None and off.comparator is None
    assert [id(p) for p in off.opt_d.param_groups[0]["params"]] == [id(p) for p in off.D.parameters()]
    seed_everything(3)
    _, h1 = trainer.train(bench, dataclasses.replace(CFG, embed=False, epochs=1), CPU)
    seed_everything(3)
    _, h2 = trainer.train(bench, dataclasses.replace(CFG, embed=False, epochs=1, embed_dim=7, embed_hidden=3,
                                                     embed_ins_weight=9.0, embed_cls_weight=9.0), CPU)
    assert h1 == h2 and not any(k.startswith(("embed", "g_embed")) for k in h1[0])


def test_critic_step_trains_the_embedding_and_comparator_on_real_features(bench, monkeypatch):
    """D, the embedding net and the comparator move in the critic step; the critic's loss is
    the WGAN-GP loss plus the two (unweighted) contrastive losses of the real batch."""
    s = fresh(bench)
    nets = {"G": s.model.generator, "D": s.D, "emb": s.model.embedding, "F": s.comparator}
    before = {k: params_of(m) for k, m in nets.items()}
    before_net = copy.deepcopy(s.model.embedding)
    fed = {}
    original = trainer.embed_terms

    def spy(state, h, h_labels, z, z_labels):
        fed.update(h=h.detach(), z_labels=z_labels)
        return original(state, h, h_labels, z, z_labels)

    monkeypatch.setattr(trainer, "embed_terms", spy)
    stepped = {}
    original_step = trainer._step
    monkeypatch.setattr(trainer, "_step", lambda opt, loss: (stepped.update(loss=loss.detach()), original_step(opt, loss)))
    logs = trainer.critic_step(s)
    assert {k for k, m in nets.items() if not same(params_of(m), before[k])} == {"D", "emb", "F"}
    with torch.no_grad():  # the embeddings it was fed are those of real training features, before the step
        h_real = before_net.hidden(s.x)
    assert len(fed["h"]) == CFG.batch_size and (fed["h"][:, None, :] == h_real[None]).all(2).any(1).all()
    assert not s.unseen_mask[fed["z_labels"]].any()
    expected = -logs["wasserstein"] + s.gp_weight * logs["gp"] + logs["embed_ins"] + logs["embed_cls"]
    torch.testing.assert_close(stepped["loss"], expected.detach())


def test_generator_step_moves_only_g_and_gets_both_weighted_terms(bench):
    s = fresh(bench)
    nets = {"G": s.model.generator, "D": s.D, "emb": s.model.embedding, "F": s.comparator}
    before = {k: params_of(m) for k, m in nets.items()}
    logs = trainer.generator_step(s)
    assert {"g_embed_ins", "g_embed_cls"} <= set(logs)
    assert {k for k, m in nets.items() if not same(params_of(m), before[k])} == {"G"}
    for weight in ("embed_ins_weight", "embed_cls_weight"):  # each term reaches G's update
        a, b = fresh(bench), fresh(bench, **{weight: 10 * getattr(CFG, weight)})
        trainer.generator_step(a)
        trainer.generator_step(b)
        assert not same(params_of(a.model.generator), params_of(b.model.generator)), weight


def test_embedding_losses_fall_over_a_short_training(bench):
    """The critic-step losses on real features: from chance (log 6 for the class-level loss
    over six seen classes) down. The generator's terms need not fall: the embedding they are
    measured in keeps moving away from the fakes."""
    seed_everything(0)
    _, history = trainer.train(bench, dataclasses.replace(CFG, epochs=6, lr=3e-3), CPU)
    first, last = history[0], history[-1]
    assert first["embed_cls"] == pytest.approx(math.log(len(bench.seen)), rel=0.02)
    assert last["embed_cls"] < 0.85 * first["embed_cls"]
    assert last["embed_ins"] < 0.7 * first["embed_ins"]


def test_fast_path_gives_the_reference_losses_on_cpu(bench):
    cfg = dataclasses.replace(CFG, epochs=2, fem=True, cycle=True, vae=True, cls_weight=0.01)
    seed_everything(0)
    fast_model, fast = trainer.train(bench, cfg, CPU)
    seed_everything(0)
    ref_model, ref = reference.reference_train(bench, cfg, CPU)
    assert_histories_close(fast, ref)
    assert {"embed_ins", "embed_cls", "g_embed_ins", "g_embed_cls"} <= set(fast[0])
    for net in ("generator", "embedding"):
        for a, b in zip(getattr(fast_model, net).state_dict().values(), getattr(ref_model, net).state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=2e-4)


# --------------------------------------------------------------------------- persistence


def test_save_and_load_round_trip_keeps_the_embedding(bench, tmp_path):
    seed_everything(1)
    model, _ = trainer.train(bench, dataclasses.replace(CFG, epochs=1), CPU)
    model.save(tmp_path / "model.pt")
    loaded = GenerativeModel.load(tmp_path / "model.pt", CPU)
    assert loaded.cfg == model.cfg and loaded.embedding is not None
    for a, b in zip(model.embedding.state_dict().values(), loaded.embedding.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.as_tensor(bench.test_seen_x[:4])
    assert torch.equal(model.embedding(x)[0], loaded.embedding(x)[0])
    assert not loaded.embedding.training


def test_a_checkpoint_resumes_to_the_uninterrupted_run(bench, tmp_path, capsys):
    cfg = dataclasses.replace(CFG, epochs=4, checkpoint_every=2)
    path = tmp_path / "ckpt.pt"
    seed_everything(0)
    first, history = trainer.train(bench, cfg, CPU, checkpoint_path=path)
    assert {"embedding", "comparator"} <= set(torch.load(path, weights_only=True))
    seed_everything(0)
    resumed, resumed_history = trainer.train(bench, cfg, CPU, label="again", checkpoint_path=path)
    assert "again: resuming after epoch 2" in capsys.readouterr().err
    assert resumed_history == history
    for net in ("generator", "embedding"):
        for a, b in zip(getattr(first, net).state_dict().values(), getattr(resumed, net).state_dict().values()):
            assert torch.equal(a, b)


def test_checkpoint_holds_the_comparator_and_its_adam_state(bench, tmp_path):
    """The comparator is not saved with the model (it only trains), so the checkpoint must carry it."""
    s = fresh(bench)
    trainer.iteration(s)
    checkpoint.save(tmp_path / "c.pt", s, [])
    t = fresh(bench)
    assert not same(params_of(t.comparator), params_of(s.comparator))
    checkpoint.restore(tmp_path / "c.pt", t, "t")
    assert same(params_of(t.comparator), params_of(s.comparator))
    assert same(params_of(t.model.embedding), params_of(s.model.embedding))
    trainer.iteration(s)
    trainer.iteration(t)  # the same next step: Adam's moments and the random stream came back too
    assert same(params_of(t.comparator), params_of(s.comparator))


# --------------------------------------------------------------------------- mFIM / classifier


def test_mfim_embedding_level_is_h_with_its_width(splits):
    test = splits["test"]
    seed_everything(2)
    model, _ = trainer.train(test, dataclasses.replace(CFG, epochs=1), CPU)
    x = torch.as_tensor(test.test_seen_x[:5])
    (level,) = mfim.levels(model, x, ["embedding"])
    assert level.shape == (5, CFG.embed_dim) and torch.equal(level, model.embedding(x)[0])
    seed_everything(2)
    syn_x, syn_y = generate(model, torch.as_tensor(test.att), torch.as_tensor(test.unseen), 10)
    cfg = classify_cfg(epochs=1, mfim_levels=["embedding"], mfim_scaling="none", mfim_per_sample=False)
    feats = evaluate.mfim_features(test, model, syn_x.numpy(), cfg, CPU)
    assert feats.train.shape == (len(test.train_y), CFG.embed_dim)
    assert torch.equal(feats.syn, model.embedding(syn_x)[0])  # CE-GZSL's classifier input: h alone
    both = evaluate.mfim_features(test, model, syn_x.numpy(), dataclasses.replace(cfg, mfim_levels=["visual", "embedding"]), CPU)
    assert both.test_unseen.shape[1] == test.d_feat + CFG.embed_dim
    metrics, _, _ = evaluate.evaluate(test, model, syn_x.numpy(), syn_y.numpy(), dataclasses.replace(cfg, calibration=False), CPU)
    assert 0.0 <= metrics["H"] <= 100.0


def test_embedding_level_needs_the_embedding(bench):
    seed_everything(0)
    model, _ = trainer.train(bench, dataclasses.replace(CFG, embed=False, epochs=1), CPU)
    with pytest.raises(ConfigError, match="train.embed: false"):
        mfim.levels(model, torch.as_tensor(bench.test_seen_x[:2]), ["embedding"])
    bad = apply_overrides(PARAMS, {"train.SYN.embed": False, "classify.SYN.mfim_levels": ["visual", "embedding"]})
    with pytest.raises(ConfigError, match=r"classify\.SYN\.mfim_levels includes 'embedding' but train\.SYN\.embed is false"):
        validate_all(bad)
    validate_all(apply_overrides(bad, {"train.SYN.embed": True}))  # with it on, the level is fine


# the CUDA-graph path with the embedding on: tests/test_fast_trainer.py, case ce_gzsl
