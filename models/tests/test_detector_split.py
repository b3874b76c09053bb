"""The split detector export (models/uniter/detector_split.py): the backbone and heads graphs
with the proposal stage (and, for bottom-up-attention, the RoI max pooling) in Go between them.

Everything is checked against the PyTorch models themselves: the backbone wrapper's outputs run
through ``propose`` (the numpy reference of the Go stage) give ``model.proposals()``, the heads
wrappers on those proposals give ``model.forward()``'s scores, the numpy ``roi_pool`` gives
torchvision's, the exported graphs pass the CUDA placement check (and the single graph does
not), and the manifests written by ``write_detector(split=True)``, ``convert_butd(split=True)``,
``butd_export fixture --split``'s twin and ``python3 -m uniter.detector_split fixture`` carry the
section docs/detector-contract.md describes. ``python3 -m uniter.detector_split bundle`` recovers
the Detector from a bundle's single graph (config and weights, proved exact by re-exporting) and
writes what the fixture command writes for the same weights; edited graphs, BatchNorm and
bottom-up-attention detectors, and a non-empty OUT are refused. Tiny models only (the full-size BUTD fixture is
tests/butd_test.go's). ONNX Runtime runs the graphs in the Go tests
(pipeline/detector_split_test.go); with UNITER_BIN set, test_onnxruntime_runs_split_graphs runs
them here too.
"""
import json
import math
import os
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torchvision.ops import roi_pool as tv_roi_pool

from uniter import butd_export, detector_recover as rec, detector_split as ds
from uniter.butd import BUTDConfig, BUTDDetector
from uniter.butd_export import convert_butd, export_butd, port_config_yaml
from uniter.detector import Detector, DetectorConfig
from uniter.detector_export import DETECTOR_OPSET, write_detector
from uniter.export import _sha256
from uniter.fixtures import detector as fixture
from uniter_testing import OTHER_DETECTOR, REPO, fixture_bundle_without_detector, run_bundle_graph, small_butd_config

BUNDLE = os.path.join(REPO, "testdata", "bundles", "tiny-random")
GOLDEN = os.path.join(REPO, "testdata", "golden", "detector-tiny-random.json")
# Noise images (no flat areas, so no objectness ties): (H, W, seed). 128×160 has more anchors
# than the fixture's pre-NMS top-n (600), the others fewer.
IMAGES = [(100, 140, 0), (128, 160, 1), (57, 131, 2), (40, 33, 3)]
OTHER = OTHER_DETECTOR
pytestmark = pytest.mark.usefixtures("two_torch_threads")


def noise(h, w, seed):
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 60


butd_config = small_butd_config


def _golden_seed():
    with open(GOLDEN) as f:
        return json.load(f)["seed"]


@pytest.fixture(scope="module")
def fixture_model():
    return fixture.make_detector(_golden_seed())


@pytest.fixture(scope="module")
def other_model():
    torch.manual_seed(5)
    m = Detector(DetectorConfig(**OTHER)).init_weights(5)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for mod in m.backbone:
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.weight.copy_(1 + 0.2 * torch.randn(mod.num_features, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.num_features, generator=g))
    return m.eval()


# BUTD variants: the port's defaults (offset 0, min_size 0); an anchor offset that is not a
# binary fraction of the stride, box weights other than 1, deltas wide enough to hit the dw/dh
# clamp, and a min_size that drops proposals; a min_size that drops every proposal (P = 0).
BUTD_VARIANTS = {
    "plain": (dict(), {}),
    "offset-weights-min-size": (dict(anchor_offset=0.3, rpn_bbox_reg_weights=(2.0, 1.5, 1.0, 0.5),
                                     rpn_min_size=20.0, rpn_nms_thresh=0.6, post_nms_topk_test=50),
                                dict(delta_std=3.0)),
    "nothing-left": (dict(rpn_min_size=1000.0), {}),
}


@pytest.fixture(scope="module")
def butd_models():
    return {name: BUTDDetector(butd_config(**kw)).eval().init_random(5, **init)
            for name, (kw, init) in BUTD_VARIANTS.items()}


def _backbone(model, x):
    with torch.no_grad():
        return [t.numpy() for t in ds.DetectorBackbone(model).eval()(x)]


def _model_proposals(model, x):
    with torch.no_grad():
        return model.proposals(model.backbone(x), x).numpy()


# ---------------------------------------------------------------------- proposals in "Go"

@pytest.mark.parametrize("which", ["fixture", "other"])
@pytest.mark.parametrize("hws", IMAGES, ids=[f"{h}x{w}" for h, w, _ in IMAGES])
def test_propose_matches_detector(which, hws, fixture_model, other_model):
    model = fixture_model if which == "fixture" else other_model
    h, w, seed = hws
    x = noise(h, w, seed)
    feat, obj, deltas = _backbone(model, x)
    with torch.no_grad():
        np.testing.assert_array_equal(feat, model.backbone(x).numpy())
    spec = ds.proposal_spec(model)
    assert "min_size" not in spec
    got = ds.propose(spec, obj, deltas, h, w)
    want = _model_proposals(model, x)
    assert got.dtype == np.float32 and got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


