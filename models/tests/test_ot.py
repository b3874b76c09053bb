"""Tests of the IPOT reference (models/uniter/ot.py).

Run:  cd models && /usr/bin/python3 -m pytest -q tests/test_ot.py
"""

import json
import math
import os

import numpy as np
import pytest
import torch

from uniter.ot import cost_matrix_cosine, ipot, ipot_log_rows, ipot_region_potential, optimal_transport_dist
from uniter_testing import REPO

GOLDEN = os.path.join(REPO, "heads", "testdata", "ipot_golden.json")

torch.set_num_threads(1)


# ---------------------------------------------------------------- helpers

def numpy_ipot_pair(txt, img, beta=0.5, iterations=50, k=1, eps=1e-5):
    """Independent per-pair implementation: numpy, explicit loops, no batching.

    Returns (cost [M,N], plan tokens x regions [M,N], distance).
    """
    txt = np.asarray(txt, dtype=np.float64)
    img = np.asarray(img, dtype=np.float64)
    M, N = txt.shape[0], img.shape[0]
    cost = np.empty((M, N))
    for i in range(M):
        ti = txt[i] / max(math.sqrt(float(np.dot(txt[i], txt[i]))), eps)
        for j in range(N):
            rj = img[j] / max(math.sqrt(float(np.dot(img[j], img[j]))), eps)
            cost[i, j] = 1.0 - float(np.dot(ti, rj))
    kernel = np.exp(-cost / beta)          # tokens x regions
    plan = np.ones((M, N))
    sigma = np.full(M, 1.0 / M)            # token scaling
    delta = np.empty(N)                    # region scaling
    for _ in range(iterations):
        q = kernel * plan
        for _ in range(k):
            for j in range(N):
                delta[j] = 1.0 / (N * sum(q[i, j] * sigma[i] for i in range(M)))
            for i in range(M):
                sigma[i] = 1.0 / (M * sum(q[i, j] * delta[j] for j in range(N)))
        for i in range(M):
            for j in range(N):
                plan[i, j] = delta[j] * q[i, j] * sigma[i]
    distance = float((cost * plan).sum())
    return cost, plan, distance


def pad_batch(pairs, txt_fill=0.0, img_fill=0.0):
    """[(txt [M,H], img [N,H])] -> padded float64 tensors and masks."""
    B, H = len(pairs), pairs[0][0].shape[1]
    Mmax = max(t.shape[0] for t, _ in pairs)
    Nmax = max(r.shape[0] for _, r in pairs)
    txt = torch.full((B, Mmax, H), txt_fill, dtype=torch.float64)
    img = torch.full((B, Nmax, H), img_fill, dtype=torch.float64)
    txt_pad = torch.ones(B, Mmax, dtype=torch.bool)
    img_pad = torch.ones(B, Nmax, dtype=torch.bool)
    for b, (t, r) in enumerate(pairs):
        txt[b, :t.shape[0]] = torch.as_tensor(t, dtype=torch.float64)
        img[b, :r.shape[0]] = torch.as_tensor(r, dtype=torch.float64)
        txt_pad[b, :t.shape[0]] = False
        img_pad[b, :r.shape[0]] = False
    return txt, img, txt_pad, img_pad


def single(t, r, **kw):
    """Reference on one unpadded pair -> (distance, plan tokens x regions)."""
    txt, img, tp, ip = pad_batch([(t, r)])
    d, T = optimal_transport_dist(txt, img, tp, ip, **kw)
    return float(d[0]), T[0].transpose(0, 1).numpy()


def random_pair(rng, M, N, H, structured=False):
    t = rng.standard_normal((M, H))
    if structured:
        r = t[rng.integers(0, M, size=N)] + 0.3 * rng.standard_normal((N, H))
    else:
        r = rng.standard_normal((N, H))
    return t, r


SHAPES = [(1, 1), (1, 5), (4, 1), (3, 7), (8, 5), (12, 12), (20, 36)]


# ---------------------------------------------------------------- cost

