"""The word-region optimal transport as ONNX nodes (models/uniter/ot_graph.py) against the IPOT
reference (models/uniter/ot.py, float64), pair by pair, on batches whose pairs are padded
differently.

Python has no ONNX Runtime here: the appended nodes are evaluated by ot_graph.run_numpy (float32,
op by op) fed with PyTorch's hidden states, which always runs; with UNITER_BIN set (`make
test-py`), the exported encoder graph also runs whole through ONNX Runtime via `uniter run-graph`.

    cd models && PYTHONPATH=. OMP_NUM_THREADS=1 /usr/bin/python3 -m pytest -q tests/test_ot_graph.py
"""
import json
import os
import shutil

import numpy as np
import onnx
import pytest
import torch

from uniter.export import write_bundle
from uniter.ot import optimal_transport_dist
from uniter.ot_graph import (OT_OUTPUTS, _sha256, add_ot_to_bundle, append_ot, ot_model,
                             output_specs, run_numpy)
from uniter_testing import REPO, make_model, make_pairs, pad_batch, random_bundle_kwargs, record, small_config
from uniter_testing import run_bundle_graph as run_graph

torch.set_num_threads(1)

TOL = 1e-5
FIXTURE = os.path.join(REPO, "testdata", "bundles", "tiny-random")
# Ops the CUDA provider implements for the types used (float32, int64 indices): the appended
# nodes use no other.
CUDA_OPS = {"Mul", "Add", "Sub", "Div", "Max", "Sqrt", "Exp", "MatMul", "Transpose", "Cast",
            "CumSum", "GatherElements", "Unsqueeze", "Concat", "ReduceSum", "Identity"}


def reference(hidden, tm, im):
    """ot.py's IPOT in float64 on hidden [B, T+N, H] with masks [B, T], [B, N] (1 = real):
    (distance [B], plan tokens × regions [B, T, N])."""
    T = tm.shape[1]
    h = torch.as_tensor(hidden, dtype=torch.float64)
    d, plan = optimal_transport_dist(h[:, :T], h[:, T:], torch.as_tensor(tm) == 0,
                                     torch.as_tensor(im) == 0)
    return d.numpy(), plan.transpose(1, 2).numpy()


def check_pairs(dist, plan, hidden, tm, im, what):
    """Each pair against the reference run on that pair alone, unpadded; padding has no mass."""
    T = tm.shape[1]
    worst_d = worst_p = 0.0
    for b in range(len(tm)):
        m, n = int(tm[b].sum()), int(im[b].sum())
        rows = np.concatenate([np.flatnonzero(tm[b]), T + np.flatnonzero(im[b])])
        d1, p1 = reference(hidden[b:b + 1, rows], np.ones((1, m), np.int64), np.ones((1, n), np.int64))
        tok, reg = np.flatnonzero(tm[b]), np.flatnonzero(im[b])
        worst_d = max(worst_d, abs(float(dist[b]) - d1[0]))
        worst_p = max(worst_p, float(np.abs(plan[b][np.ix_(tok, reg)] - p1[0]).max()))
        pad = np.ones(plan[b].shape, bool)
        pad[np.ix_(tok, reg)] = False
        assert not np.any(plan[b][pad]), f"{what}: pair {b} has mass on padding"
    record(what, "ot_distance", worst_d)
    record(what, "ot_plan", worst_p)
    assert worst_d <= TOL, f"{what}: distance differs by {worst_d:.2e}"
    assert worst_p <= TOL, f"{what}: plan differs by {worst_p:.2e}"
    return worst_d, worst_p


def padded_hidden(rng, lens, T, N, H, clusters=6, spread=0.4):
    """Hidden states with structure (clusters of directions, varied norms, so that costs spread
    over [0, 2] and plans are peaked), junk at padded positions, and the masks."""
    B = len(lens)
    centers = rng.standard_normal((clusters, H))
    x = centers[rng.integers(0, clusters, (B, T + N))] + spread * rng.standard_normal((B, T + N, H))
    x *= rng.uniform(0.5, 20, (B, T + N, 1))
    tm, im = np.zeros((B, T), np.int64), np.zeros((B, N), np.int64)
    for b, (m, n) in enumerate(lens):
        tm[b, :m], im[b, :n] = 1, 1
    x[:, :T][tm == 0] = 1e3 * rng.standard_normal((int((tm == 0).sum()), H))  # junk on padding
    x[:, T:][im == 0] = 0.0
    return x.astype(np.float32), tm, im


