"""Training: each step moves exactly the modules it should; CPU training is deterministic."""

import dataclasses

import pytest
import torch

from bsegn import trainer
from bsegn.data import prepare
from bsegn.evaluate import evaluate
from bsegn.model import GenerativeModel, generate
from bsegn.runtime import seed_everything
from bsegn.synthetic import write_benchmark
from shipped import classify_cfg, prepare_cfg, synthetic_cfg, train_cfg

TINY_SYN = synthetic_cfg(seed=3, n_seen=6, n_unseen=3, n_val=2, per_class=16, d_att=5, d_latent=3, d_feat=12)
FULL = train_cfg(epochs=2, hidden=16, fem_hidden=16, lr=1e-3, fem=True, cycle=True, vae=True, cls_pretrain_epochs=1)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    write_benchmark(TINY_SYN, folder)
    return prepare(folder, prepare_cfg())["test"]


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def moved(module, before) -> bool:
    return any(not torch.equal(p, b) for p, b in zip(module.parameters(), before))


@pytest.fixture
def state(bench):
    seed_everything(0)
    return trainer.setup(bench, FULL, torch.device("cpu"))


def modules(s):
    return {"G": s.model.generator, "D": s.D, "R": s.model.decoder, "F": s.model.fem, "E": s.E, "clf": s.clf}


@pytest.mark.parametrize("step, expected", [
    (trainer.critic_step, {"D"}),
    (trainer.decoder_step, {"R"}),
    (trainer.fem_step, {"F"}),  # the FEM step does not move G
    (trainer.generator_step, {"G", "E"}),  # the generator step does not move D, R, F
])
def test_each_step_moves_only_its_modules(state, step, expected):
    before = {name: snapshot(m) for name, m in modules(state).items()}
    step(state)
    changed = {name for name, m in modules(state).items() if moved(m, before[name])}
    assert changed == expected


def test_generator_step_reaches_g_through_fem_and_cycle(state):
    """With only the FEM (resp. cycle) loss on, G still receives a gradient from it."""
    for only in ("fem", "cycle"):
        cfg = dataclasses.replace(FULL, vae=False, cls_weight=0.0, fem=only == "fem", cycle=only == "cycle")
        state.cfg = cfg
        state.E, state.clf = None, None
        G = state.model.generator
        G.zero_grad()
        fs = state.fake(torch.tensor([0, 1]))
        fu = state.fake(state.unseen[:2])
        if only == "fem":
            loss = trainer.fem_loss(state, torch.cat([fs, fu]), torch.cat([torch.tensor([0, 1]), state.unseen[:2]]), True)
        else:
            loss = trainer.losses.reconstruction_loss(state.model.decoder(fu)[0], state.att[state.unseen[:2]])
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters()), only


def _train_and_evaluate(bench):
    seed_everything(7)
    model, history = trainer.train(bench, FULL, torch.device("cpu"))
    seed_everything(7)
    x, y = generate(model, torch.as_tensor(bench.att), torch.as_tensor(bench.unseen), 10)
    metrics, _, _ = evaluate(bench, model, x.numpy(), y.numpy(),
                          classify_cfg(epochs=2, mfim_levels=["visual", "hidden", "semantic", "fem"]),
                          torch.device("cpu"))
    return model, history, x, metrics


def test_same_seed_on_cpu_gives_identical_results(bench):
    m1, h1, x1, met1 = _train_and_evaluate(bench)
    m2, h2, x2, met2 = _train_and_evaluate(bench)
    assert h1 == h2
    assert torch.equal(x1, x2)
    assert met1 == met2
    for a, b in zip(m1.generator.state_dict().values(), m2.generator.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("changes", [{}, {"generator_output": "sigmoid"}, {"feedback": True, "feedback_lr": 1e-3},
                                     {"decoder_output": "l2norm"}],
                         ids=["relu", "sigmoid", "feedback", "decoder_l2norm"])
def test_save_and_load_round_trip(bench, tmp_path, changes):
    """The loaded model is the saved one, its generator's output layer and feedback module
    included (the generated features are the same)."""
    seed_everything(1)
    model, _ = trainer.train(bench, dataclasses.replace(FULL, epochs=1, **changes), torch.device("cpu"))
    model.save(tmp_path / "model.pt")
    loaded = GenerativeModel.load(tmp_path / "model.pt", torch.device("cpu"))
    x = torch.as_tensor(bench.test_seen_x[:4])
    assert torch.equal(model.decoder(x)[0], loaded.decoder(x)[0])
    assert torch.equal(model.fem(x), loaded.fem(x))
    assert loaded.cfg == model.cfg
    torch.manual_seed(0)
    x_fake, _ = generate(loaded, torch.as_tensor(bench.att), torch.as_tensor(bench.unseen), 8)
    torch.manual_seed(0)
    assert torch.equal(x_fake, generate(model, torch.as_tensor(bench.att), torch.as_tensor(bench.unseen), 8)[0])
    if changes.get("generator_output") == "sigmoid":  # a ReLU output is unbounded above and often exactly 0
        assert 0 < x_fake.min() and x_fake.max() < 1
    # R's reconstructions: unit norm with l2norm (a linear R's are not, after an epoch)
    norms = loaded.decoder(x)[0].norm(dim=1)
    unit = torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert unit == (changes.get("decoder_output") == "l2norm")


def test_saved_model_bytes_do_not_depend_on_the_file_name(bench, tmp_path):
    seed_everything(2)
    model, _ = trainer.train(bench, dataclasses.replace(FULL, epochs=1), torch.device("cpu"))
    model.save(tmp_path / "a.pt")
    model.save(tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