@pytest.mark.parametrize("variant", sorted(BUTD_VARIANTS))
@pytest.mark.parametrize("hws", IMAGES[:3], ids=[f"{h}x{w}" for h, w, _ in IMAGES[:3]])
def test_propose_matches_butd(variant, hws, butd_models):
    model = butd_models[variant]
    h, w, seed = hws
    x = noise(h, w, seed)
    feat, obj, deltas = _backbone(model, x)
    spec = ds.proposal_spec(model)
    assert spec["min_size"] == model.config.rpn_min_size
    got = ds.propose(spec, obj, deltas, h, w)
    want = _model_proposals(model, x)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
    if variant == "nothing-left":
        assert len(got) == 0
    elif variant == "offset-weights-min-size":
        # The filter mattered: without it there are more boxes, and some would be too small.
        loose = ds.propose({k: v for k, v in spec.items() if k != "min_size"}, obj, deltas, h, w)
        assert len(loose) > len(got) or (np.minimum(loose[:, 2] - loose[:, 0],
                                                    loose[:, 3] - loose[:, 1]) <= 20).any()
        assert (np.minimum(got[:, 2] - got[:, 0], got[:, 3] - got[:, 1]) > 20).all()


def test_decode_clamp_is_exercised(butd_models):
    """The wide-delta variant hits the dw/dh clamp (so the clamp's handling is tested)."""
    model = butd_models["offset-weights-min-size"]
    _, _, deltas = _backbone(model, noise(100, 140, 0))
    spec = ds.proposal_spec(model)
    d = deltas.reshape(model.config.num_anchors, 4, -1)
    assert (d[:, 2] / spec["box_weights"][2] > spec["scale_clamp"]).any()


@pytest.mark.parametrize("which", ["fixture", "butd"])
def test_decode_matches_box_coders(which, fixture_model, butd_models):
    """propose's decoding against the models' own box coders (torchvision's BoxCoder,
    BUTDDetector.decode) on deltas far beyond the dw/dh clamp, with nothing clipped or
    suppressed (a huge image, nms_iou 1, every anchor kept)."""
    model = fixture_model if which == "fixture" else butd_models["offset-weights-min-size"]
    spec = ds.proposal_spec(model)
    A, fh, fw = len(spec["cell_anchors"]), 3, 4
    n = A * fh * fw
    g = torch.Generator().manual_seed(11)
    obj = torch.randn(1, A, fh, fw, generator=g)
    deltas = torch.randn(1, 4 * A, fh, fw, generator=g) * 3
    deltas[0, 2::4] += 3.0                      # many dw, dh above log(1000 / 16) = 4.14
    spec = dict(spec, pre_nms_top_n=n, post_nms_top_n=n, nms_iou=1.0)
    spec.pop("min_size", None)
    got = ds.propose(spec, obj.numpy(), deltas.numpy(), 10 ** 6, 10 ** 6)
    flat_obj = obj.permute(0, 2, 3, 1).reshape(-1)
    flat_d = deltas.reshape(A, 4, -1).permute(2, 0, 1).reshape(-1, 4)
    order = torch.argsort(-flat_obj)
    anchors = torch.from_numpy(ds.anchors_np(spec, fh, fw))
    with torch.no_grad():
        if which == "fixture":
            want = model.rpn.box_coder.decode_single(flat_d[order], anchors[order])
        else:
            want = model.decode(flat_d[order], anchors[order])
    want = torch.max(want, torch.zeros(())).numpy()
    assert (flat_d[:, 2:] / torch.tensor(spec["box_weights"][2:]) > spec["scale_clamp"]).any()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-3)


def test_anchors_bitwise(fixture_model, butd_models):
    """anchors_np (the Go formula) gives the models' own anchors bit for bit."""
    feat = torch.zeros(1, 1, 7, 11)
    np.testing.assert_array_equal(ds.anchors_np(ds.proposal_spec(fixture_model), 7, 11),
                                  fixture_model.anchors(feat).numpy())
    for model in butd_models.values():
        want = model.proposal_generator.anchor_generator.grid(feat).numpy()
        np.testing.assert_array_equal(ds.anchors_np(ds.proposal_spec(model), 7, 11), want)
    # 0.3 · 16 = 4.8 is not a float32: the offset product is rounded once, then added.
    spec = ds.proposal_spec(butd_models["offset-weights-min-size"])
    assert spec["anchor_offset"] == 0.3
    a = ds.anchors_np(spec, 1, 2)
    assert a[len(spec["cell_anchors"]), 0] == np.float32(16) + np.float32(4.8) + np.float32(spec["cell_anchors"][0][0])


def test_proposal_spec_fields(fixture_model, butd_models):
    spec = ds.proposal_spec(fixture_model)
    assert spec == {
        "stride": 16, "anchor_offset": 0.0,
        "cell_anchors": fixture_model.cell_anchors.tolist(),
        "box_weights": [1.0, 1.0, 1.0, 1.0], "scale_clamp": math.log(1000.0 / 16),
        "pre_nms_top_n": 600, "post_nms_top_n": 100, "nms_iou": 0.7}
    assert len(spec["cell_anchors"]) == 9
    b = ds.proposal_spec(butd_models["offset-weights-min-size"])
    cfg = butd_models["offset-weights-min-size"].config
    assert b["box_weights"] == [2.0, 1.5, 1.0, 0.5] and b["min_size"] == 20.0
    assert (b["pre_nms_top_n"], b["post_nms_top_n"], b["nms_iou"]) == (200, 50, 0.6)
    assert b["cell_anchors"] == butd_models["plain"].proposal_generator.anchor_generator.cell_anchors[0].tolist()
    assert len(b["cell_anchors"]) == cfg.num_anchors


def test_nms_f32_against_torchvision():
    from torchvision.ops import nms
    g = np.random.default_rng(0)
    xy = g.uniform(0, 100, (300, 2)).astype(np.float32)
    wh = g.uniform(0, 40, (300, 2)).astype(np.float32)
    wh[::17] = 0                                   # degenerate boxes: 0/0 IoUs
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = g.permutation(300).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    for thr in (0.3, 0.5, 0.7):
        mine = order[ds.nms_f32(boxes[order], thr)]
        tv = nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
        np.testing.assert_array_equal(mine, tv)