@pytest.mark.parametrize("H", [32, 768])
def test_graph_matches_ipot_per_pair(H):
    rng = np.random.default_rng(H)
    T, N = 12, 20
    lens = [(12, 20), (3, 5), (7, 20), (12, 1), (1, 9), (5, 13)]
    hidden, tm, im = padded_hidden(rng, lens, T, N, H)
    dist, plan = run_numpy(ot_model(), {"hidden": hidden, "text_mask": tm, "img_mask": im})
    assert dist.dtype == np.float32 and dist.shape == (len(lens),)
    assert plan.dtype == np.float32 and plan.shape == (len(lens), T, N)
    check_pairs(dist, plan, hidden, tm, im, f"IPOT graph (numpy) vs ot.py, H={H}")
    # and against the batched reference on the padded batch
    d_ref, p_ref = reference(hidden, tm, im)
    assert np.abs(dist - d_ref).max() <= TOL and np.abs(plan - p_ref).max() <= TOL


def test_graph_matches_ipot_at_uniter_sizes():
    """UNITER-base hidden size, text up to 60 tokens and 100 regions."""
    rng = np.random.default_rng(5)
    hidden, tm, im = padded_hidden(rng, [(60, 100), (22, 36), (9, 71)], 60, 100, 768, clusters=10)
    dist, plan = run_numpy(ot_model(), {"hidden": hidden, "text_mask": tm, "img_mask": im})
    check_pairs(dist, plan, hidden, tm, im, "IPOT graph (numpy) vs ot.py, 60x100")


def test_other_settings_follow_ipot():
    """beta, iterations and inner iterations are the graph's parameters (the service uses only
    UNITER's 0.5 / 50 / 1)."""
    rng = np.random.default_rng(3)
    hidden, tm, im = padded_hidden(rng, [(6, 8), (4, 3)], 6, 8, 16)
    beta, iters, k = 0.3, 7, 3
    dist, plan = run_numpy(ot_model(beta=beta, iterations=iters, inner_iterations=k),
                           {"hidden": hidden, "text_mask": tm, "img_mask": im})
    h = torch.as_tensor(hidden, dtype=torch.float64)
    d, p = optimal_transport_dist(h[:, :6], h[:, 6:], torch.as_tensor(tm) == 0,
                                  torch.as_tensor(im) == 0, beta=beta, iterations=iters, k=k)
    assert np.abs(dist - d.numpy()).max() <= TOL
    assert np.abs(plan - p.transpose(1, 2).numpy()).max() <= TOL
    with pytest.raises(ValueError):
        ot_model(beta=0)
    with pytest.raises(ValueError):
        ot_model(iterations=0)


def test_settings_are_ot_py_s():
    import uniter.ot as ot
    import uniter.ot_graph as og
    assert (og.DEFAULT_BETA, og.DEFAULT_ITERATIONS, og.NORM_EPS) == \
        (ot.DEFAULT_BETA, ot.DEFAULT_ITERATIONS, ot.NORM_EPS)


def test_graph_is_cuda_ready():
    """No shape arithmetic, no Loop, only ops the CUDA provider has; float32 throughout."""
    m = ot_model()
    ops = {n.op_type for n in m.graph.node}
    assert ops <= CUDA_OPS, f"ops outside the CUDA set: {ops - CUDA_OPS}"
    assert "Shape" not in ops and "Loop" not in ops
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    floats = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    assert onnx.TensorProto.DOUBLE not in floats.values()
    # 9 nodes per iteration, unrolled
    assert 9 * 50 <= len(m.graph.node) <= 9 * 50 + 60


@pytest.fixture(scope="module")
def ot_bundle(tmp_path_factory):
    """A random small model exported with ot_in_graph (and a rank head, so that the encoder has
    more than one head output before the transport's)."""
    cfg = small_config(vocab_size=61, hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
                       intermediate_size=96, max_position_embeddings=40, img_dim=40, img_label_dim=7)
    model = make_model(cfg, seed=31, with_rank=True)
    d = tmp_path_factory.mktemp("ot")
    out = d / "bundle"
    manifest = write_bundle(model, str(out), **random_bundle_kwargs(cfg, d, "test-ot"),
                            provenance={"created_by": "models/tests/test_ot_graph.py"}, ot_in_graph=True)
    return {"model": model, "cfg": cfg, "dir": str(out), "manifest": manifest}


LENS = ([9, 4, 6, 2], [2, 6, 5, 6])  # text lengths, region counts: every pair padded differently


