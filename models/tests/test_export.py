"""ONNX export (models/uniter/export.py) vs PyTorch, run through ONNX Runtime by the Go binary.

There is no onnxruntime for Python here: `$UNITER_BIN run-graph` runs one bundle graph on raw
tensors (cmd/uniter/cli.go). `make test` / `make test-py` set UNITER_BIN and UNITER_ORT_LIBRARY.
By hand:
    cd /work/main && go build -o bin/uniter ./cmd/uniter
    cd models && UNITER_BIN=$PWD/../bin/uniter \
        UNITER_ORT_LIBRARY=$PWD/../.cache/onnxruntime/lib/libonnxruntime.so \
        /usr/bin/python3 -m pytest -q tests/test_export.py
The manifest and graph-structure tests need only the onnx package and always run.
"""
import hashlib
import json
import os
import shutil
import string
import subprocess

import numpy as np
import onnx
import pytest
import torch

from uniter_testing import REPO, make_model, make_pairs, pad_batch, record, small_config
from uniter_testing import run_bundle_graph as run_graph
from uniter.export import write_bundle
from uniter.recover import recover

torch.set_num_threads(1)

ATOL = 1e-4
MIN_COS = 0.99999
GRAPHS = ["encoder", "encoder_attention", "mlm_head", "mrc_head"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Two configurations unlike the fixture (hidden 32, 2 layers, img 64, 11 labels, no rank).
CONFIGS = {
    "h48": dict(cfg=dict(vocab_size=61, hidden_size=48, num_hidden_layers=3, num_attention_heads=6,
                         intermediate_size=96, max_position_embeddings=40, img_dim=40,
                         img_label_dim=7), with_rank=False, seed=21),
    "h64-rank": dict(cfg=dict(vocab_size=83, hidden_size=64, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=128,
                              max_position_embeddings=32, img_dim=24, img_label_dim=5),
                     with_rank=True, seed=22),
}
# (text lengths, region counts) per batch: none equals the export example's 5 text / 3 regions
# or its batch of 2, so the dynamic axes are exercised.
BATCHES = [([7], [4]), ([9, 4, 6], [2, 6, 5])]

ELEM = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


def _vocab(n):
    words = SPECIALS + list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase]
    words += [f"w{i}" for i in range(max(0, n - len(words)))]
    return words[:n]


def _labels(n):
    return ["__background__"] + [f"class{i}" for i in range(1, n)]


def _write_vocab(path, n):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(_vocab(n)) + "\n")
    return str(path)


def _export(tmp_path_factory, key):
    spec = CONFIGS[key]
    cfg = small_config(**spec["cfg"])
    model = make_model(cfg, seed=spec["seed"], with_rank=spec["with_rank"], std=0.1)
    d = tmp_path_factory.mktemp(key)
    vocab = _write_vocab(d / "vocab-src.txt", cfg.vocab_size)
    out = d / "bundle"
    manifest = write_bundle(model, str(out), name=f"test-{key}", vocab_path=vocab,
                            region_labels=_labels(cfg.img_label_dim), lowercase=True,
                            max_text_length=cfg.max_position_embeddings, random_weights=True,
                            provenance={"created_by": "models/tests/test_export.py"})
    return {"model": model, "cfg": cfg, "dir": str(out), "manifest": manifest, "vocab": vocab}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def bundle(request, tmp_path_factory):
    return _export(tmp_path_factory, request.param)


def _torch_outputs(model, batch, T):
    with torch.no_grad():
        hidden, pooled, attn = model.uniter(*batch)
        out = {"itm_logits": model.itm_output(pooled), "pooled": pooled, "hidden": hidden,
               "attention": torch.stack(attn, dim=1),
               "mlm_logits": model.cls(hidden[:, :T]),
               "mrc_logits": model.region_classifier(hidden[:, T:])}
        if model.rank_output is not None:
            out["rank_logits"] = model.rank_output(pooled)
    return {k: v.double().numpy() for k, v in out.items()}


def _compare(name, got, want, tag, graph):
    assert got.shape == want.shape, f"{tag} {name}: shape {got.shape} vs {want.shape}"
    diff = float(np.abs(got - want).max())
    record(f"ONNX Runtime vs PyTorch, {graph}", name, diff)
    assert diff <= ATOL, f"{tag} {name}: max abs diff {diff:.3e}"
    return diff