# ---------------------------------------------------------------------- heads

@pytest.mark.parametrize("which", ["fixture", "other"])
@pytest.mark.parametrize("hws", IMAGES[:2], ids=[f"{h}x{w}" for h, w, _ in IMAGES[:2]])
def test_roialign_heads_match_forward(which, hws, fixture_model, other_model):
    model = fixture_model if which == "fixture" else other_model
    h, w, seed = hws
    x = noise(h, w, seed)
    feat, _, _ = _backbone(model, x)
    boxes = _model_proposals(model, x)
    rois = np.concatenate([np.zeros((len(boxes), 1), np.float32), boxes], 1)
    with torch.no_grad():
        got = ds.RoIAlignHeads(model).eval()(torch.from_numpy(feat), torch.from_numpy(rois))
        want = model(x)
    np.testing.assert_array_equal(want[0].numpy(), boxes)
    assert len(got) == len(want) - 1 == (3 if model.attr_score is not None else 2)
    for name, g, wt in zip(["class_probs", "features", "attr_probs"], got, want[1:]):
        assert g.shape == wt.shape, name
        np.testing.assert_allclose(g.numpy(), wt.numpy(), rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("variant", ["plain", "offset-weights-min-size"])
@pytest.mark.parametrize("hws", IMAGES[:2], ids=[f"{h}x{w}" for h, w, _ in IMAGES[:2]])
def test_pooled_heads_match_forward(variant, hws, butd_models):
    model = butd_models[variant]
    s = model.config.pooler_resolution
    h, w, seed = hws
    x = noise(h, w, seed)
    feat, _, _ = _backbone(model, x)
    boxes = _model_proposals(model, x)
    rois = torch.from_numpy(np.concatenate([np.zeros((len(boxes), 1), np.float32), boxes], 1))
    heads = ds.PooledHeads(model).eval()
    with torch.no_grad():
        pooled = tv_roi_pool(torch.from_numpy(feat), rois, (s, s), 1.0 / 16)
        got = heads(pooled)
        want = model(x)
        # The Go stage's pooling (numpy reference) feeds the same heads to the same result.
        mine = heads(torch.from_numpy(ds.roi_pool(feat, boxes, s, 1.0 / 16)))
    assert len(got) == 3 and len(want) == 4
    for name, g, m, wt in zip(["class_probs", "features", "attr_probs"], got, mine, want[1:]):
        assert g.shape == wt.shape, name
        np.testing.assert_allclose(g.numpy(), wt.numpy(), rtol=0, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(m.numpy(), wt.numpy(), rtol=0, atol=1e-5, err_msg=name)


def test_roi_pool_matches_torchvision():
    g = np.random.default_rng(3)
    C, h, w = 5, 9, 13
    feat = g.normal(0, 1, (C, h, w)).astype(np.float32)   # negative values too
    boxes = [
        [0, 0, 16 * w, 16 * h],            # the whole map
        [10, 20, 10, 60],                  # zero width
        [30, 30, 30, 30],                  # a point
        [50, 40, 20, 10],                  # inverted
        [-80, -40, 30, 50],                # partly outside
        [300, 200, 400, 260],              # entirely outside (empty bins → 0)
        [-100, -100, -20, -30],            # entirely outside, negative
        [17, 9, 21, 14],                   # inside one cell
        [8, 8, 24, 40],                    # coordinates on .5 cells: round half away from zero
        [-8, -24, 7.99, 8],                # -0.5 and -1.5 cells, just under .5
        [3.2, 5.7, 150.3, 70.9],
    ]
    boxes += g.uniform(-40, 260, (40, 4)).tolist()
    small = g.uniform(0, 200, (20, 2))
    boxes += np.concatenate([small, small + g.uniform(0, 6, (20, 2))], 1).tolist()  # sub-cell
    boxes = np.asarray(boxes, np.float32)
    rois = torch.from_numpy(np.concatenate([np.zeros((len(boxes), 1), np.float32), boxes], 1))
    for size, scale in ((6, 1 / 16), (14, 1 / 16), (3, 1 / 8), (5, 0.3)):
        want = tv_roi_pool(torch.from_numpy(feat)[None], rois, (size, size), scale).numpy()
        got = ds.roi_pool(feat, boxes, size, scale)
        assert got.shape == (len(boxes), C, size, size)
        np.testing.assert_array_equal(got, want, err_msg=f"size {size}, scale {scale}")
    assert (ds.roi_pool(feat, boxes[5:6], 6, 1 / 16) == 0).all()


# ---------------------------------------------------------------------- graphs

def _graph_io(path):
    m = onnx.load(path)
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    return m, [(i.name, dims(i)) for i in m.graph.input], [(o.name, dims(o)) for o in m.graph.output]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, fixture_model, other_model, butd_models):
    out = {}
    for name, model in (("fixture", fixture_model), ("other", other_model),
                        ("butd", butd_models["offset-weights-min-size"])):
        d = str(tmp_path_factory.mktemp(name))
        out[name] = (model, d, ds.export_split(model, d))
    return out


@pytest.mark.parametrize("which", ["fixture", "other", "butd"])
def test_split_graphs_io(which, exported):
    model, d, res = exported[which]
    dims = ds._dims(model)
    C, A = dims["channels"], dims["anchors"]
    fm = ["feature_height", "feature_width"]
    assert sorted(res["graphs"]) == ["detector_backbone", "detector_heads"]
    m, ins, outs = _graph_io(os.path.join(d, "detector_backbone.onnx"))
    assert ins == [("image", [1, 3, "height", "width"])]
    assert outs == [("feature_map", [1, C] + fm), ("objectness", [1, A] + fm),
                    ("anchor_deltas", [1, 4 * A] + fm)]
    m, ins, outs = _graph_io(os.path.join(d, "detector_heads.onnx"))
    if which == "butd":
        s = model.config.pooler_resolution
        assert ins == [("pooled", ["proposals", C, s, s])]
    else:
        assert ins == [("feature_map", [1, C] + fm), ("rois", ["proposals", 5])]
    want = [("class_probs", ["proposals", dims["classes"]]),
            ("features", ["proposals", dims["feature_dim"]])]
    if dims["attributes"]:
        want.append(("attr_probs", ["proposals", dims["attributes"]]))
    assert outs == want
    # The single graph's output names (minus boxes), as the manifest declares them.
    single = [o.name for o in onnx.load(os.path.join(d, "detector_heads.onnx")).graph.output]
    assert single == [n for n in model.output_names if n != "boxes"]
    for name, g in res["graphs"].items():
        path = os.path.join(d, g["file"])
        assert g["file"] == name + ".onnx" and g["sha256"] == _sha256(path)
        mp, ins, outs = _graph_io(path)
        assert [(i["name"], i["shape"]) for i in g["inputs"]] == ins
        assert [(o["name"], o["shape"]) for o in g["outputs"]] == outs
        assert all(i["dtype"] == "float32" for i in g["inputs"] + g["outputs"])
        assert [o.version for o in mp.opset_import if o.domain in ("", "ai.onnx")] == [DETECTOR_OPSET]
        onnx.checker.check_model(mp)
    sec = res["proposals"]
    assert {k: sec[k] for k in ("heads_graph", "feature_map", "objectness", "anchor_deltas")} == {
        "heads_graph": "detector_heads", "feature_map": "feature_map", "objectness": "objectness",
        "anchor_deltas": "anchor_deltas"}
    spec = ds.proposal_spec(model)
    assert {k: sec[k] for k in spec} == spec
    if which == "butd":
        assert "rois" not in sec and sec["roi_pool"] == {
            "input": "pooled", "output_size": model.config.pooler_resolution, "spatial_scale": 0.0625}
    else:
        assert "roi_pool" not in sec and sec["rois"] == "rois"


@pytest.mark.parametrize("which", ["fixture", "other", "butd"])
def test_split_graphs_pass_cuda_check(which, exported):
    _, d, res = exported[which]
    for g in res["graphs"].values():
        assert ds.cuda_problems(onnx.load(os.path.join(d, g["file"]))) == [], g["file"]


def test_single_graphs_fail_cuda_check(tmp_path, butd_models):
    problems = ds.cuda_problems(onnx.load(os.path.join(BUNDLE, "detector.onnx")))
    text = "\n".join(problems)
    for op in ("TopK", "NonMaxSuppression", "Shape", "Range"):
        assert f"({op})" in text, op
    assert "input 1 (shape)" in text        # a Reshape whose shape is computed in the graph
    path = str(tmp_path / "butd.onnx")
    export_butd(butd_models["plain"], path)
    text = "\n".join(ds.cuda_problems(path))
    assert "(MaxRoiPool): MaxRoiPool has no CUDA kernel" in text and "(NonMaxSuppression)" in text


def test_cuda_problems_rules():
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])

    def model(nodes, inits=()):
        return helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=list(inits)))

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, 2])
    ok = model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")], [shape])
    assert ds.cuda_problems(ok) == []
    const = model([helper.make_node("Constant", [], ["s"], value=shape),
                   helper.make_node("Reshape", ["x", "s"], ["y"], name="r")])
    assert ds.cuda_problems(const) == []
    computed = model([helper.make_node("Shape", ["x"], ["s0"], name="sh"),
                      helper.make_node("Reverse", ["s0"], ["s"], name="rev"),
                      helper.make_node("Reshape", ["x", "s"], ["y"], name="r")])
    probs = ds.cuda_problems(computed)
    assert len(probs) == 3
    assert probs[0].startswith("node sh (Shape): a shape computation")
    assert probs[1].startswith("node rev (Reverse): Reverse is not on the list")
    assert probs[2].startswith("node r (Reshape): input 1 (shape) 's' is computed in the graph")
    clip = model([helper.make_node("Relu", ["x"], ["m"], name="relu"),
                  helper.make_node("Clip", ["x", "m"], ["c"], name="clip"),
                  helper.make_node("Transpose", ["c"], ["y"], perm=[1, 0], name="t")])
    assert [p.split(":")[0] for p in ds.cuda_problems(clip)] == ["node clip (Clip)"]
    custom = model([helper.make_node("Foo", ["x"], ["y"], domain="com.example", name="f")])
    assert "domain 'com.example'" in ds.cuda_problems(custom)[0]


