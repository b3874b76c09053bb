"""Word-region alignment (WRA) by optimal transport: the IPOT solver of UNITER.

Reference implementation, written from the UNITER paper's description of WRA
(Chen et al., "UNITER: UNiversal Image-TExt Representation Learning", ECCV 2020,
section 3.2) and the inexact proximal point method for optimal transport (IPOT,
Xie et al., UAI 2019) it uses.

Conventions (all tensors batched, ``B`` pairs):

* ``txt``  ``[B, M, H]``: final-layer hidden states of the text tokens,
  including ``[CLS]`` and ``[SEP]``; ``txt_pad`` ``[B, M]`` is True at padding.
* ``img``  ``[B, N, H]``: final-layer hidden states of the regions;
  ``img_pad`` ``[B, N]`` is True at padding.
* The cost ``C`` is ``[B, M, N]`` (tokens x regions); the plan ``T`` returned
  by :func:`ipot` is ``[B, N, M]`` (regions x tokens), so that the OT distance
  is ``trace(C @ T) = sum_ij C[i, j] * T[j, i]``. Users see the plan as
  tokens x regions, i.e. ``T.transpose(1, 2)``.

The plan carries no gradient (it is computed under ``torch.no_grad``); the
distance is differentiable with respect to the cost, as in pre-training.
"""

import torch

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_ITERATIONS",
    "NORM_EPS",
    "PAD_GUARD",
    "cost_matrix_cosine",
    "ipot",
    "ipot_log_rows",
    "ipot_region_potential",
    "optimal_transport_dist",
]

DEFAULT_BETA = 0.5
DEFAULT_ITERATIONS = 50
NORM_EPS = 1e-5
# Added to the scaling denominators at padded positions so that 1/x stays
# finite there; the padded entries of the plan are exactly zero regardless.
PAD_GUARD = 1e4


