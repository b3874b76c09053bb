#!/usr/bin/env python3
"""Write the IPOT golden file used by the Go package ``heads``.

    /usr/bin/python3 models/make_ot_golden.py --out heads/testdata/ipot_golden.json

Every case is computed in float64 by the batched PyTorch reference
(``models/uniter/ot.py``). Inputs are drawn with a seeded numpy generator and
rounded to float32 (the server feeds float32 hidden states), so the Go side
reads exactly the values the reference used. The output is deterministic for a
given ``--seed``.

Per case the file stores the unpadded inputs ``txt`` [M][H] and ``img`` [N][H],
the options (beta, iterations, k), the cost ``1 - cos`` [M][N], the transport
plan as tokens x regions [M][N] and the OT distance. Cases whose ``source`` is
``padded_batch`` were computed together in one padded batch (different M and N
per item) and then cut back to their valid block.
"""

import argparse
import json
import os
import re
import sys

import numpy as np
import torch

# This script lives in models/, next to the `uniter` package.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uniter.ot import (  # noqa: E402
    DEFAULT_BETA, DEFAULT_ITERATIONS, NORM_EPS, cost_matrix_cosine, optimal_transport_dist)


def f32(a):
    """Round to float32 (the values the Go side reads), returned as float32."""
    return np.asarray(a, dtype=np.float64).astype(np.float32)


def f32_list(a):
    """float32 array -> nested lists of the shortest decimal that round-trips in float32."""
    return [[float(str(np.float32(v))) for v in row] for row in a]


def f64_list(a):
    return [[float(v) for v in row] for row in a]


def compute_batch(items, beta, iterations, k):
    """items: list of (txt float32 [M,H], img float32 [N,H]) -> per-item (cost, plan MxN, distance)."""
    B = len(items)
    H = items[0][0].shape[1]
    Mmax = max(t.shape[0] for t, _ in items)
    Nmax = max(r.shape[0] for _, r in items)
    txt = torch.zeros(B, Mmax, H, dtype=torch.float64)
    img = torch.zeros(B, Nmax, H, dtype=torch.float64)
    txt_pad = torch.ones(B, Mmax, dtype=torch.bool)
    img_pad = torch.ones(B, Nmax, dtype=torch.bool)
    for b, (t, r) in enumerate(items):
        M, N = t.shape[0], r.shape[0]
        txt[b, :M] = torch.from_numpy(t.astype(np.float64))
        img[b, :N] = torch.from_numpy(r.astype(np.float64))
        txt_pad[b, :M] = False
        img_pad[b, :N] = False
    # Fill padding with garbage: it must not influence the valid block.
    txt = torch.where(txt_pad.unsqueeze(-1), torch.full_like(txt, 7.0), txt)
    img = torch.where(img_pad.unsqueeze(-1), torch.full_like(img, -3.0), img)
    distance, T = optimal_transport_dist(txt, img, txt_pad, img_pad,
                                         beta=beta, iterations=iterations, k=k)
    cost = cost_matrix_cosine(txt, img)
    out = []
    for b, (t, r) in enumerate(items):
        M, N = t.shape[0], r.shape[0]
        plan = T[b, :N, :M].transpose(0, 1).numpy()          # tokens x regions
        out.append((cost[b, :M, :N].detach().numpy(), plan, float(distance[b])))
    return out


def make_case(name, txt, img, source="single", beta=DEFAULT_BETA,
              iterations=DEFAULT_ITERATIONS, k=1, result=None, note=""):
    if result is None:
        (result,) = compute_batch([(txt, img)], beta, iterations, k)
    cost, plan, distance = result
    assert np.all(np.isfinite(plan)) and np.isfinite(distance)
    case = {
        "name": name,
        "source": source,
        "beta": beta,
        "iterations": iterations,
        "k": k,
        "m": int(txt.shape[0]),
        "n": int(img.shape[0]),
        "h": int(txt.shape[1]),
        "txt": f32_list(txt),
        "img": f32_list(img),
        "cost": f64_list(cost),
        "plan": f64_list(plan),
        "distance": distance,
    }
    if note:
        case["note"] = note
    return case