# ---------------------------------------------------------------------- manifests

_bundle_copy = fixture_bundle_without_detector


def _check_split_manifest(bundle_dir, manifest, model):
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        assert json.load(f) == manifest
    graphs = manifest["graphs"]
    assert "detector" not in graphs and not os.path.exists(os.path.join(bundle_dir, "detector.onnx"))
    for name in ("detector_backbone", "detector_heads"):
        g = graphs[name]
        assert g["file"] == name + ".onnx"
        assert g["sha256"] == _sha256(os.path.join(bundle_dir, g["file"]))
    sec = manifest["detector"]
    assert list(manifest).index("detector") == list(manifest).index("graphs") + 1
    assert sec["graph"] == "detector_backbone" and sec["input"] == "image"
    want_out = {"class_probs": "class_probs", "features": "features"}
    if model.output_names[-1] == "attr_probs":
        want_out["attribute_probs"] = "attr_probs"
    assert sec["outputs"] == want_out
    keys = list(sec)
    assert keys.index("proposals") == keys.index("outputs") + 1
    p = sec["proposals"]
    assert p == {"heads_graph": "detector_heads", "feature_map": "feature_map",
                 "objectness": "objectness", "anchor_deltas": "anchor_deltas",
                 **ds.proposal_spec(model), **({"roi_pool": p.get("roi_pool")} if "roi_pool" in p
                                               else {"rois": "rois"})}
    heads_in = {i["name"] for i in graphs["detector_heads"]["inputs"]}
    assert heads_in == ({p["roi_pool"]["input"]} if "roi_pool" in p else {"feature_map", "rois"})
    for role, name in want_out.items():
        assert name in {o["name"] for o in graphs["detector_heads"]["outputs"]}, role
    return sec