@pytest.mark.parametrize("lens", BATCHES, ids=["batch1", "batch3"])
def test_onnx_matches_pytorch(bundle, uniter_bin, lens, tmp_path):
    model, cfg = bundle["model"], bundle["cfg"]
    text_lens, regions = lens
    pairs = make_pairs(cfg, text_lens, regions, seed=len(text_lens))
    batch = pad_batch(pairs, cfg)
    T, N = batch[0].shape[1], batch[2].shape[1]
    want = _torch_outputs(model, batch, T)
    tag = f"{bundle['manifest']['name']}/B{len(text_lens)}"
    enc_in = {"input_ids": batch[0].numpy(), "text_mask": batch[1].numpy(),
              "img_feat": batch[2].numpy(), "img_loc": batch[3].numpy(),
              "img_mask": batch[4].numpy()}

    enc_names = ["itm_logits", "pooled", "hidden"]
    if model.rank_output is not None:
        enc_names.append("rank_logits")
    got = run_graph(uniter_bin, bundle["dir"], "encoder", enc_in, str(tmp_path))
    assert sorted(got) == sorted(enc_names)
    for name in enc_names:
        _compare(name, got[name], want[name], tag, "encoder")
    h_ort = got["hidden"].reshape(-1, cfg.hidden_size)
    h_pt = want["hidden"].reshape(-1, cfg.hidden_size)
    cos = (h_ort * h_pt).sum(1) / (np.linalg.norm(h_ort, axis=1) * np.linalg.norm(h_pt, axis=1))
    record("ONNX Runtime vs PyTorch, encoder", "hidden min cosine", float(cos.min()), worst=min)
    assert cos.min() >= MIN_COS

    got = run_graph(uniter_bin, bundle["dir"], "encoder_attention", enc_in, str(tmp_path))
    assert sorted(got) == sorted(enc_names + ["attention"])
    assert got["attention"].shape == (len(pairs), cfg.num_hidden_layers,
                                      cfg.num_attention_heads, T + N, T + N)
    for name in enc_names + ["attention"]:
        _compare(name, got[name], want[name], tag, "encoder_attention")

    # Heads run on the PyTorch hidden states, so they are compared on their own.
    hid = want["hidden"].astype(np.float32)
    got = run_graph(uniter_bin, bundle["dir"], "mlm_head", {"hidden": hid[:, :T]}, str(tmp_path))
    _compare("mlm_logits", got["mlm_logits"], want["mlm_logits"], tag, "mlm_head")
    got = run_graph(uniter_bin, bundle["dir"], "mrc_head", {"hidden": hid[:, T:]}, str(tmp_path))
    _compare("mrc_logits", got["mrc_logits"], want["mrc_logits"], tag, "mrc_head")

    # Not vacuous: the pairs of a batch get different scores.
    if len(pairs) > 1:
        assert np.abs(want["itm_logits"][0] - want["itm_logits"][1]).max() > 1e-3


# ---------------------------------------------------------------------------- manifest and graphs

def _dims(t):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in t.type.tensor_type.shape.dim]


def test_manifest_matches_onnx_graphs(bundle):
    m, d, model = bundle["manifest"], bundle["dir"], bundle["model"]
    with open(os.path.join(d, "manifest.json")) as f:
        on_disk = json.load(f)
    assert on_disk == m
    assert sorted(m["graphs"]) == sorted(GRAPHS)
    assert m["heads"]["rank"] == (model.rank_output is not None)
    assert m["model"]["vocab_size"] == bundle["cfg"].vocab_size
    assert m["model"]["label_dim"] == bundle["cfg"].img_label_dim
    for role, g in m["graphs"].items():
        path = os.path.join(d, g["file"])
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == g["sha256"], role
        proto = onnx.load(path)
        onnx.checker.check_model(proto)
        inits = {i.name for i in proto.graph.initializer}
        for kind, declared, actual in (("inputs", g["inputs"], proto.graph.input),
                                       ("outputs", g["outputs"], proto.graph.output)):
            actual = [t for t in actual if t.name not in inits]
            assert [t["name"] for t in declared] == [t.name for t in actual], (role, kind)
            for dec, act in zip(declared, actual):
                where = f"{role} {kind} {dec['name']}"
                assert ELEM.get(act.type.tensor_type.elem_type) == dec["dtype"], where
                dims = _dims(act)
                assert len(dims) == len(dec["shape"]), where
                for want, got in zip(dec["shape"], dims):
                    if isinstance(want, str):
                        assert isinstance(got, str) and got, f"{where}: {want} is fixed in ONNX"
                        assert got == want, f"{where}: symbolic dim {got!r}, manifest {want!r}"
                    else:
                        assert got == want, f"{where}: dim {got!r}, manifest {want}"
    enc = {o["name"] for o in m["graphs"]["encoder"]["outputs"]}
    want = {"itm_logits", "pooled", "hidden"}
    if model.rank_output is not None:
        want.add("rank_logits")
    assert enc == want


