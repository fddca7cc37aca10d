"""Each loss against small cases computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F_

from bsegn import losses


def test_f2s_is_the_cross_entropy_over_classes():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    y = torch.tensor([0, 1])
    by_hand = 0.5 * (-(2 - math.log(math.e ** 2 + 2)) - (1 - math.log(1 + math.e + math.e ** 3)))
    assert losses.contrastive_f2s(logits, y).item() == pytest.approx(by_hand, rel=1e-6)


def test_s2f_with_one_feature_per_class_is_the_transposed_cross_entropy():
    att = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    emb = torch.tensor([[2.0, 0.5], [0.1, 1.0]])  # class 0 and class 1, one feature each
    y = torch.tensor([0, 1])
    tau = 0.5
    logits = F_.normalize(att[y], dim=1) @ F_.normalize(emb, dim=1).T / tau  # (class, feature)
    expected = F_.cross_entropy(logits, torch.arange(2))
    assert losses.contrastive_s2f(emb, att, y, tau).item() == pytest.approx(expected.item(), rel=1e-6)


def test_s2f_averages_over_the_positives_of_a_class():
    att = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    emb = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # classes 0, 0, 1
    y = torch.tensor([0, 0, 1])
    tau = 1.0
    c = 1 / math.sqrt(2)
    # class 0 scores the features 1, c, 0; class 1 scores them 0, c, 1
    z0 = math.e ** 1 + math.e ** c + 1
    z1 = 1 + math.e ** c + math.e ** 1
    l0 = -0.5 * ((1 - math.log(z0)) + (c - math.log(z0)))
    l1 = -(1 - math.log(z1))
    assert losses.contrastive_s2f(emb, att, y, tau).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


UNSEEN = torch.tensor([False, False, True, True])  # classes 2 and 3 are unseen


def test_balance_is_zero_when_each_domain_predicts_its_own_group():
    logits = torch.tensor([[50.0, 0, 0, 0], [0, 50.0, 0, 0], [0, 0, 50.0, 0]])
    is_unseen = torch.tensor([False, False, True])
    assert losses.balance_loss(logits, UNSEEN, is_unseen).item() == pytest.approx(0.0, abs=1e-12)


def test_balance_by_hand_and_grows_with_imbalance():
    is_unseen = torch.tensor([False, True])

    def loss_when_unseen_feature_puts_on_seen(p_seen: float) -> float:
        # seen feature: all mass on seen; unseen feature: p_seen of its mass on seen classes
        logits = torch.tensor([[0.0, 0.0, -1e9, -1e9],
                               [math.log(p_seen / 2), math.log(p_seen / 2),
                                math.log((1 - p_seen) / 2), math.log((1 - p_seen) / 2)]])
        return losses.balance_loss(logits, UNSEEN, is_unseen).item()

    assert loss_when_unseen_feature_puts_on_seen(0.5) == pytest.approx(0.5 * -math.log(0.5), rel=1e-6)
    values = [loss_when_unseen_feature_puts_on_seen(p) for p in (0.01, 0.3, 0.6, 0.9)]
    assert values == sorted(values) and values[0] < 0.01 < values[-1]


def test_balance_weighs_both_domains_equally_whatever_the_batch():
    one = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 0.0]])
    is_unseen = torch.tensor([False, True])
    many_seen = torch.cat([one[:1].repeat(10, 1), one[1:]])
    is_unseen_many = torch.tensor([False] * 10 + [True])
    assert losses.balance_loss(one, UNSEEN, is_unseen).item() == pytest.approx(
        losses.balance_loss(many_seen, UNSEEN, is_unseen_many).item(), rel=1e-6)


def test_balance_with_one_domain_in_the_batch():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    assert losses.balance_loss(logits, UNSEEN, torch.tensor([False])).item() == pytest.approx(math.log(2), rel=1e-6)


def test_critic_terms_of_a_linear_critic():
    class Linear(torch.nn.Module):
        def __init__(self, w):
            super().__init__()
            self.w = w

        def forward(self, x, a):
            return x @ self.w

    real, fake, a = torch.randn(8, 3), torch.randn(8, 3), torch.zeros(8, 1)
    unit = torch.tensor([0.6, 0.8, 0.0])
    wdist, gp = losses.wgan_critic_terms(Linear(unit), real, fake, a)
    assert gp.item() == pytest.approx(0.0, abs=1e-10)
    assert wdist.item() == pytest.approx(((real - fake) @ unit).mean().item(), rel=1e-5)
    assert losses.wgan_critic_terms(Linear(2 * unit), real, fake, a)[1].item() == pytest.approx(1.0, rel=1e-6)


def test_critic_terms_in_one_pass_equal_separate_passes():
    """Real, fake and interpolates batched through the critic give what three passes give."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LeakyReLU(0.2), torch.nn.Linear(7, 1))

    def D(x, a):
        return critic(torch.cat([x, a], 1)).squeeze(1)

    real, fake, a = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 2)
    gen = torch.Generator().manual_seed(1)
    wdist, gp = losses.wgan_critic_terms(D, real, fake, a, gen)
    alpha = torch.rand(6, 1, generator=torch.Generator().manual_seed(1))
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(D(x_hat, a).sum(), x_hat)
    assert wdist.item() == pytest.approx((D(real, a).mean() - D(fake, a).mean()).item(), rel=1e-6)
    assert gp.item() == pytest.approx(((grad.norm(dim=1) - 1) ** 2).mean().item(), rel=1e-6)