def test_write_detector_split(tmp_path, fixture_model):
    d = _bundle_copy(tmp_path / "bundle")
    with open(os.path.join(d, "region_labels.txt")) as f:
        labels = f.read().splitlines()
    kw = dict(preprocess=fixture.PREPROCESS, selection=fixture.SELECTION, labels=labels,
              attributes=fixture.ATTRIBUTES)
    single = write_detector(fixture_model, d, **kw)
    assert "detector" in single["graphs"] and os.path.exists(os.path.join(d, "detector.onnx"))
    manifest = write_detector(fixture_model, d, split=True, **kw)
    sec = _check_split_manifest(d, manifest, fixture_model)
    assert "min_size" not in sec["proposals"] and sec["proposals"]["rois"] == "rois"
    # Everything else of the section is what the single-graph export wrote.
    rest = lambda s: {k: v for k, v in s.items() if k not in ("graph", "outputs", "proposals")}  # noqa: E731
    assert rest(sec) == rest(single["detector"])
    assert {k: v for k, v in manifest.items() if k not in ("graphs", "detector")} == \
        {k: v for k, v in single.items() if k not in ("graphs", "detector")}
    # And back: a single-graph write removes the split export.
    again = write_detector(fixture_model, d, **kw)
    assert again == single
    assert not any(os.path.exists(os.path.join(d, n + ".onnx")) for n in ds.SPLIT_GRAPHS)


def test_fixture_command(tmp_path, fixture_model):
    out = str(tmp_path / "twin")
    ds.main(["fixture", "--bundle", BUNDLE, "--out", out])
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(BUNDLE, "manifest.json")) as f:
        src = json.load(f)
    sec = _check_split_manifest(out, manifest, fixture_model)
    # The rest of the detector section, the other graphs and the manifest as in the bundle.
    keep = lambda s: {k: v for k, v in s.items() if k not in ("graph", "outputs", "proposals")}  # noqa: E731
    assert keep(sec) == keep(src["detector"])
    assert {k: v for k, v in manifest["graphs"].items() if not k.startswith("detector")} == \
        {k: v for k, v in src["graphs"].items() if k != "detector"}
    for k in src:
        if k not in ("graphs", "detector", "provenance"):
            assert manifest[k] == src[k], k
    prov = manifest["provenance"]["detector_split"]
    assert prov["created_by"] == "python3 -m uniter.detector_split fixture"
    assert prov["seed"] == _golden_seed()
    assert prov["single_graph_sha256"] == src["graphs"]["detector"]["sha256"]
    assert {k: v for k, v in manifest["provenance"].items() if k != "detector_split"} == src["provenance"]
    for f in ("attribute_labels.txt", "region_labels.txt", "encoder.onnx"):
        with open(os.path.join(out, f), "rb") as a, open(os.path.join(BUNDLE, f), "rb") as b:
            assert a.read() == b.read(), f
    # The split graphs hold the committed detector's weights.
    assert ds.same_weights(os.path.join(BUNDLE, "detector.onnx"), fixture_model)
    with pytest.raises(SystemExit, match="not made by make_detector"):
        ds.main(["fixture", "--bundle", BUNDLE, "--out", str(tmp_path / "x"), "--seed", "7"])


# ---------------------------------------------------------------------- convert-butd --split

def _port(tmp_path, model):
    """The port's files for model, in fixture names, and an encoder bundle to convert into."""
    from uniter.export import write_bundle
    from uniter.fixtures.tiny_random import make_vocab
    from uniter.model import UniterConfig, UniterForPretraining
    cfg = model.config
    out = tmp_path / "fx"
    port = out / "port"
    port.mkdir(parents=True)
    torch.save(model.state_dict(), str(port / "pytorch_model.bin"))
    (port / "config.yaml").write_text(port_config_yaml(cfg, 64, 96))
    (port / "objects_vocab.txt").write_text("\n".join(f"thing{i}" for i in range(cfg.num_classes)) + "\n")
    (port / "attributes_vocab.txt").write_text("\n".join(f"attr{i}" for i in range(cfg.num_attrs)) + "\n")
    vocab = make_vocab()
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    labels = ["__background__"] + [f"thing{i}" for i in range(cfg.num_classes)]
    ucfg = UniterConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                        img_dim=cfg.feature_dim, img_label_dim=len(labels))
    write_bundle(UniterForPretraining(ucfg).init_weights(0).eval(), str(out / "bundle"), name="enc",
                 vocab_path=str(tmp_path / "vocab.txt"), region_labels=labels, lowercase=True,
                 max_text_length=16, random_weights=True, provenance={}, graphs=["encoder"])
    return out


