"""The sampler's token choice (numpy): exact draws, top-p, greedy, log-probs at temperature 1."""

from __future__ import annotations

import numpy as np

from edgecl.backends.sampling import inverse_cdf, next_tokens


def test_inverse_cdf_draws_each_index_in_proportion_to_its_weight():
    """Weights spread over blocks (width 600 is not a multiple of the block, zeros between):
    frequencies within 5 standard errors of the weights, and a zero weight is never drawn."""
    rng = np.random.default_rng(0)
    width, hot = 600, [0, 7, 255, 256, 300, 599]
    weights = np.zeros(width)
    weights[hot] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    n = 40_000
    draws = inverse_cdf(np.tile(weights, (n, 1)), rng.random(n))
    assert set(draws.tolist()) == set(hot)
    p = weights[hot] / weights.sum()
    freq = np.array([(draws == i).mean() for i in hot])
    assert (np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n)).all(), (freq, p)


def test_inverse_cdf_at_the_edges_of_u():
    weights = np.array([[0.0, 0.0, 1.0, 1.0, 0.0]])
    assert inverse_cdf(weights, np.array([0.0]), block=2).tolist() == [2]
    assert inverse_cdf(weights, np.array([np.nextafter(1.0, 0)]), block=2).tolist() == [3]


def test_next_tokens_logprobs_greedy_temperature_and_top_p():
    rng = np.random.default_rng(1)
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05], [0.05, 0.05, 0.1, 0.8]], dtype=np.float32))
    tokens, lps = next_tokens(logits + 7.0, 0.0, 1.0, rng.random(2))  # a shift changes nothing
    assert tokens.tolist() == [0, 3]
    np.testing.assert_allclose(lps, np.log([0.5, 0.8]), rtol=1e-6)

    # top_p 0.6 keeps tokens whose preceding mass is <= 0.6: {0, 1} in row 0, {3} in row 1.
    n = 4000
    many = np.repeat(logits, n, axis=0)
    tokens, lps = next_tokens(many, 1.0, 0.6, rng.random(len(many)))
    assert set(tokens[:n].tolist()) == {0, 1} and set(tokens[n:].tolist()) == {3}
    assert abs((tokens[:n] == 0).mean() - 0.5 / 0.8) < 0.05
    np.testing.assert_allclose(lps[n:], np.log(0.8), rtol=1e-6)  # log-probs at temperature 1

    # temperature 0.5 squares the odds: 0.5^2 : 0.3^2 : 0.15^2 : 0.05^2 in row 0
    tokens, _ = next_tokens(many[:n], 0.5, 1.0, rng.random(n))
    p = np.array([0.5, 0.3, 0.15, 0.05]) ** 2
    assert abs((tokens == 0).mean() - p[0] / p.sum()) < 0.05