def test_cost_is_one_minus_cosine():
    rng = np.random.default_rng(0)
    t, r = random_pair(rng, 4, 6, 9)
    C = cost_matrix_cosine(torch.tensor(t)[None], torch.tensor(r)[None])[0].numpy()
    want = 1 - (t / np.linalg.norm(t, axis=1, keepdims=True)) @ (r / np.linalg.norm(r, axis=1, keepdims=True)).T
    np.testing.assert_allclose(C, want, rtol=0, atol=1e-14)
    assert C.min() >= -1e-12 and C.max() <= 2 + 1e-12


def test_cost_eps_for_zero_and_tiny_vectors():
    t = np.array([[0.0, 0.0, 0.0], [1e-7, 0.0, 0.0], [2.0, 0.0, 0.0]])
    r = np.array([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    C = cost_matrix_cosine(torch.tensor(t)[None], torch.tensor(r)[None])[0].numpy()
    # zero vector: cosine 0; tiny vector: x / eps, so cos = 1e-7/1e-5 = 0.01.
    np.testing.assert_allclose(C, [[1, 1], [1 - 0.01, 1], [0, 1]], rtol=0, atol=1e-12)


def test_cost_rejects_bad_shapes():
    with pytest.raises(ValueError):
        cost_matrix_cosine(torch.zeros(2, 3), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError):
        cost_matrix_cosine(torch.zeros(1, 3, 4), torch.zeros(1, 2, 5))
    with pytest.raises(ValueError):
        cost_matrix_cosine(torch.zeros(2, 3, 4), torch.zeros(1, 2, 4))


# ---------------------------------------------------------------- plan properties

@pytest.mark.parametrize("M,N", SHAPES)
@pytest.mark.parametrize("structured", [False, True])
def test_marginals(M, N, structured):
    rng = np.random.default_rng(M * 100 + N + structured)
    t, r = random_pair(rng, M, N, 16, structured)
    _, P = single(t, r)
    assert (P >= 0).all()
    # Token marginals are exact after every iteration (sigma is updated last).
    np.testing.assert_allclose(P.sum(axis=1), 1.0 / M, rtol=1e-12, atol=0)
    assert abs(P.sum() - 1) < 1e-12
    # Region marginals are only approximate after 50 proximal steps with one
    # inner Sinkhorn step each: measured relative errors reach a few 1e-2.
    np.testing.assert_allclose(P.sum(axis=0), 1.0 / N, rtol=5e-2, atol=0)


@pytest.mark.parametrize("M,N", [(3, 7), (8, 5), (12, 12)])
def test_region_marginals_converge_with_more_iterations(M, N):
    rng = np.random.default_rng(7 + M + N)
    t, r = random_pair(rng, M, N, 16, structured=True)
    errs = []
    for iters in (50, 3000):
        _, P = single(t, r, iterations=iters)
        errs.append(np.abs(P.sum(axis=0) * N - 1).max())
    assert errs[1] < 1e-6, errs
    assert errs[1] <= errs[0]


def test_zero_at_padding_and_padded_batch_equals_single():
    rng = np.random.default_rng(3)
    shapes = [(3, 8), (9, 2), (6, 11), (12, 5), (1, 1)]
    pairs = [random_pair(rng, M, N, 10, structured=b % 2 == 1) for b, (M, N) in enumerate(shapes)]
    # Garbage in the padding must not matter.
    txt, img, tp, ip = pad_batch(pairs, txt_fill=5.0, img_fill=-2.0)
    d, T = optimal_transport_dist(txt, img, tp, ip)
    assert not T.requires_grad
    for b, ((t, r), (M, N)) in enumerate(zip(pairs, shapes)):
        Tb = T[b]
        assert (Tb[N:, :] == 0).all() and (Tb[:, M:] == 0).all()
        ds, Ps = single(t, r)
        np.testing.assert_allclose(Tb[:N, :M].transpose(0, 1).numpy(), Ps, rtol=0, atol=1e-12)
        assert abs(float(d[b]) - ds) < 1e-12


@pytest.mark.parametrize("M,N,H,beta,iterations,k", [
    (1, 1, 4, 0.5, 50, 1), (1, 6, 8, 0.5, 50, 1), (5, 1, 8, 0.5, 50, 1),
    (4, 6, 8, 0.5, 50, 1), (9, 7, 12, 0.5, 50, 1), (6, 7, 8, 0.1, 100, 1), (5, 8, 8, 0.5, 20, 2),
])
def test_numpy_loop_agrees(M, N, H, beta, iterations, k):
    rng = np.random.default_rng(M * 31 + N * 7 + H + k)
    t, r = random_pair(rng, M, N, H, structured=True)
    C_np, P_np, d_np = numpy_ipot_pair(t, r, beta, iterations, k)
    d, P = single(t, r, beta=beta, iterations=iterations, k=k)
    C = cost_matrix_cosine(torch.tensor(t)[None], torch.tensor(r)[None])[0].numpy()
    np.testing.assert_allclose(C, C_np, rtol=0, atol=1e-13)
    np.testing.assert_allclose(P, P_np, rtol=0, atol=1e-12)
    assert abs(d - d_np) < 1e-12


def test_degenerate_inputs():
    rng = np.random.default_rng(11)
    # Identical vectors: constant cost 0, plan uniform 1/(MN), distance 0.
    v = rng.standard_normal(8)
    d, P = single(np.tile(v, (4, 1)), np.tile(v, (6, 1)))
    np.testing.assert_allclose(P, 1 / 24, rtol=1e-12)
    assert abs(d) < 1e-12
    # A single token: plan is uniform over regions, distance is the mean cost.
    t, r = random_pair(rng, 1, 5, 8)
    d, P = single(t, r)
    np.testing.assert_allclose(P, 1 / 5, rtol=1e-12)
    C = cost_matrix_cosine(torch.tensor(t)[None], torch.tensor(r)[None])[0].numpy()
    assert abs(d - C.mean()) < 1e-12
    # Zero vectors stay finite.
    t, r = random_pair(rng, 4, 5, 8)
    t[1] = 0
    r[2] = 0
    d, P = single(t, r)
    assert np.isfinite(P).all() and math.isfinite(d)


def test_permutation_equivariance():
    rng = np.random.default_rng(5)
    t, r = random_pair(rng, 7, 9, 12, structured=True)
    d, P = single(t, r)
    pt, pr = rng.permutation(7), rng.permutation(9)
    d2, P2 = single(t[pt], r[pr])
    np.testing.assert_allclose(P2, P[np.ix_(pt, pr)], rtol=0, atol=1e-12)
    assert abs(d - d2) < 1e-12


def test_distance_has_gradient_plan_does_not():
    rng = np.random.default_rng(9)
    t, r = random_pair(rng, 4, 5, 8)
    txt, img, tp, ip = pad_batch([(t, r)])
    txt.requires_grad_(True)
    d, T = optimal_transport_dist(txt, img, tp, ip)
    assert not T.requires_grad
    d.sum().backward()
    assert txt.grad is not None and torch.isfinite(txt.grad).all() and txt.grad.abs().sum() > 0


@pytest.mark.parametrize("beta,iterations", [(0.5, 50), (0.1, 20)])
def test_region_potential_reproduces_the_plan_rows(beta, iterations):
    """Each token's row of the plan (numpy_ipot_pair, per pair, unpadded) is the softmax over
    regions of (-C + phi) / (beta / iterations), phi from the padded batch in the log domain;
    padding gets 0 and changes nothing."""
    rng = np.random.default_rng(13)
    shapes = [(3, 8), (9, 2), (6, 11), (1, 1), (12, 20)]
    pairs = [random_pair(rng, M, N, 10, structured=b % 2 == 0) for b, (M, N) in enumerate(shapes)]
    txt, img, tp, ip = pad_batch(pairs, txt_fill=5.0, img_fill=-2.0)
    C = cost_matrix_cosine(txt, img).masked_fill(tp[:, :, None] | ip[:, None, :], 0)
    phi = ipot_region_potential(C, tp, ip, beta=beta, iterations=iterations)
    assert torch.isfinite(phi).all() and (phi[ip] == 0).all()
    eps = beta / iterations
    for b, (t, r) in enumerate(pairs):
        M, N = shapes[b]
        cost, plan, _ = numpy_ipot_pair(t, r, beta=beta, iterations=iterations)
        logits = (-cost + phi[b, :N].numpy()[None, :]) / eps
        rows = np.exp(logits - logits.max(1, keepdims=True))
        rows /= rows.sum(1, keepdims=True)
        np.testing.assert_allclose(rows, plan / plan.sum(1, keepdims=True), rtol=0, atol=1e-9)


def test_log_rows_are_the_plan_rows_and_carry_the_competition():
    """ipot_log_rows is each token's row of the plan (numpy_ipot_pair, per pair, unpadded) in
    log space, and its gradient reaches the other tokens' costs: raising one token's cost to a
    region gives that region's mass to the others (through the regions' potential)."""
    rng = np.random.default_rng(17)
    shapes = [(4, 7), (9, 3), (6, 11)]
    pairs = [random_pair(rng, M, N, 10, structured=b % 2 == 0) for b, (M, N) in enumerate(shapes)]
    txt, img, tp, ip = pad_batch(pairs, txt_fill=5.0, img_fill=-2.0)
    C = cost_matrix_cosine(txt, img).masked_fill(tp[:, :, None] | ip[:, None, :], 0)
    rows = ipot_log_rows(C, tp, ip)
    for b, (t, r) in enumerate(pairs):
        M, N = shapes[b]
        _, plan, _ = numpy_ipot_pair(t, r)
        np.testing.assert_allclose(rows[b, :M, :N].exp().numpy(), plan / plan.sum(1, keepdims=True),
                                   rtol=0, atol=1e-9)
        assert (rows[b, :M, N:] < -1e20).all()
    C = C.clone().requires_grad_(True)
    j = int(ipot_log_rows(C, tp, ip)[0, 0, :7].argmax())
    ipot_log_rows(C, tp, ip)[0, 1, j].backward()     # token 1's share of token 0's favourite region
    assert torch.isfinite(C.grad).all()
    assert C.grad[0, 0, j] > 0                        # more of it for token 1 when token 0 finds it dearer
    assert C.grad[0, 1, j] < 0


def test_ipot_rejects_bad_options():
    C = torch.zeros(1, 2, 3, dtype=torch.float64)
    tp = torch.zeros(1, 2, dtype=torch.bool)
    ip = torch.zeros(1, 3, dtype=torch.bool)
    jp = tp.unsqueeze(-1) | ip.unsqueeze(-2)
    n2, n3 = torch.tensor([2.0]), torch.tensor([3.0])
    for kw in ({"beta": 0}, {"iterations": 0}, {"k": 0}):
        with pytest.raises(ValueError):
            ipot(C, n2, tp, n3, ip, jp, **kw)


# ---------------------------------------------------------------- golden file

def test_golden_file_reproduces():
    """The committed golden matches the current reference and the numpy loop."""
    with open(GOLDEN) as f:
        doc = json.load(f)
    cases = doc["cases"]
    assert len(cases) >= 10
    for c in cases:
        t = np.array(c["txt"], dtype=np.float32).astype(np.float64)
        r = np.array(c["img"], dtype=np.float32).astype(np.float64)
        assert t.shape == (c["m"], c["h"]) and r.shape == (c["n"], c["h"])
        kw = dict(beta=c["beta"], iterations=c["iterations"], k=c["k"])
        d, P = single(t, r, **kw)
        np.testing.assert_allclose(P, np.array(c["plan"]), rtol=0, atol=1e-12, err_msg=c["name"])
        assert abs(d - c["distance"]) < 1e-12, c["name"]
        C_np, P_np, d_np = numpy_ipot_pair(t, r, **kw)
        np.testing.assert_allclose(np.array(c["cost"]), C_np, rtol=0, atol=1e-13, err_msg=c["name"])
        np.testing.assert_allclose(P_np, np.array(c["plan"]), rtol=0, atol=1e-12, err_msg=c["name"])