def test_convert_butd_split_and_fixture_twin(tmp_path, butd_models):
    model = butd_models["offset-weights-min-size"]
    out = _port(tmp_path, model)
    port = out / "port"
    # fixture --split's twin: the encoder bundle copied and converted split.
    twin = butd_export.make_split_twin(str(out), log=lambda m: None)
    assert twin == str(out / "bundle-split")
    assert not os.path.exists(out / "bundle" / "detector_backbone.onnx")
    with open(os.path.join(twin, "manifest.json")) as f:
        manifest = json.load(f)
    sec = _check_split_manifest(twin, manifest, model)
    assert sec["proposals"]["min_size"] == 20.0 and sec["proposals"]["anchor_offset"] == 0.3
    assert sec["proposals"]["roi_pool"] == {"input": "pooled", "output_size": 6, "spatial_scale": 0.0625}
    assert manifest["provenance"]["detector"]["split"] is True
    assert sec["preprocess"]["resize_rule"] == "detectron2"
    # The single-graph conversion into bundle/ has the same section but for the split keys.
    single = convert_butd(str(port / "pytorch_model.bin"), str(port / "config.yaml"),
                          str(port / "objects_vocab.txt"), str(port / "attributes_vocab.txt"),
                          into=str(out / "bundle"), log=lambda m: None)
    rest = lambda s: {k: v for k, v in s.items() if k not in ("graph", "outputs", "proposals")}  # noqa: E731
    assert rest(single) == rest(sec) and single["outputs"]["boxes"] == "boxes"
    # Converting split into a bundle that has the single graph replaces it.
    butd_export.main(["convert-butd", str(port / "pytorch_model.bin"), str(port / "config.yaml"),
                      "--vocab", str(port / "objects_vocab.txt"),
                      "--attributes", str(port / "attributes_vocab.txt"),
                      "--into", str(out / "bundle"), "--split"])
    with open(out / "bundle" / "manifest.json") as f:
        _check_split_manifest(str(out / "bundle"), json.load(f), model)
    # --out: detector.json with both graphs.
    butd_export.main(["convert-butd", str(port / "pytorch_model.bin"), str(port / "config.yaml"),
                      "--vocab", str(port / "objects_vocab.txt"),
                      "--attributes", str(port / "attributes_vocab.txt"),
                      "--out", str(tmp_path / "alone"), "--split"])
    frag = json.loads((tmp_path / "alone" / "detector.json").read_text())
    assert sorted(frag["graphs"]) == ["detector_backbone", "detector_heads"]
    assert "boxes" not in frag["detector"]["outputs"] and "roi_pool" in frag["detector"]["proposals"]
    assert sorted(os.listdir(tmp_path / "alone")) == [
        "attribute_labels.txt", "detector.json", "detector_backbone.onnx", "detector_heads.onnx",
        "region_labels.txt"]


# ---------------------------------------------------------------------- recovering a Detector

FIXTURE_ONNX = os.path.join(BUNDLE, "detector.onnx")
# A Detector unlike the fixture that recovery must get back exactly: stride 8, no attribute
# head, other anchor sizes and aspect ratios (none of them a repository config's), pre/post-NMS
# top-n, NMS IoU, pool size and sampling ratio.
RECOVER_OTHER = dict(num_classes=11, num_attributes=0, feature_dim=64,
                     backbone_channels=(8, 12, 16, 16), backbone_strides=(2, 2, 1, 2),
                     anchor_sizes=(20, 40, 100), aspect_ratios=(0.25, 1.0, 3.0),
                     rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=50, rpn_nms_thresh=0.65,
                     pool_size=5, sampling_ratio=3)


def _assert_same_state(got, want):
    """Bit-identical state dicts but for what the single graph does not hold (UNEXPORTED)."""
    sg, sw = got.state_dict(), want.state_dict()
    assert sorted(sg) == sorted(sw)
    for k in sw:
        if k in rec.UNEXPORTED:
            assert not sg[k].any(), k                          # not in the graph: zeros
            continue
        assert sg[k].dtype == sw[k].dtype and sg[k].shape == sw[k].shape, k
        assert sg[k].numpy().tobytes() == sw[k].numpy().tobytes(), k
    np.testing.assert_array_equal(got.cell_anchors.numpy(), want.cell_anchors.numpy())


def _labels(bundle):
    with open(os.path.join(bundle, "region_labels.txt")) as f:
        return f.read().splitlines()


@pytest.fixture(scope="module")
def recovered_fixture():
    return rec.recover_detector(FIXTURE_ONNX)