def _batch(b):
    return pad_batch(make_pairs(b["cfg"], *LENS, seed=4), b["cfg"])


def test_exported_encoder_declares_the_transport(ot_bundle):
    m = ot_bundle["manifest"]
    assert m["provenance"]["ot_in_graph"] == {
        "beta": 0.5, "iterations": 50, "inner_iterations": 1, "norm_eps": 1e-5, "dtype": "float32",
        "outputs": list(OT_OUTPUTS), "graphs": ["encoder", "encoder_attention"]}
    for role in ("encoder", "encoder_attention"):
        spec = m["graphs"][role]
        names = [o["name"] for o in spec["outputs"]]
        want = ["pooled", "hidden", "itm_logits", "rank_logits", "ot_distance", "ot_plan"]
        assert names == want + (["attention"] if role == "encoder_attention" else [])
        g = onnx.load(os.path.join(ot_bundle["dir"], spec["file"]))
        assert [o.name for o in g.graph.output] == names
        assert [o for o in spec["outputs"] if o["name"] in OT_OUTPUTS] == output_specs()
        assert not [n for n in g.graph.node if n.op_type == "Shape"]
    for role in ("mlm_head", "mrc_head"):
        assert not any(o["name"] in OT_OUTPUTS for o in m["graphs"][role]["outputs"])


def test_exported_transport_matches_ipot(ot_bundle):
    """The appended nodes of the exported encoder, on PyTorch's hidden states of a padded batch,
    against ot.py per pair."""
    model = ot_bundle["model"]
    batch = _batch(ot_bundle)
    with torch.no_grad():
        hidden, _, _ = model.uniter(*batch)
    g = onnx.load(os.path.join(ot_bundle["dir"], "encoder.onnx"))
    feeds = {"hidden": hidden.numpy(), "text_mask": batch[1].numpy(), "img_mask": batch[4].numpy()}
    dist, plan = run_numpy(g, feeds)
    check_pairs(dist, plan, hidden.numpy(), batch[1].numpy(), batch[4].numpy(),
                "exported encoder's IPOT (numpy) vs ot.py")


def test_exported_transport_through_onnxruntime(ot_bundle, uniter_bin, tmp_path):
    """The whole exported encoder through ONNX Runtime (`uniter run-graph`): its ot_distance and
    ot_plan against ot.py on the graph's own hidden output, per pair."""
    ids, tm, feat, loc, im = _batch(ot_bundle)
    feeds = {"input_ids": ids.numpy(), "text_mask": tm.numpy(), "img_feat": feat.numpy(),
             "img_loc": loc.numpy(), "img_mask": im.numpy()}
    for role in ("encoder", "encoder_attention"):
        got = run_graph(uniter_bin, ot_bundle["dir"], role, feeds, str(tmp_path))
        check_pairs(got["ot_distance"], got["ot_plan"], got["hidden"], tm.numpy(), im.numpy(),
                    f"ONNX Runtime {role}'s IPOT vs ot.py")


def test_ot_graph_cli_on_a_bundle(tmp_path):
    """python3 -m uniter.ot_graph: a copy of the fixture with the transport, checksums updated;
    the source untouched; a second append refused."""
    before = open(os.path.join(FIXTURE, "manifest.json")).read()
    dst = tmp_path / "tiny-ot"
    m = add_ot_to_bundle(FIXTURE, str(dst))
    assert open(os.path.join(FIXTURE, "manifest.json")).read() == before
    assert json.load(open(dst / "manifest.json")) == m
    for role in ("encoder", "encoder_attention"):
        assert m["graphs"][role]["sha256"] == _sha256(str(dst / m["graphs"][role]["file"]))
        names = [o["name"] for o in m["graphs"][role]["outputs"]]
        tail = list(OT_OUTPUTS) + (["attention"] if role == "encoder_attention" else [])
        assert names[-len(tail):] == tail
    with pytest.raises(ValueError):
        add_ot_to_bundle(FIXTURE, str(dst))
    with pytest.raises(ValueError):
        append_ot(onnx.load(str(dst / "encoder.onnx")))
    shutil.rmtree(dst)



def test_recover_reads_a_bundle_with_the_transport(tmp_path):
    """uniter.recover re-exports with the same transport nodes, so their constants match."""
    from uniter.recover import recover
    add_ot_to_bundle(FIXTURE, str(tmp_path / "b"))
    model, _ = recover(str(tmp_path / "b"))
    assert model.config.hidden_size == 32
