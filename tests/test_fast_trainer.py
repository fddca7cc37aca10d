"""The fast trainer computes what the reference loop computes.

On the CPU both run the same steps on the same random stream, so their per-epoch losses
and weights agree to float tolerance. Seeds trained side by side give each seed's own run.
On CUDA (run on a GPU machine; skipped elsewhere) the captured graphs give the losses of
the eager loop.
"""

import dataclasses

import pytest
import torch

from bsegn import trainer
from bsegn.research import reference
from bsegn.data import prepare
from bsegn.runtime import seed_everything
from bsegn.synthetic import write_benchmark
from shipped import prepare_cfg, synthetic_cfg, train_cfg

TINY_SYN = synthetic_cfg(seed=4, n_seen=6, n_unseen=3, n_val=2, per_class=16, d_att=5, d_latent=3, d_feat=12)
FULL = train_cfg(epochs=3, hidden=16, fem_hidden=16, lr=1e-3, fem=True, cycle=True, vae=True,
                   decoder_fakes=True, cls_pretrain_epochs=1, batch_size=16)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    write_benchmark(TINY_SYN, folder)
    return prepare(folder, prepare_cfg())["test"]


def assert_histories_close(h1, h2, rel=1e-3, abs=1e-3):
    """Equal keys, values equal to float tolerance. The fast path batches rows through the
    networks, which changes the order of float sums; the critic's outputs (differences of
    nearly equal scores, ~1e-2 here) move by ~5e-5 over three epochs, every other loss by
    ~1e-6 relative. A dropped or altered loss term moves them by far more."""
    assert [sorted(r) for r in h1] == [sorted(r) for r in h2]
    for r1, r2 in zip(h1, h2):
        for k in r1:
            assert r1[k] == pytest.approx(r2[k], rel=rel, abs=abs), (r1["epoch"], k)


def weights(model):
    """The generator's weights, and CE-GZSL's embedding net's where the model has one."""
    nets = [model.generator] + ([model.embedding] if model.embedding is not None else [])
    return [t.detach().cpu() for net in nets for t in net.state_dict().values()]


@pytest.mark.parametrize("cfg", [FULL, dataclasses.replace(FULL, fem=False, cycle=False, vae=False),
                                 dataclasses.replace(FULL, encoded_noise=True),
                                 dataclasses.replace(FULL, gp_adaptive=True),
                                 dataclasses.replace(FULL, generator_output="sigmoid", vae_loss="bce"),
                                 dataclasses.replace(FULL, feedback=True, feedback_lr=1e-3),
                                 dataclasses.replace(FULL, cycle_loss="weighted_l1"),
                                 dataclasses.replace(FULL, decoder_steps=3),
                                 dataclasses.replace(FULL, decoder_output="l2norm", feedback=True, feedback_lr=1e-3),
                                 dataclasses.replace(FULL, encoder_layers=2, encoder_optimizer="own"),
                                 dataclasses.replace(FULL, decoder_cycle_step=True, feedback=True, feedback_lr=1e-3),
                                 dataclasses.replace(FULL, fem_space="embedding", fem_dim=8),
                                 dataclasses.replace(FULL, fem=False, cycle_unseen=False),
                                 dataclasses.replace(FULL, fem_space="contrastive", fem_dim=12, fem_out_dim=6,
                                                     fem_ins_weight=0.5)],
                         ids=["bsegn", "baseline", "encoded_noise", "gp_adaptive", "sigmoid_bce", "feedback",
                              "weighted_l1", "decoder_steps", "decoder_l2norm", "tfvaegan_encoder",
                              "decoder_cycle_step", "fem_embedding_space", "cycle_seen_only", "fem_contrastive"])
def test_fast_path_gives_the_reference_losses_on_cpu(bench, cfg):
    seed_everything(0)
    fast_model, fast = trainer.train(bench, cfg, CPU)
    seed_everything(0)
    ref_model, ref = reference.reference_train(bench, cfg, CPU)
    assert_histories_close(fast, ref)
    assert set(fast[0]) >= {"wasserstein", "g_adv", "decoder"} | ({"fem", "g_fem", "g_cycle"} if cfg.fem else set())
    for a, b in zip(weights(fast_model), weights(ref_model)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=2e-4)
    if cfg.feedback:
        for a, b in zip(fast_model.feedback.state_dict().values(), ref_model.feedback.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=2e-4)