def test_recover_fixture_detector(recovered_fixture, fixture_model):
    m = recovered_fixture
    assert m.config == DetectorConfig(**fixture.DETECTOR) == fixture_model.config
    assert not m.training
    _assert_same_state(m, fixture_model)
    names = {t.name for t in onnx.load(FIXTURE_ONNX).graph.initializer}
    assert names == set(fixture_model.state_dict()) - set(rec.UNEXPORTED)
    x = noise(100, 140, 0)
    with torch.no_grad():
        for a, b in zip(m(x), fixture_model(x)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_recover_other_config(tmp_path):
    cfg = DetectorConfig(**RECOVER_OTHER)
    torch.manual_seed(3)
    model = Detector(cfg).init_weights(3).eval()
    d = _bundle_copy(tmp_path / "bundle")
    write_detector(model, d, preprocess=fixture.PREPROCESS, selection=fixture.SELECTION,
                   labels=_labels(d))
    got = rec.recover_detector(os.path.join(d, "detector.onnx"))
    assert got.config == cfg
    _assert_same_state(got, model)
    # The bundle command on it: the split section is the model's own proposal spec.
    out = str(tmp_path / "split")
    manifest = ds.split_bundle(d, out, log=lambda m: None)
    sec = _check_split_manifest(out, manifest, model)
    assert "attributes" not in sec and "attribute_probs" not in sec["outputs"]
    assert manifest["provenance"]["detector_split"]["recovered_config"] == \
        json.loads(json.dumps(cfg.to_dict()))


@pytest.mark.parametrize("sizes, ratios", [
    ((32, 64, 128), (0.5, 1.0, 2.0)),
    ((32, 48, 64, 96), (0.75, 1.0, 1.33)),       # the Shapes World detector's
    ((16,), (1.0,)),
    ((24, 200), (0.2, 0.6, 1.0, 1.7)),
    ((33, 90), (1 / 3, 4 / 3)),
    ((8, 512), (0.125, 8.0)),
])
def test_anchors_from_cells(sizes, ratios):
    """Whatever values the search settles on, torchvision's AnchorGenerator makes the same
    cells from them (the generator rounds, so the values themselves need not come back)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    cells = AnchorGenerator((sizes,), (ratios,)).cell_anchors[0].numpy()
    np.testing.assert_array_equal(rec._torchvision_cells(sizes, ratios), cells)
    s, r = rec.anchors_from_cells(cells)
    assert len(s) * len(r) == len(cells)
    np.testing.assert_array_equal(AnchorGenerator((s,), (r,)).cell_anchors[0].numpy(), cells)
    if sizes == (32, 48, 64, 96) or ratios == (0.5, 1.0, 2.0):
        assert (s, r) == (sizes, ratios)
    with pytest.raises(rec.RecoveryError, match="not centred"):
        rec.anchors_from_cells(cells + np.float32(1))
    if len(cells) > 1:
        odd = cells.copy()
        odd[0, [0, 2]] *= 3                    # one anchor three times as wide
        with pytest.raises(rec.RecoveryError, match="no anchor sizes and aspect ratios reproduce"):
            rec.anchors_from_cells(odd)


def test_bundle_command_matches_fixture_command(tmp_path, fixture_model):
    out, twin = str(tmp_path / "recovered"), str(tmp_path / "twin")
    ds.main(["bundle", BUNDLE, out])
    ds.main(["fixture", "--bundle", BUNDLE, "--out", twin])
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(twin, "manifest.json")) as f:
        fx = json.load(f)
    with open(os.path.join(BUNDLE, "manifest.json")) as f:
        src = json.load(f)
    _check_split_manifest(out, manifest, fixture_model)
    assert manifest["detector"]["proposals"] == fx["detector"]["proposals"]
    assert manifest["detector"] == fx["detector"]
    # The same graphs, byte for byte (the split export does not use the box regression).
    assert manifest["graphs"] == fx["graphs"]
    assert {k: v for k, v in manifest.items() if k != "provenance"} == \
        {k: v for k, v in fx.items() if k != "provenance"}
    prov = manifest["provenance"]["detector_split"]
    assert sorted(prov) == ["created_by", "exported", "from", "recovered_config",
                            "single_graph_sha256", "torch_version"]
    assert prov["created_by"] == "python3 -m uniter.detector_split bundle"
    assert prov["from"] == src["name"]
    assert prov["single_graph_sha256"] == src["graphs"]["detector"]["sha256"] == _sha256(FIXTURE_ONNX)
    assert prov["recovered_config"] == json.loads(json.dumps(DetectorConfig(**fixture.DETECTOR).to_dict()))
    assert prov["torch_version"] == torch.__version__
    assert {k: v for k, v in manifest["provenance"].items() if k != "detector_split"} == src["provenance"]
    assert sorted(os.listdir(out)) == sorted(os.listdir(twin))
    for f in ("attribute_labels.txt", "region_labels.txt", "encoder.onnx"):
        with open(os.path.join(out, f), "rb") as a, open(os.path.join(BUNDLE, f), "rb") as b:
            assert a.read() == b.read(), f


def _edited_bundle(tmp_path, edit):
    """A copy of the fixture bundle whose detector.onnx went through edit(ModelProto) (the
    manifest's sha256 kept in step)."""
    d = str(tmp_path / "edited")
    shutil.copytree(BUNDLE, d)
    path = os.path.join(d, "detector.onnx")
    m = onnx.load(path)
    edit(m)
    onnx.save(m, path)
    mpath = os.path.join(d, "manifest.json")
    with open(mpath) as f:
        manifest = json.load(f)
    manifest["graphs"]["detector"]["sha256"] = _sha256(path)
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=2)
    return d


def _append_identity(m):
    m.graph.node.append(onnx.helper.make_node("Identity", ["features"], ["features_again"],
                                              name="extra"))


def _insert_identity(m):
    """An Identity between the first ReLU and the second conv."""
    nodes = list(m.graph.node)
    i = next(k for k, n in enumerate(nodes) if n.op_type == "Relu")
    relu = nodes[i].output[0]
    for n in nodes[i + 1:]:
        for k, x in enumerate(n.input):
            if x == relu:
                n.input[k] = "relu_again"
    m.graph.node.insert(i + 1, onnx.helper.make_node("Identity", [relu], ["relu_again"], name="extra"))


def _edit_half(m):
    """The box decoder's first 0.5 (ctr = x1 + 0.5·w) made 0.25: the config comes back the
    same, the graph does not."""
    for n in m.graph.node:
        if n.op_type == "Constant":
            v = numpy_helper.to_array(n.attribute[0].t)
            if v.dtype == np.float32 and v.shape == () and float(v) == 0.5:
                n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.float32(0.25), n.attribute[0].t.name))
                return
    raise AssertionError("no 0.5 constant")


def _other_torch(m):
    _append_identity(m)
    m.producer_version = "1.9.0"