def build_cases(seed):
    rng = np.random.default_rng(seed)

    def gauss(M, N, H, scale=1.0):
        return f32(rng.standard_normal((M, H)) * scale), f32(rng.standard_normal((N, H)) * scale)

    def structured(M, N, H, noise=0.3):
        """Regions are noisy copies of random tokens: a plan with visible structure."""
        t = rng.standard_normal((M, H))
        idx = rng.integers(0, M, size=N)
        r = t[idx] + noise * rng.standard_normal((N, H))
        return f32(t), f32(r)

    def anisotropic(M, N, H):
        """A shared offset, as in real BERT hidden states: all cosines high."""
        base = 3.0 * rng.standard_normal(H)
        return f32(base + rng.standard_normal((M, H))), f32(base + rng.standard_normal((N, H)))

    cases = []
    for M, N, H in [(3, 5, 8), (7, 4, 16), (12, 10, 12), (2, 9, 8)]:
        t, r = gauss(M, N, H)
        cases.append(make_case(f"gauss_{M}x{N}_h{H}", t, r))
    for M, N, H in [(9, 6, 16), (12, 12, 12), (5, 11, 8)]:
        t, r = structured(M, N, H)
        cases.append(make_case(f"structured_{M}x{N}_h{H}", t, r))
    t, r = anisotropic(11, 12, 8)
    cases.append(make_case("anisotropic_11x12_h8", t, r))
    t, r = gauss(5, 7, 8, scale=1e3)
    cases.append(make_case("large_magnitude_5x7_h8", t, r))
    t, r = gauss(4, 6, 8, scale=1e-3)
    cases.append(make_case("small_magnitude_4x6_h8", t, r, note="norms ~3e-3, above the 1e-5 eps"))

    # One padded batch with different M and N per item; goldens come from the batch.
    shapes = [(3, 8), (9, 2), (6, 11), (12, 5)]
    H = 10
    items = [structured(M, N, H) if b % 2 else gauss(M, N, H) for b, (M, N) in enumerate(shapes)]
    results = compute_batch(items, DEFAULT_BETA, DEFAULT_ITERATIONS, 1)
    for b, ((t, r), res) in enumerate(zip(items, results)):
        cases.append(make_case(f"padded_batch_item{b}_{t.shape[0]}x{r.shape[0]}_h{H}", t, r,
                               source="padded_batch", result=res,
                               note=f"item {b} of a batch padded to M={max(s[0] for s in shapes)}, "
                                    f"N={max(s[1] for s in shapes)}"))

    # Degenerate inputs.
    t, r = gauss(4, 5, 8)
    t[1] = 0
    r[3] = 0
    cases.append(make_case("zero_vectors_4x5_h8", t, r,
                           note="txt[1] and img[3] are zero: cost 1 on their row/column"))
    t, r = gauss(3, 4, 8)
    t[0] = f32(rng.standard_normal(8) * 1e-7)
    r[2] = f32(rng.standard_normal(8) * 2e-7)
    cases.append(make_case("tiny_vectors_3x4_h8", t, r,
                           note="txt[0] and img[2] have norm < 1e-5: divided by eps, not unit length"))
    t, r = structured(1, 6, 8)
    cases.append(make_case("single_token_1x6_h8", t, r))
    t, r = gauss(5, 1, 8)
    cases.append(make_case("single_region_5x1_h8", t, r))
    t, r = gauss(1, 1, 8)
    cases.append(make_case("single_pair_1x1_h8", t, r))
    v = f32(rng.standard_normal(8))
    t = np.repeat(v[None], 4, axis=0)
    r = np.repeat(v[None], 6, axis=0)
    cases.append(make_case("identical_vectors_4x6_h8", t, r, note="constant cost 0: uniform plan"))
    t, r = gauss(5, 4, 8)
    t[3] = t[1]
    r[2] = r[0]
    cases.append(make_case("duplicate_rows_5x4_h8", t, r, note="txt[3]==txt[1], img[2]==img[0]"))

    # Non-default options (the Go API exposes them).
    t, r = structured(6, 7, 8)
    cases.append(make_case("beta0.1_iter100_6x7_h8", t, r, beta=0.1, iterations=100))
    t, r = structured(5, 8, 8)
    cases.append(make_case("k2_iter20_5x8_h8", t, r, iterations=20, k=2))
    return cases


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output JSON path")
    ap.add_argument("--seed", type=int, default=20200923, help="RNG seed (default %(default)s)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    cases = build_cases(args.seed)
    doc = {
        "description": "IPOT word-region alignment goldens (UNITER WRA). plan and cost are "
                       "tokens x regions; inputs are float32 values; computed in float64.",
        "generator": "models/make_ot_golden.py --seed %d" % args.seed,
        "reference": "models/uniter/ot.py optimal_transport_dist",
        "seed": args.seed,
        "norm_eps": NORM_EPS,
        "torch_version": torch.__version__.split("+")[0],
        "cases": cases,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    text = json.dumps(doc, indent=1)
    # One matrix row per line: collapse the innermost (numbers-only) arrays.
    text = re.sub(r"\[\s+([-+0-9eE.,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    print(f"wrote {len(cases)} cases to {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