def test_seeds_side_by_side_are_each_seeds_own_run(bench):
    together = trainer.train_many(bench, FULL, CPU, [3, 5])
    for seed, (model, history) in zip([3, 5], together):
        seed_everything(seed)
        alone_model, alone = trainer.train(bench, FULL, CPU)
        assert history == alone
        for a, b in zip(weights(model), weights(alone_model)):
            assert torch.equal(a, b)
    assert together[0][1] != together[1][1]


def test_epoch_hook_sees_every_epoch(bench):
    seen = []
    seed_everything(0)
    trainer.train(bench, dataclasses.replace(FULL, epochs=2), CPU, on_epoch=lambda e, row: seen.append((e, row["epoch"])))
    assert seen == [(1, 1), (2, 2)]
    seen.clear()
    trainer.train_many(bench, dataclasses.replace(FULL, epochs=2), CPU, [0, 1],
                       on_epoch=lambda e, row: seen.append((e, row["epoch"])))
    assert seen == [(1, 1), (2, 2)]  # the first seed's rows


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("changes", [{}, {"encoded_noise": True, "gp_adaptive": True, "generator_output": "sigmoid",
                                      "vae_loss": "bce", "feedback": True, "cycle_loss": "weighted_l1",
                                      "decoder_steps": 2, "decoder_output": "l2norm", "encoder_layers": 2,
                                      "encoder_optimizer": "own", "decoder_cycle_step": True},
                                     {"fem": False, "cycle": False, "vae": False, "embed": True, "embed_dim": 24,
                                      "embed_out_dim": 8, "embed_hidden": 16},
                                     {"fem": False, "encoded_noise": True, "embed": True, "embed_dim": 24,
                                      "embed_out_dim": 8, "embed_hidden": 16, "embed_unseen": True, "embed_s2f": True,
                                      "embed_balance_weight": 1.0}],
                         ids=["bsegn", "tfvaegan_practices", "ce_gzsl", "fem_on_embedding"])
def test_cuda_graphs_give_the_eager_losses(bench, changes):
    cfg = dataclasses.replace(FULL, epochs=4, **changes)
    gpu = torch.device("cuda")
    seed_everything(0)
    graphed_model, graphed = trainer.train(bench, cfg, gpu, graphs=True)
    seed_everything(0)
    eager_model, eager = trainer.train(bench, cfg, gpu, graphs=False)
    assert_histories_close(graphed, eager, rel=1e-3)
    for a, b in zip(weights(graphed_model), weights(eager_model)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@cuda
def test_cuda_seeds_side_by_side_match_alone(bench):
    gpu = torch.device("cuda")
    together = trainer.train_many(bench, FULL, gpu, [1, 2, 3])
    for seed, (_, history) in zip([1, 2, 3], together):
        seed_everything(seed)
        assert_histories_close(history, trainer.train(bench, FULL, gpu)[1], rel=1e-3)


def test_a_diverging_run_stops_with_the_epoch_term_and_params_named(bench):
    seed_everything(0)
    with pytest.raises(trainer.TrainingDiverged) as err:
        trainer.train(bench, dataclasses.replace(FULL, lr=1e6, epochs=5), CPU, label="train TINY seed 0")
    msg = str(err.value)
    assert msg.startswith("train TINY seed 0: training diverged at epoch ")
    assert "loss '" in msg and "look at the train params" in msg and "lr" in msg


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -2e8])
def test_check_finite_names_the_bad_term(value):
    with pytest.raises(trainer.TrainingDiverged, match=r"epoch 3: loss 'g_cycle' is .*cycle_weight"):
        trainer.check_finite({"epoch": 3, "g_adv": 0.5, "g_cycle": value}, "train X seed 1")
    trainer.check_finite({"epoch": 3, "g_adv": -50.0, "g_cycle": 1.0}, "fine")