@pytest.mark.parametrize("edit, message", [
    (_append_identity, r"has 250 nodes, the re-export 249: the first extra is node #249 \(Identity 'extra'\)"),
    (_insert_identity, r"node #3: Identity 'extra' in the bundle's graph, Conv in the re-export"),
    (_edit_half, r"node #\d+ \(Constant .*\): attribute value differs: float32\[\] 0.25 vs float32\[\] 0.5"),
    (_other_torch, r"exported by torch 1.9.0 and the re-export uses torch 1\.13"),
], ids=["extra-node", "inserted-node", "constant", "other-torch"])
def test_bundle_refuses_edited_graph(tmp_path, edit, message):
    d = _edited_bundle(tmp_path, edit)
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit, match=message) as e:
        ds.main(["bundle", d, out])
    assert "re-exporting the recovered Detector does not give the same graph" in str(e.value)
    assert not os.path.exists(out)
    with pytest.raises(rec.RecoveryError):
        rec.recover_detector(os.path.join(d, "detector.onnx"))


def test_recover_refuses_other_detectors(tmp_path, butd_models, other_model):
    path = str(tmp_path / "butd.onnx")
    export_butd(butd_models["plain"], path)
    with pytest.raises(rec.RecoveryError, match=r"bottom-up-attention .*convert-butd .*--split"):
        rec.recover_detector(path)
    from uniter.detector_export import export_detector
    path = str(tmp_path / "bn.onnx")
    export_detector(other_model, path)          # batch_norm=True: folded into the convs
    with pytest.raises(rec.RecoveryError, match="batch_norm"):
        rec.recover_detector(path)


def test_bundle_command_refusals(tmp_path):
    # OUT exists and is not empty: nothing written there.
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    with pytest.raises(SystemExit, match="exists and is not empty"):
        ds.main(["bundle", BUNDLE, str(out)])
    assert os.listdir(out) == ["keep.txt"]
    # An empty OUT is fine; its result, already split, is refused as IN.
    empty = tmp_path / "empty"
    empty.mkdir()
    ds.main(["bundle", BUNDLE, str(empty)])
    with pytest.raises(SystemExit, match="split already"):
        ds.main(["bundle", str(empty), str(tmp_path / "again")])
    # No detector.
    bare = _bundle_copy(tmp_path / "bare")
    with pytest.raises(SystemExit, match="no detector"):
        ds.main(["bundle", bare, str(tmp_path / "x")])
    # A converted bottom-up-attention bundle (by its provenance).
    butd = str(tmp_path / "butd")
    shutil.copytree(BUNDLE, butd)
    with open(os.path.join(butd, "manifest.json")) as f:
        m = json.load(f)
    m["provenance"]["detector"] = {"converted_by": "python3 -m uniter.butd_export convert-butd"}
    with open(os.path.join(butd, "manifest.json"), "w") as f:
        json.dump(m, f)
    with pytest.raises(SystemExit, match="convert-butd"):
        ds.main(["bundle", butd, str(tmp_path / "y")])
    assert not any(os.path.exists(tmp_path / n) for n in ("again", "x", "y"))


# ---------------------------------------------------------------------- ONNX Runtime (optional)

def _split_on_onnxruntime(uniter_bin, bundle, model, tmp):
    """A split bundle through ONNX Runtime (the Go binary's run-graph): the backbone's outputs,
    propose on them and the heads on those proposals give model's PyTorch forward."""
    h, w, seed = IMAGES[0]
    x = noise(h, w, seed)
    got = run_bundle_graph(uniter_bin, bundle, "detector_backbone", {"image": x.numpy()}, tmp)
    want = _backbone(model, x)
    for name, wt in zip(["feature_map", "objectness", "anchor_deltas"], want):
        np.testing.assert_allclose(got[name], wt, rtol=0, atol=1e-4, err_msg=name)
    with open(os.path.join(bundle, "manifest.json")) as f:
        spec = json.load(f)["detector"]["proposals"]
    boxes = ds.propose(spec, got["objectness"].astype(np.float32),
                       got["anchor_deltas"].astype(np.float32), h, w)
    with torch.no_grad():
        ref = [t.numpy() for t in model(x)]
    assert boxes.shape == ref[0].shape
    np.testing.assert_allclose(boxes, ref[0], rtol=0, atol=1e-3)
    rois = np.concatenate([np.zeros((len(boxes), 1), np.float32), boxes], 1)
    heads = run_bundle_graph(uniter_bin, bundle, "detector_heads",
                             {"feature_map": got["feature_map"].astype(np.float32), "rois": rois},
                             tmp)
    for name, wt in zip(["class_probs", "features", "attr_probs"], ref[1:]):
        np.testing.assert_allclose(heads[name], wt, rtol=0, atol=1e-4, err_msg=name)
    return x, boxes, heads


def test_onnxruntime_runs_split_graphs(uniter_bin, tmp_path, fixture_model):
    """The fixture's split twin through ONNX Runtime."""
    out = str(tmp_path / "twin")
    ds.make_split_fixture(BUNDLE, out, _golden_seed(), log=lambda m: None)
    _split_on_onnxruntime(uniter_bin, out, fixture_model, str(tmp_path))


def test_onnxruntime_runs_recovered_split(uniter_bin, tmp_path, recovered_fixture):
    """The bundle command's split copy through ONNX Runtime, against the recovered model and
    against the bundle's own single graph on ONNX Runtime."""
    out = str(tmp_path / "recovered")
    ds.split_bundle(BUNDLE, out, log=lambda m: None)
    x, boxes, heads = _split_on_onnxruntime(uniter_bin, out, recovered_fixture, str(tmp_path))
    single = run_bundle_graph(uniter_bin, BUNDLE, "detector", {"image": x.numpy()}, str(tmp_path))
    np.testing.assert_allclose(single["boxes"], boxes, rtol=0, atol=1e-3)
    for name in ("class_probs", "features", "attr_probs"):
        np.testing.assert_allclose(single[name], heads[name], rtol=0, atol=1e-4, err_msg=name)