def _l2_normalise(x, eps):
    """x / max(||x||, eps) along the last dimension (as F.normalize)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def cost_matrix_cosine(txt, img, eps=NORM_EPS):
    """Cosine distance ``1 - cos(t_i, r_j)``: ``[B, M, H], [B, N, H] -> [B, M, N]``.

    Vectors are normalised as ``x / max(||x||, eps)``, so a zero vector has
    cosine 0 with everything (cost 1). Padded entries are *not* masked here;
    :func:`optimal_transport_dist` zeroes them.
    """
    if txt.dim() != 3 or img.dim() != 3:
        raise ValueError(f"expected [B,M,H] and [B,N,H], got {tuple(txt.shape)} and {tuple(img.shape)}")
    if txt.size(0) != img.size(0) or txt.size(2) != img.size(2):
        raise ValueError(f"batch/hidden size mismatch: {tuple(txt.shape)} vs {tuple(img.shape)}")
    t = _l2_normalise(txt, eps)
    r = _l2_normalise(img, eps)
    return 1 - torch.bmm(t, r.transpose(1, 2))


@torch.no_grad()
def ipot(C, txt_len, txt_pad, img_len, img_pad, joint_pad,
         beta=DEFAULT_BETA, iterations=DEFAULT_ITERATIONS, k=1):
    """Inexact proximal point OT plan.

    Args:
        C: ``[B, M, N]`` cost (tokens x regions), zero at ``joint_pad``.
        txt_len: ``[B]`` number of valid tokens M_b (float, C's dtype).
        txt_pad: ``[B, M]`` bool, True at padded tokens.
        img_len: ``[B]`` number of valid regions N_b.
        img_pad: ``[B, N]`` bool, True at padded regions.
        joint_pad: ``[B, M, N]`` bool, True where the token or the region is padding.
        beta: proximal step (kernel ``exp(-C/beta)``).
        iterations: outer (proximal) iterations.
        k: inner Sinkhorn iterations per outer iteration.

    Returns:
        ``T`` ``[B, N, M]`` (regions x tokens): on the valid block a joint
        distribution with token marginals 1/M_b (exact after each iteration)
        and region marginals approximately 1/N_b; zero at padding.
    """
    if C.dim() != 3:
        raise ValueError(f"cost must be [B,M,N], got {tuple(C.shape)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if iterations < 1 or k < 1:
        raise ValueError(f"iterations and k must be >= 1, got {iterations}, {k}")
    dtype = C.dtype
    pad_nm = joint_pad.transpose(1, 2)                              # [B, N, M]

    A = torch.exp(-C.transpose(1, 2) / beta).masked_fill(pad_nm, 0)  # regions x tokens
    T = torch.ones_like(A).masked_fill(pad_nm, 0)
    m = txt_len.to(dtype).unsqueeze(1)                              # [B, 1]
    n = img_len.to(dtype).unsqueeze(1)                              # [B, 1]
    sigma = (1 / m).expand_as(txt_pad).masked_fill(txt_pad, 0)      # [B, M]
    delta = None
    token_guard = txt_pad.to(dtype) * PAD_GUARD                      # [B, M]
    region_guard = img_pad.to(dtype) * PAD_GUARD                     # [B, N]

    for _ in range(iterations):
        Q = A * T
        for _ in range(k):
            q_sigma = torch.bmm(Q, sigma.unsqueeze(2)).squeeze(2)        # [B, N]
            delta = 1 / (n * q_sigma + region_guard)
            qt_delta = torch.bmm(delta.unsqueeze(1), Q).squeeze(1)      # [B, M]
            sigma = 1 / (m * qt_delta + token_guard)
        T = delta.unsqueeze(2) * Q * sigma.unsqueeze(1)
    return T.masked_fill(pad_nm, 0)


def _ipot_log_scalings(C, txt_pad, img_pad, beta, iterations):
    """IPOT (k = 1) in the log domain: ``(log_u [B, N], log_v [B, M])`` with the plan after
    ``iterations`` steps ``T[r, i] = exp(log_u[r] - iterations * C[i, r] / beta + log_v[i])``
    (see :func:`ipot_region_potential`). Differentiable in ``C``; float64 (the plan itself
    underflows to 0 far from its support)."""
    if C.dim() != 3:
        raise ValueError(f"cost must be [B,M,N], got {tuple(C.shape)}")
    C = C.double()
    neg = torch.finfo(C.dtype).min / 4
    pad = txt_pad.unsqueeze(-1) | img_pad.unsqueeze(-2)                          # [B, M, N]
    log_m = torch.log((~txt_pad).sum(1, keepdim=True).double())                 # [B, 1]
    log_n = torch.log((~img_pad).sum(1, keepdim=True).double())
    log_u = torch.zeros(img_pad.shape, dtype=C.dtype, device=C.device)          # regions
    log_v = torch.zeros(txt_pad.shape, dtype=C.dtype, device=C.device)          # tokens
    log_sigma = (-log_m).expand_as(log_v).masked_fill(txt_pad, 0.0)
    for t in range(1, iterations + 1):
        log_q = (log_u[:, None, :] - t * C / beta + log_v[:, :, None]).masked_fill(pad, neg)  # [B, M, N]
        # padded rows and columns of log_q are all `neg`: their scalings are pinned to 1
        log_delta = (-log_n - torch.logsumexp(log_q + log_sigma[:, :, None], dim=1)).masked_fill(img_pad, 0.0)
        log_sigma = (-log_m - torch.logsumexp(log_q + log_delta[:, None, :], dim=2)).masked_fill(txt_pad, 0.0)
        log_u, log_v = log_u + log_delta, log_v + log_sigma
    return log_u, log_v


@torch.no_grad()
def ipot_region_potential(C, txt_pad, img_pad, beta=DEFAULT_BETA, iterations=DEFAULT_ITERATIONS):
    """The regions' potential in the plan of :func:`ipot` (k = 1), in cost units: ``[B, N]``.

    Each IPOT step rescales the regions and the tokens of ``exp(-C/beta) * T``, so after ``t``
    steps the plan is ``T[r, i] = U[r] exp(-t C[i, r] / beta) V[i]``: entropic transport at
    ``eps = beta / t``. A token's row of the plan is therefore the softmax over regions of
    ``(-C[i, r] + phi[r]) / eps`` with ``phi = eps log U``: high on regions the other tokens
    leave unclaimed, low on crowded ones. Computed in the log domain (the plan itself underflows
    to 0 far from its support); 0 at padded regions.
    """
    log_u, _ = _ipot_log_scalings(C, txt_pad, img_pad, beta, iterations)
    phi = (beta / iterations) * log_u
    return phi.masked_fill(img_pad, 0.0)


def ipot_log_rows(C, txt_pad, img_pad, beta=DEFAULT_BETA, iterations=DEFAULT_ITERATIONS):
    """Each token's row of the plan of :func:`ipot` (k = 1) as log-probabilities over the
    regions, ``[B, M, N]`` (tokens x regions, float64): ``log T[r, i] - log sum_r T[r, i]``.
    Unlike :func:`ipot`, differentiable in ``C``, through the regions' potential too, so a loss
    on it sees the other tokens' claims on each region. Padded regions get a very negative
    value; padded tokens' rows are meaningless."""
    log_u, _ = _ipot_log_scalings(C, txt_pad, img_pad, beta, iterations)
    logits = (log_u[:, None, :] - iterations * C.double() / beta).masked_fill(img_pad[:, None, :], -1e30)
    return torch.log_softmax(logits, dim=-1)


def optimal_transport_dist(txt_emb, img_emb, txt_pad, img_pad,
                           beta=DEFAULT_BETA, iterations=DEFAULT_ITERATIONS, k=1):
    """OT distance between text and image hidden states, as in WRA pre-training.

    Args:
        txt_emb: ``[B, M, H]``; img_emb: ``[B, N, H]``;
        txt_pad: ``[B, M]`` bool; img_pad: ``[B, N]`` bool (True = padding).

    Returns:
        ``(distance [B], T [B, N, M])``; the plan is detached, the distance
        ``sum_ij C[i,j] T[j,i]`` keeps the gradient of the cost.
    """
    cost = cost_matrix_cosine(txt_emb, img_emb)
    joint_pad = txt_pad.unsqueeze(-1) | img_pad.unsqueeze(-2)       # [B, M, N]
    cost = cost.masked_fill(joint_pad, 0)
    txt_len = (~txt_pad).sum(dim=1).to(cost.dtype)
    img_len = (~img_pad).sum(dim=1).to(cost.dtype)
    T = ipot(cost.detach(), txt_len, txt_pad, img_len, img_pad, joint_pad,
             beta=beta, iterations=iterations, k=k)
    distance = (cost * T.detach().transpose(1, 2)).sum(dim=(1, 2))
    return distance, T