def test_bundle_files(bundle):
    d, cfg = bundle["dir"], bundle["cfg"]
    with open(os.path.join(d, "vocab.txt"), encoding="utf-8") as f, open(bundle["vocab"]) as g:
        assert f.read() == g.read()
    with open(os.path.join(d, "region_labels.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == _labels(cfg.img_label_dim)


def test_graphs_use_exact_gelu_and_no_dropout(bundle):
    for role in GRAPHS:
        ops = {n.op_type for n in onnx.load(os.path.join(bundle["dir"], f"{role}.onnx")).graph.node}
        assert "Erf" in ops, f"{role}: no Erf node, GELU is not the exact erf form"
        assert "Dropout" not in ops, f"{role}: a Dropout node survived export"
        assert "Tanh" not in ops or role.startswith("encoder"), role  # tanh only in the pooler


def test_encoder_graphs_compute_no_shapes(bundle):
    """No shape computation (the CUDA provider leaves those nodes on the CPU, and strict placement
    refuses the graph): every Reshape has a constant target; test_onnx_matches_pytorch runs these
    graphs at batch and sequence sizes other than the export example's."""
    for role in ("encoder", "encoder_attention"):
        g = onnx.load(os.path.join(bundle["dir"], f"{role}.onnx")).graph
        ops = [n.op_type for n in g.node]
        for op in ("Shape", "ConstantOfShape", "Range", "Size"):
            assert op not in ops, f"{role}: {ops.count(op)} {op} nodes"
        constants = {o for n in g.node if n.op_type == "Constant" for o in n.output}
        constants |= {i.name for i in g.initializer}
        reshapes = [n for n in g.node if n.op_type == "Reshape"]
        assert reshapes, role
        for n in reshapes:
            assert n.input[1] in constants, f"{role}: {n.name} computes its target shape"


def test_write_bundle_refuses_inconsistent_inputs(tmp_path):
    cfg = small_config(vocab_size=40, img_label_dim=6)
    model = make_model(cfg, seed=30)
    kw = dict(name="bad", lowercase=True, max_text_length=20, random_weights=True, provenance={})
    bad_vocab = _write_vocab(tmp_path / "vocab39.txt", 39)
    with pytest.raises(ValueError, match="vocab"):
        write_bundle(model, str(tmp_path / "b1"), vocab_path=bad_vocab,
                     region_labels=_labels(6), **kw)
    good_vocab = _write_vocab(tmp_path / "vocab40.txt", 40)
    for n in (5, 7):
        with pytest.raises(ValueError, match="label"):
            write_bundle(model, str(tmp_path / f"b-labels{n}"), vocab_path=good_vocab,
                         region_labels=_labels(n), **kw)
    with pytest.raises(ValueError, match="max_text_length"):
        write_bundle(model, str(tmp_path / "b3"), vocab_path=good_vocab, region_labels=_labels(6),
                     **dict(kw, max_text_length=cfg.max_position_embeddings + 1))
    # Nothing was exported for a refused bundle.
    for sub in ("b1", "b-labels5", "b-labels7", "b3"):
        assert not (tmp_path / sub / "manifest.json").exists()


# The state-dict keys no graph holds: the MRFR head's own layers (its output weight is tied to
# the region feature embedding) and the [MASK] region embedding.
NOT_IN_GRAPHS = {"uniter.img_embeddings.mask_embedding.weight", "feat_regress.bias",
                 "feat_regress.net.0.weight", "feat_regress.net.0.bias",
                 "feat_regress.net.2.weight", "feat_regress.net.2.bias"}


def _assert_recovered(bundle_dir, original):
    model, fresh = recover(bundle_dir)
    assert set(fresh) == NOT_IN_GRAPHS
    want = original.state_dict()
    assert model.state_dict().keys() == want.keys()
    for k, v in model.state_dict().items():
        if k not in fresh:
            assert torch.equal(v, want[k]), f"{k} not recovered exactly"


def test_recover_gives_back_every_weight_the_graphs_hold(bundle):
    _assert_recovered(bundle["dir"], bundle["model"])


def test_recover_follows_initializers_the_exporter_merged(tmp_path):
    # Two parameters of equal value are exported as one initializer and an Identity of it (the
    # committed default bundle has such a pair): names alone would lose one of them.
    cfg = small_config(vocab_size=40, img_label_dim=6)
    model = make_model(cfg, seed=31)
    emb = model.uniter.img_embeddings
    with torch.no_grad():
        emb.pos_layer_norm.bias.copy_(emb.img_layer_norm.bias)
    out = tmp_path / "bundle"
    write_bundle(model, str(out), name="merged", vocab_path=_write_vocab(tmp_path / "vocab.txt", 40),
                 region_labels=_labels(6), lowercase=True, max_text_length=20, random_weights=True,
                 provenance={})
    ops = [n.op_type for n in onnx.load(str(out / "encoder.onnx")).graph.node]
    assert "Identity" in ops, "the exporter did not merge the equal initializers: the test tests nothing"
    _assert_recovered(str(out), model)


def test_recover_refuses_a_bundle_without_every_graph(bundle, tmp_path):
    d = tmp_path / "no-mlm"
    shutil.copytree(bundle["dir"], d)
    m = json.loads((d / "manifest.json").read_text())
    del m["graphs"]["mlm_head"]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="mlm_head"):
        recover(str(d))