def test_kl_and_reconstruction():
    assert losses.kl_divergence(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0.0
    # one dim with mu=1, logvar=0: KL = 0.5 * mu^2
    assert losses.kl_divergence(torch.tensor([[1.0]]), torch.tensor([[0.0]])).item() == pytest.approx(0.5)
    pred, target = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    assert losses.reconstruction_loss(pred, target).item() == pytest.approx((5 + 9) / 2)


def test_kl_matches_torch_distributions():
    """Against an independent implementation: sum over dims of KL(N(mu, sigma) || N(0, 1)),
    mean over the batch."""
    mu = torch.tensor([[1.0, -0.5, 0.2], [0.0, 2.0, -1.0]])
    logvar = torch.tensor([[0.3, -1.0, 0.0], [1.2, 0.1, -0.4]])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert losses.kl_divergence(mu, logvar).item() == pytest.approx(expected.item(), rel=1e-6)


def test_balance_with_only_unseen_features_in_the_batch():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 2.0, 0.0]])
    value = losses.balance_loss(logits, UNSEEN, torch.tensor([True, True]))
    _, log_u = losses.domain_log_mass(logits, UNSEEN)
    assert torch.isfinite(value) and value.item() == pytest.approx((-log_u).mean().item(), rel=1e-6)


def test_weighted_l1_by_hand_and_the_cycle_loss_names():
    """TF-VAEGAN's WeightedL1: per sample sum_j |d_j|^3 / ||d||, averaged over the batch; a
    perfect reconstruction costs 0 (not NaN)."""
    pred = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[0.0, 4.0], [1.0, 1.0]])
    by_hand = ((27 + 64) / 5 + 0.0) / 2
    assert losses.weighted_l1_loss(pred, target).item() == pytest.approx(by_hand, rel=1e-6)
    assert losses.cycle_reconstruction("weighted_l1") is losses.weighted_l1_loss
    assert losses.cycle_reconstruction("mse") is losses.reconstruction_loss


def test_bce_reconstruction_by_hand_and_the_vae_loss_names():
    """Summed over the feature dims, averaged over the batch; 0 only where a prediction is
    certain and right, so a perfect soft target still costs its entropy."""
    pred = torch.tensor([[0.5, 0.9], [0.2, 0.2]])
    target = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    by_hand = (-math.log(0.5) - math.log(0.1) + -math.log(0.8) - (0.5 * math.log(0.2) + 0.5 * math.log(0.8))) / 2
    assert losses.bce_reconstruction_loss(pred, target).item() == pytest.approx(by_hand, rel=1e-6)
    assert losses.vae_reconstruction("bce") is losses.bce_reconstruction_loss
    assert losses.vae_reconstruction("mse") is losses.reconstruction_loss


def test_bce_reconstruction_of_a_nan_prediction_is_nan_not_an_error():
    """A diverged decoder's NaN output must reach the epoch's finiteness check as a NaN loss
    (TrainingDiverged naming 'vae'), not stop the process inside BCE; finite inputs are untouched."""
    target = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    pred = torch.tensor([[0.5, float("nan")], [0.2, 0.2]], requires_grad=True)
    loss = losses.bce_reconstruction_loss(pred, target)
    assert math.isnan(loss.item())
    finite = torch.tensor([[0.5, 0.9], [0.2, 0.2]])
    plain = torch.nn.functional.binary_cross_entropy(finite, target, reduction="none").sum(1).mean()
    assert torch.equal(losses.bce_reconstruction_loss(finite, target), plain)
