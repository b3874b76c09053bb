"""The region detector (models/uniter/detector.py, detector_export.py) and its fixture
(python3 -m uniter.fixtures.detector), against docs/detector-contract.md.

ONNX Runtime parity goes through the Go binary like test_export.py (no onnxruntime for Python
here): those tests skip with a message when UNITER_BIN is unset. By hand:
    cd /work/main && go build -o bin/uniter ./cmd/uniter
    cd models && UNITER_BIN=$PWD/../bin/uniter \
        UNITER_ORT_LIBRARY=$PWD/../.cache/onnxruntime/lib/libonnxruntime.so \
        /usr/bin/python3 -m pytest -q tests/test_detector.py
Everything else (selection, preprocessing, graph structure, manifest, goldens, the training
hook) needs only torch/torchvision/onnx and always runs.
"""
import hashlib
import json
import os
import subprocess

import numpy as np
import onnx
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import nms

from uniter.fixtures import detector as fixture
from uniter.fixtures import min_box
from uniter.detector import (BUTD_PREPROCESS, BUTD_SELECTION, Detector, DetectorConfig,
                             batch_images, load_rgb, location7, nms_reference, preprocess,
                             resize_rule, resized_size, select_regions, to_original)
from uniter.detector_export import DETECTOR_OPSET, write_detector
from uniter_testing import OTHER_DETECTOR, REPO, fixture_bundle_without_detector, record
from uniter_testing import run_bundle_graph


TESTDATA = os.path.join(REPO, "testdata")
BUNDLE = os.path.join(TESTDATA, "bundles", "tiny-random")
GOLDEN = os.path.join(TESTDATA, "golden", "detector-tiny-random.json")
DETECTOR_FILES = ("detector.onnx", "attribute_labels.txt")
# Image sizes (H, W) for parity: a resized fixture image, non-square both ways, and tiny ones
# that give a single proposal or fewer than post-NMS top-n (so no count is baked in).
SIZES = [(128, 160), (192, 92), (90, 192), (57, 131), (20, 45), (8, 8), (1, 1)]
TOL = {"boxes": 1e-3, "class_probs": 1e-5, "features": 1e-4, "attr_probs": 1e-5}

OTHER = OTHER_DETECTOR
pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def golden():
    with open(GOLDEN) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def fixture_model(golden):
    cfg = DetectorConfig.from_dict(golden["detector_config"])
    assert cfg == DetectorConfig(**fixture.DETECTOR)
    return fixture.make_detector(golden["seed"])


def _other_model():
    torch.manual_seed(5)
    m = Detector(DetectorConfig(**OTHER)).init_weights(5)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for mod in m.backbone:
            if isinstance(mod, torch.nn.BatchNorm2d):  # non-trivial running statistics
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.weight.copy_(1 + 0.2 * torch.randn(mod.num_features, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.num_features, generator=g))
    return m.eval()


_bundle_copy = fixture_bundle_without_detector


@pytest.fixture(scope="module")
def other_bundle(tmp_path_factory):
    model = _other_model()
    d = _bundle_copy(tmp_path_factory.mktemp("other") / "bundle")
    write_detector(model, d)
    return model, d


def run_graph(bin_path, bundle_dir, inputs, tmp):
    """Runs the detector graph through ONNX Runtime via the Go binary; {name: np.ndarray}."""
    return run_bundle_graph(bin_path, bundle_dir, "detector", inputs, tmp)


def _compare(model, got, want, tag):
    assert sorted(got) == sorted(model.output_names), tag
    for name, w in zip(model.output_names, want):
        g = got[name]
        assert g.shape == w.shape, f"{tag} {name}: shape {g.shape} vs {w.shape}"
        diff = float(np.abs(g - w).max()) if g.size else 0.0
        record("ONNX Runtime vs PyTorch, detector", name, diff)
        assert diff <= TOL[name], f"{tag} {name}: max abs diff {diff:.3e}"


# ---------------------------------------------------------------------------- ONNX parity

@pytest.mark.parametrize("hw", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_onnx_matches_pytorch_fixture(fixture_model, uniter_bin, hw, tmp_path):
    g = torch.Generator().manual_seed(hw[0] * 1000 + hw[1])
    x = torch.randn(1, 3, *hw, generator=g) * 50
    with torch.no_grad():
        want = [t.double().numpy() for t in fixture_model(x)]
    got = run_graph(uniter_bin, BUNDLE, {"image": x.numpy()}, str(tmp_path))
    _compare(fixture_model, got, want, f"fixture {hw}")
    P = len(want[0])
    assert 1 <= P <= fixture_model.config.rpn_post_nms_top_n_test
    if hw in ((8, 8), (1, 1)):
        assert P == 1  # one feature cell: all anchors clip to one box, NMS keeps one


@pytest.mark.parametrize("hw", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_onnx_matches_pytorch_other_config(other_bundle, uniter_bin, hw, tmp_path):
    model, d = other_bundle
    g = torch.Generator().manual_seed(7 + hw[0] * 1000 + hw[1])
    x = torch.randn(1, 3, *hw, generator=g) * 50
    with torch.no_grad():
        want = [t.double().numpy() for t in model(x)]
    got = run_graph(uniter_bin, d, {"image": x.numpy()}, str(tmp_path))
    assert "attr_probs" not in got
    _compare(model, got, want, f"other {hw}")


def test_onnx_on_golden_images(golden, fixture_model, uniter_bin, tmp_path):
    """The committed graph on the fixture images reproduces the golden raw outputs, and the
    selection run on ONNX Runtime's outputs keeps the same regions as the golden (so a Go
    end-to-end test against the golden is not at the mercy of float noise)."""
    for im in golden["images"]:
        x, _, _, _ = preprocess(load_rgb(os.path.join(TESTDATA, im["file"])), golden["preprocess"])
        got = run_graph(uniter_bin, BUNDLE, {"image": x.numpy()}, str(tmp_path))
        out = im["outputs"]
        want = [np.asarray(out[n], dtype=np.float64) for n in fixture_model.output_names]
        _compare(fixture_model, got, want, im["file"])
        for sel in im["selections"]:
            r = select_regions(got["boxes"].astype(np.float32), got["class_probs"].astype(np.float32),
                               scale=im["scale"], width=im["width"], height=im["height"],
                               selection=sel["selection"])
            assert r["indices"] == sel["regions"]["indices"], (im["file"], sel["name"])


# ---------------------------------------------------------------------------- graph and manifest

def _dims(t):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in t.type.tensor_type.shape.dim]


@pytest.mark.parametrize("which", ["fixture", "other"])
def test_graph_structure(which, other_bundle):
    d = BUNDLE if which == "fixture" else other_bundle[1]
    with open(os.path.join(d, "manifest.json")) as f:
        g = json.load(f)["graphs"]["detector"]
    path = os.path.join(d, g["file"])
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == g["sha256"]
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    opsets = {o.domain: o.version for o in proto.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == DETECTOR_OPSET == 13
    ops = [n.op_type for n in proto.graph.node]
    roi = [n for n in proto.graph.node if n.op_type == "RoiAlign"]
    assert len(roi) == 1 and "NonMaxSuppression" in ops and "TopK" in ops
    for n in roi:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        # Absent, the attribute means output_half_pixel (= aligned=False) up to opset 15 and
        # half_pixel from opset 16.
        default = b"half_pixel" if opsets.get("", 0) >= 16 else b"output_half_pixel"
        mode = attrs.get("coordinate_transformation_mode", default)
        assert mode == b"output_half_pixel", f"RoiAlign exported with {mode!r} offsets"
        assert attrs["sampling_ratio"] == 2
        assert attrs["output_height"] == attrs["output_width"] == 7
        assert abs(attrs["spatial_scale"] - 1 / 16) < 1e-9
    elem = {onnx.TensorProto.FLOAT: "float32"}
    inits = {i.name for i in proto.graph.initializer}
    for declared, actual in ((g["inputs"], proto.graph.input), (g["outputs"], proto.graph.output)):
        actual = [t for t in actual if t.name not in inits]
        assert [t["name"] for t in declared] == [t.name for t in actual]
        for dec, act in zip(declared, actual):
            assert elem.get(act.type.tensor_type.elem_type) == dec["dtype"]
            assert _dims(act) == dec["shape"], dec["name"]


def _contract_section(pre, sel, with_attr):
    """The "detector" section exactly as docs/detector-contract.md writes it."""
    sec = {
        "graph": "detector",
        "input": "image",
        "outputs": {"boxes": "boxes", "class_probs": "class_probs", "features": "features",
                    "attribute_probs": "attr_probs"},
        "preprocess": pre,
        "background_index": 0,
        "labels": "region_labels.txt",
        "attributes": "attribute_labels.txt",
        "selection": sel,
    }
    if not with_attr:
        del sec["outputs"]["attribute_probs"], sec["attributes"]
    return sec


def test_fixture_manifest_section():
    with open(os.path.join(BUNDLE, "manifest.json")) as f:
        m = json.load(f)
    pre = {"channel_order": "BGR", "pixel_means": [102.9801, 115.9465, 122.7717],
           "pixel_std": [1.0, 1.0, 1.0], "shorter_side": 128, "longer_side_max": 192,
           "resize": "bilinear"}
    sel = {"nms_iou": 0.3, "min_confidence": 0.2, "min_boxes": 10, "max_boxes": 100}
    assert m["detector"] == _contract_section(pre, sel, True)
    assert list(m["detector"]) == list(_contract_section(pre, sel, True))
    g = m["graphs"]["detector"]
    assert g["inputs"] == [{"name": "image", "dtype": "float32", "shape": [1, 3, "height", "width"]}]
    assert g["outputs"] == [
        {"name": "boxes", "dtype": "float32", "shape": ["proposals", 4]},
        {"name": "class_probs", "dtype": "float32", "shape": ["proposals", m["model"]["label_dim"]]},
        {"name": "features", "dtype": "float32", "shape": ["proposals", m["model"]["feature_dim"]]},
        {"name": "attr_probs", "dtype": "float32", "shape": ["proposals", 9]}]
    with open(os.path.join(BUNDLE, "attribute_labels.txt"), encoding="utf-8") as f:
        attrs = f.read().splitlines()
    assert attrs == fixture.ATTRIBUTES and attrs[0] == "__no_attribute__" and len(attrs) == 9
    with open(os.path.join(BUNDLE, "region_labels.txt"), encoding="utf-8") as f:
        assert len(f.read().splitlines()) == m["model"]["label_dim"] == 11
    # The encoder's part of the manifest is untouched: still uniter.fixtures.tiny_random's layout.
    # ("task" is written by exporters since the fine-tuned tasks; a bundle without it is a
    # pre-training one.)
    assert [k for k in m if k != "task"] == ["format_version", "name", "description", "random_weights", "model",
                                            "text", "regions", "heads", "graphs", "detector", "provenance"]
    assert m["provenance"]["created_by"] == "python3 -m uniter.fixtures.tiny_random"


def test_write_detector_defaults_and_no_attributes(tmp_path, other_bundle):
    # BUTD defaults, with an attribute head.
    d = _bundle_copy(tmp_path / "b1")
    with open(os.path.join(d, "manifest.json")) as f:
        before = json.load(f)
    m = write_detector(fixture.make_detector(3), d, attributes=fixture.ATTRIBUTES)
    assert m["detector"] == _contract_section(BUTD_PREPROCESS, BUTD_SELECTION, True)
    assert m["detector"]["preprocess"] == {
        "channel_order": "BGR", "pixel_means": [102.9801, 115.9465, 122.7717],
        "pixel_std": [1.0, 1.0, 1.0], "shorter_side": 600, "longer_side_max": 1000,
        "resize": "bilinear"}
    with open(os.path.join(d, "manifest.json")) as f:
        on_disk = json.load(f)
    assert on_disk == m
    for k in before:
        if k != "graphs":
            assert on_disk[k] == before[k], k
    assert {k: v for k, v in on_disk["graphs"].items() if k != "detector"} == before["graphs"]
    # Without an attribute head both attribute entries are left out.
    _, d2 = other_bundle
    with open(os.path.join(d2, "manifest.json")) as f:
        m2 = json.load(f)
    assert m2["detector"] == _contract_section(BUTD_PREPROCESS, BUTD_SELECTION, False)
    assert [o["name"] for o in m2["graphs"]["detector"]["outputs"]] == \
        ["boxes", "class_probs", "features"]
    assert not os.path.exists(os.path.join(d2, "attribute_labels.txt"))


def test_detector_section_min_box_size():
    """min_box_size goes into the manifest's selection when set, and is absent at 0."""
    from uniter.detector_export import detector_section
    model = Detector(DetectorConfig(**fixture.DETECTOR))
    sec = detector_section(model, BUTD_PREPROCESS, dict(BUTD_SELECTION, min_box_size=4), True)
    assert sec["selection"] == dict(BUTD_SELECTION, min_box_size=4.0)
    sec = detector_section(model, BUTD_PREPROCESS, dict(BUTD_SELECTION, min_box_size=0), True)
    assert "min_box_size" not in sec["selection"]


def test_write_detector_refuses_inconsistent_inputs(tmp_path):
    d = _bundle_copy(tmp_path / "b")
    attrs = fixture.ATTRIBUTES
    bad = [
        (dict(fixture.DETECTOR, num_classes=7), dict(attributes=attrs), "classes"),
        (dict(fixture.DETECTOR, feature_dim=32), dict(attributes=attrs), "feature"),
        (fixture.DETECTOR, dict(attributes=None), "attribute"),
        (fixture.DETECTOR, dict(attributes=["none"] + attrs[1:]), "__no_attribute__"),
        (fixture.DETECTOR, dict(attributes=attrs, labels=["x"] * 11), "labels"),
        (fixture.DETECTOR, dict(attributes=attrs, selection=dict(BUTD_SELECTION, max_boxes=0)),
         "max_boxes"),
        (fixture.DETECTOR, dict(attributes=attrs, preprocess=dict(BUTD_PREPROCESS, resize="area")),
         "bilinear"),
        (fixture.DETECTOR, dict(attributes=attrs, selection=dict(BUTD_SELECTION, min_box_size=-2)),
         "min_box_size"),
        (fixture.DETECTOR, dict(attributes=attrs, selection=dict(BUTD_SELECTION, min_size=2)),
         "selection keys"),
    ]
    for cfg, kw, match in bad:
        with pytest.raises(ValueError, match=match):
            write_detector(Detector(DetectorConfig(**cfg)), d, **kw)
    assert not os.path.exists(os.path.join(d, "detector.onnx"))
    with open(os.path.join(d, "manifest.json")) as f:
        assert "detector" not in json.load(f)


# ---------------------------------------------------------------------------- selection

@pytest.mark.parametrize("case", fixture.SELECTION_CASES, ids=lambda c: c["name"])
def test_selection_hand_built(case):
    fixture.check_selection_case(case, fixture.run_selection_case(case))


def test_nms_reference_ties_and_torchvision():
    # Equal scores: lower index first, both when they overlap (1 suppresses 3) and not.
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 0, 60, 10], [20, 20, 30, 30]],
                     dtype=np.float32)
    keep, _ = nms_reference(boxes, np.array([0.5, 0.7, 0.5, 0.7], np.float32), 0.3)
    assert keep == [1, 0, 2]
    # Random boxes without ties: the same as torchvision, order included.
    g = torch.Generator().manual_seed(11)
    for thr in (0.3, 0.5, 0.7):
        xy = torch.rand(300, 2, generator=g) * 100
        wh = torch.rand(300, 2, generator=g) * 40
        b = torch.cat([xy, xy + wh], 1)
        s = torch.rand(300, generator=g)
        assert len(s.unique()) == 300
        keep, margin = nms_reference(b.numpy(), s.numpy(), thr)
        assert keep == nms(b, s, thr).tolist()
        assert margin > 0


def test_location7():
    assert location7([10, 20, 30, 60], 100, 200) == pytest.approx(
        [0.1, 0.1, 0.3, 0.3, 0.2, 0.2, 0.04])
    assert location7([0, 0, 100, 200], 100, 200) == [0, 0, 1, 1, 1, 1, 1]


def test_select_regions_columns():
    """Rows of features / attributes / soft labels follow the selected indices; boxes are
    mapped by 1/scale and clamped to the original image."""
    rng = np.random.default_rng(3)
    P, C = 30, 5
    xy = rng.uniform(0, 80, (P, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 40, (P, 2))], 1).astype(np.float32)
    probs = rng.dirichlet(np.ones(C), P).astype(np.float32)
    feats = rng.normal(size=(P, 6)).astype(np.float32)
    attrs = rng.dirichlet(np.ones(4), P).astype(np.float32)
    sel = {"nms_iou": 0.3, "min_confidence": 0.3, "min_boxes": 3, "max_boxes": 8}
    r = select_regions(boxes, probs, feats, attrs, scale=0.8, width=110, height=100,
                       selection=sel)
    idx = r["indices"]
    assert 3 <= len(idx) <= 8 and len(set(idx)) == len(idx)
    np.testing.assert_array_equal(r["features"], feats[idx])
    np.testing.assert_array_equal(r["attribute_probs"], attrs[idx])
    np.testing.assert_array_equal(r["soft_labels"], probs[idx])
    conf = r["confidences"]
    assert all(conf[i] >= conf[i + 1] for i in range(len(conf) - 1))
    want = np.clip(boxes[idx].astype(np.float64) / 0.8, 0, [110, 100, 110, 100])
    np.testing.assert_allclose(r["boxes"], want)
    np.testing.assert_allclose(r["locations"], [location7(b, 110, 100) for b in want])


def test_select_regions_min_box_size():
    """min_box_size (original pixels) drops proposals narrower or lower than it times the scale
    before selection: the result is the plain selection of the proposals left, indices mapped
    back; a box exactly at the size stays; a dropped box suppresses nothing."""
    rng = np.random.default_rng(5)
    P, C, scale = 40, 4, 0.5
    xy = rng.uniform(0, 80, (P, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 40, (P, 2))], 1).astype(np.float32)
    boxes[0, 2] = boxes[0, 0]                      # zero width
    boxes[1, 3] = boxes[1, 1] + 1.0                # 1 px high in resized pixels (2 original)
    boxes[2, 2:] = boxes[2, :2] + 1.5              # exactly min_box_size * scale: kept
    boxes[3] = boxes[4]; boxes[3, 2] = boxes[3, 0] + 1.0  # a sliver over box 4
    probs = rng.dirichlet(np.ones(C) * 0.3, P).astype(np.float32)
    probs[3] = [0, 1, 0, 0]                        # the sliver scores highest on class 1
    probs[4] = [0, 0.9, 0.05, 0.05]
    sel = {"nms_iou": 0.3, "min_confidence": 0.2, "min_boxes": 10, "max_boxes": 100, "min_box_size": 3.0}
    r = select_regions(boxes, probs, scale=scale, width=200, height=200, selection=sel)
    side = np.float32(3.0) * np.float32(scale)
    left = [i for i in range(P) if boxes[i, 2] - boxes[i, 0] >= side and boxes[i, 3] - boxes[i, 1] >= side]
    assert 0 not in left and 1 not in left and 3 not in left and 2 in left
    plain = {k: v for k, v in sel.items() if k != "min_box_size"}
    sub = select_regions(boxes[left], probs[left], scale=scale, width=200, height=200, selection=plain)
    assert r["indices"] == [left[i] for i in sub["indices"]]
    assert 4 in r["indices"]                       # not suppressed by the dropped sliver
    assert r["proposal_confidences"][[0, 1, 3]].tolist() == [0, 0, 0]
    # Absent and 0 mean the same: every proposal.
    a = select_regions(boxes, probs, scale=scale, width=200, height=200, selection=plain)
    b = select_regions(boxes, probs, scale=scale, width=200, height=200, selection=dict(plain, min_box_size=0))
    assert a["indices"] == b["indices"] and 3 in a["proposal_confidences"].nonzero()[0]


# ---------------------------------------------------------------------------- preprocessing

def test_resized_size():
    pre = dict(BUTD_PREPROCESS, shorter_side=128, longer_side_max=192)
    assert resized_size(160, 128, pre) == (1.0, 160, 128)
    assert resized_size(96, 120, pre)[1:] == (128, 160)       # upscaled by the shorter side
    assert resized_size(300, 140, pre) == (0.64, 192, 90)     # 89.6 → 90, longer side capped
    assert resized_size(96, 200, pre) == (0.96, 92, 192)      # 92.16 → 92
    assert resized_size(1000, 1, pre)[1:] == (192, 1)         # at least 1
    half = dict(pre, shorter_side=25, longer_side_max=1000)
    assert resized_size(101, 50, half) == (0.5, 51, 25)       # 50.5 rounds away from zero
    assert resized_size(800, 600, BUTD_PREPROCESS)[1:] == (800, 600)
    assert resized_size(2000, 1000, BUTD_PREPROCESS)[1:] == (1000, 500)


def _port_resize(w, h, size, max_size):
    """The LXMERT demo port's ResizeShortestEdge.__call__ (processing_image.py), copied
    statement for statement (img.shape[:2] is h, w), without the image: (newh, neww), plus the
    scale it ends with."""
    scale = size * 1.0 / min(h, w)
    if h < w:
        newh, neww = size, scale * w
    else:
        newh, neww = scale * h, size
    if max(newh, neww) > max_size:
        s2 = max_size * 1.0 / max(newh, neww)
        newh = newh * s2
        neww = neww * s2
        scale = scale * s2
    neww = int(neww + 0.5)
    newh = int(newh + 0.5)
    return scale, neww, newh


D2 = dict(BUTD_PREPROCESS, resize_rule="detectron2")


# (w, h) → (Wr, Hr) by the port's rule, worked out by hand where it matters: the .5 ties of the
# capped branch (the port's float arithmetic decides them, not a rounding rule) and the cap
# tested on the unrounded longer side (1999×1199: 1000.33 > 1000 caps, the default rule's
# round(1000.33) = 1000 does not).
D2_TABLE = [
    ((640, 480), (800, 600), (800, 600)),
    ((480, 640), (600, 800), (600, 800)),
    ((600, 600), (600, 600), (600, 600)),
    ((2000, 500), (1000, 250), (1000, 250)),
    ((1335, 800), (1000, 599), (1000, 599)),
    ((16, 9), (1000, 562), (1000, 563)),       # 562.4999…
    ((9, 16), (562, 1000), (563, 1000)),
    ((19, 304), (63, 1000), (62, 1000)),       # 62.5000…1
    ((400, 97), (1000, 242), (1000, 243)),     # the BUTD fixture's "tie" image
    ((1999, 1199), (1000, 600), (1000, 600)),
    ((1, 10000), (1, 1000), (1, 1000)),        # the port's int(0.6) = 0: at least 1 here
]


@pytest.mark.parametrize("wh,d2,default", D2_TABLE)
def test_resized_size_detectron2(wh, d2, default):
    w, h = wh
    assert resized_size(w, h, D2)[1:] == d2
    assert resized_size(w, h, BUTD_PREPROCESS)[1:] == default
    scale, pw, ph = _port_resize(w, h, 600, 1000)
    assert resized_size(w, h, D2) == (scale, max(1, pw), max(1, ph))


def test_resized_size_detectron2_scale():
    # Same size under both rules, another scale: the cap went the other way.
    assert resized_size(1999, 1199, D2)[0] == 600 / 1199 * (1000 / (600 / 1199 * 1999))
    assert resized_size(1999, 1199, BUTD_PREPROCESS)[0] == 600 / 1199
    assert resize_rule(BUTD_PREPROCESS) == "shorter_side" and resize_rule(D2) == "detectron2"
    with pytest.raises(ValueError, match="'Detectron2'"):
        resized_size(10, 10, dict(BUTD_PREPROCESS, resize_rule="Detectron2"))


def test_resized_size_detectron2_matches_the_port():
    """resized_size against the port's statements over every size up to 300 × 300 and a band of
    large ones at 600 / 1000, and at other settings; the two rules differ on some."""
    differ = 0
    sizes = [(w, h) for w in range(1, 301) for h in range(1, 301)]
    sizes += [(w, h) for w in range(1900, 2001) for h in range(1, 2001, 7)]
    for w, h in sizes:
        got = resized_size(w, h, D2)
        scale, pw, ph = _port_resize(w, h, 600, 1000)
        assert got == (scale, max(1, pw), max(1, ph)), (w, h)
        differ += got[1:] != resized_size(w, h, BUTD_PREPROCESS)[1:]
    assert differ > 10
    for short, long in [(128, 192), (5, 7), (800, 1333)]:
        pre = dict(D2, shorter_side=short, longer_side_max=long)
        for w, h in [(3, 7), (50, 21), (1000, 1), (77, 77), (333, 999)]:
            scale, pw, ph = _port_resize(w, h, short, long)
            assert resized_size(w, h, pre) == (scale, max(1, pw), max(1, ph))


def test_resize_rule_golden_is_current():
    """detector/testdata/resize_rule_golden.json (make_resize_rule_golden.py, which the Go
    test reads) lists what resized_size gives now."""
    with open(os.path.join(REPO, "detector", "testdata", "resize_rule_golden.json")) as f:
        g = json.load(f)
    assert g["differing_sizes"] == 704
    for rule, cases in g["cases"].items():
        for w, h, short, long, scale, wr, hr in cases:
            pre = dict(BUTD_PREPROCESS, shorter_side=short, longer_side_max=long, resize_rule=rule)
            assert resized_size(w, h, pre) == (scale, wr, hr), (rule, w, h, short, long)


def test_to_original_per_axis():
    """detectron2: boxes map back per axis, x · float32(W/Wr), y · float32(H/Hr) in float32
    (the port's _scale_box on its float32 scales_yx), then clamped; shorter_side: / scale."""
    boxes = np.array([[500, 281, 1000, 562], [0, 0, 1000.5, 600], [123.4, 55.5, 777.7, 321.1],
                      [np.nan, -3, 0, 0]], np.float32)
    got = to_original(boxes, scale=62.5, width=16, height=9, resize_rule="detectron2",
                      resized=(1000, 562))
    assert got.dtype == np.float64
    # By hand (the same values the Go test holds): the lower right quarter is exact.
    assert got[0].tolist() == [8.0, 4.5, 16.0, 9.0]
    assert got[1].tolist() == [0.0, 0.0, 16.0, 9.0]
    assert got[2].tolist() == [1.9744001626968384, 0.8887900710105896, 12.443201065063477,
                               5.1421709060668945]
    assert got[3].tolist() == [0.0, 0.0, 0.0, 0.0]
    # The port's own arithmetic on these boxes (torch float32 tensors), clipped as we do.
    scales_yx = torch.true_divide(torch.tensor([[9, 16]]), torch.tensor([[562, 1000]]))
    assert scales_yx.dtype == torch.float32
    port = torch.from_numpy(boxes[:3].copy())
    port[:, 0::2] *= scales_yx[:, 1]
    port[:, 1::2] *= scales_yx[:, 0]
    port[:, 0::2].clamp_(0, 16)
    port[:, 1::2].clamp_(0, 9)
    assert got[:3].tolist() == port.double().tolist()
    one = to_original(boxes[:1], scale=62.5, width=16, height=9)
    np.testing.assert_array_equal(one, [[8.0, 4.496, 16.0, 8.992]])
    with pytest.raises(ValueError, match="resized"):
        to_original(boxes, scale=62.5, width=16, height=9, resize_rule="detectron2")


def test_select_regions_detectron2_mapping():
    rng = np.random.default_rng(5)
    P, C = 25, 4
    xy = rng.uniform(0, 900, (P, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 300, (P, 2))], 1).astype(np.float32)
    probs = rng.dirichlet(np.ones(C), P).astype(np.float32)
    sel = {"nms_iou": 0.3, "min_confidence": 0.3, "min_boxes": 3, "max_boxes": 8}
    scale, wr, hr = resized_size(16, 9, D2)
    r = select_regions(boxes, probs, scale=scale, width=16, height=9, selection=sel,
                       resize_rule="detectron2", resized=(wr, hr))
    plain = select_regions(boxes, probs, scale=scale, width=16, height=9, selection=sel)
    assert r["indices"] == plain["indices"]       # the mapping does not change the selection
    want = to_original(boxes[r["indices"]], scale=scale, width=16, height=9,
                       resize_rule="detectron2", resized=(wr, hr))
    np.testing.assert_array_equal(r["boxes"], want)
    np.testing.assert_array_equal(r["locations"], [location7(b, 16, 9) for b in want])
    assert not np.array_equal(r["boxes"], plain["boxes"])


def _bilinear_np(a, hr, wr):
    """Half-pixel-centre, edge-clamped bilinear resize without antialiasing (the contract's
    words), written independently of torch: a [C, H, W] float64."""
    _, h, w = a.shape

    def axis(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, ly = axis(hr, h)
    x0, x1, lx = axis(wr, w)
    top = a[:, y0][:, :, x0] * (1 - lx) + a[:, y0][:, :, x1] * lx
    bot = a[:, y1][:, :, x0] * (1 - lx) + a[:, y1][:, :, x1] * lx
    return top * (1 - ly)[:, None] + bot * ly[:, None]


@pytest.mark.parametrize("wh", [(96, 120), (300, 140), (160, 128), (7, 5)])
def test_preprocess_matches_contract(wh):
    w, h = wh
    rng = np.random.default_rng(w * h)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pre = dict(BUTD_PREPROCESS, shorter_side=128, longer_side_max=192,
               pixel_std=[2.0, 1.0, 0.5])
    x, scale, wr, hr = preprocess(rgb, pre)
    assert x.dtype == torch.float32 and tuple(x.shape) == (1, 3, hr, wr)
    bgr = rgb[:, :, ::-1].transpose(2, 0, 1).astype(np.float64)
    if (wr, hr) != (w, h):
        bgr = _bilinear_np(bgr, hr, wr)
    want = (bgr - np.array(pre["pixel_means"])[:, None, None]) / np.array(pre["pixel_std"])[:, None, None]
    # PyTorch's CPU bilinear kernel computes weights and sums in float32: on 0..255 values it
    # differs from a float64 evaluation of the same formula by up to ~2e-3 when downscaling
    # (measured 1.8e-3 for 200 → 192; 0 for these upscales). A Go implementation will too.
    np.testing.assert_allclose(x[0].numpy(), want, atol=5e-3 if (wr, hr) != (w, h) else 1e-4)


def test_golden_preprocessing_and_outputs(golden, fixture_model):
    """The committed images, golden input statistics and raw outputs are what the code gives."""
    assert golden["preprocess"] == fixture.PREPROCESS
    assert os.path.getsize(GOLDEN) < 1.5e6
    total = 0
    for im in golden["images"]:
        path = os.path.join(TESTDATA, im["file"])
        total += os.path.getsize(path)
        rgb = load_rgb(path)
        assert rgb.size == (im["width"], im["height"])
        x, scale, wr, hr = preprocess(rgb, golden["preprocess"])
        assert (scale, wr, hr) == (im["scale"], im["resized_width"], im["resized_height"])
        a = x.numpy()
        st = im["input"]
        assert st["shape"] == list(a.shape)
        assert hashlib.sha256(a.astype("<f4").tobytes()).hexdigest() == st["sha256"]
        assert a.astype(np.float64).sum() == pytest.approx(st["sum"], rel=1e-9)
        assert a.min() == np.float32(st["min"]) and a.max() == np.float32(st["max"])
        for c, y, xx, v in st["samples"]:
            assert a[0, c, y, xx] == np.float32(v)
        with torch.no_grad():
            outs = [t.numpy() for t in fixture_model(x)]
        assert im["outputs"]["proposals"] == len(outs[0])
        for name, o in zip(fixture_model.output_names, outs):
            # Box coordinates are pixels (up to ~200), decoded through exp(): a different torch
            # thread count's reduction order moves them by a few 1e-5 px.
            np.testing.assert_allclose(np.asarray(im["outputs"][name], np.float32), o,
                                       atol=1e-4 if name == "boxes" else 1e-5,
                                       err_msg=f"{im['file']} {name}")
    assert total < 150_000


def test_min_box_size_golden(golden):
    """testdata/golden/detector-min-box-size.json (python3 -m uniter.fixtures.min_box, which the Go
    pipeline test reads) is still the reference selection of the recorded outputs."""
    with open(os.path.join(os.path.dirname(GOLDEN), "detector-min-box-size.json")) as f:
        g = json.load(f)
    by_file = {im["file"]: im for im in golden["images"]}
    assert g["selection"]["min_box_size"] > 0 and any(im["changed"] for im in g["images"])
    for im in g["images"]:
        ref = by_file[im["file"]]
        r = select_regions(np.asarray(ref["outputs"]["boxes"], np.float32),
                           np.asarray(ref["outputs"]["class_probs"], np.float32),
                           scale=ref["scale"], width=ref["width"], height=ref["height"],
                           selection=g["selection"])
        assert r["indices"] == im["indices"], im["file"]
    # ... and the generator makes it again from the detector golden.
    again = min_box.build(golden, g["base_selection"], g["selection"]["min_box_size"])
    assert again == g


def test_golden_selections(golden):
    """Selections recorded in the golden are the reference selection of the recorded raw
    outputs (exactly: the recorded float32 values round-trip), covering all three branches."""
    branches = set()
    for im in golden["images"]:
        out = im["outputs"]
        boxes = np.asarray(out["boxes"], np.float32)
        probs = np.asarray(out["class_probs"], np.float32)
        feats = np.asarray(out["features"], np.float32)
        attrs = np.asarray(out["attr_probs"], np.float32)
        for s in im["selections"]:
            r = select_regions(boxes, probs, feats, attrs, scale=im["scale"], width=im["width"],
                               height=im["height"], selection=s["selection"])
            reg = s["regions"]
            assert r["indices"] == reg["indices"]
            assert r["branch"] == s["branch"]
            branches.add(s["branch"])
            assert r["num_above_threshold"] == s["num_above_threshold"]
            np.testing.assert_array_equal(r["proposal_confidences"],
                                          np.asarray(s["proposal_confidences"], np.float32))
            np.testing.assert_array_equal(r["confidences"], np.asarray(reg["confidences"], np.float32))
            np.testing.assert_array_equal(r["soft_labels"], np.asarray(reg["soft_labels"], np.float32))
            np.testing.assert_array_equal(r["features"], np.asarray(reg["features"], np.float32))
            np.testing.assert_array_equal(r["attribute_probs"],
                                          np.asarray(reg["attribute_probs"], np.float32))
            np.testing.assert_allclose(r["boxes"], reg["boxes"], rtol=1e-10)
            np.testing.assert_allclose(r["locations"], reg["locations"], rtol=1e-10, atol=1e-12)
            assert r["iou_margin"] > 1e-5
            n = len(reg["indices"])
            sel = s["selection"]
            assert n <= sel["max_boxes"] and n >= min(sel["min_boxes"], out["proposals"])
    assert branches == {"min_boxes", "threshold", "max_boxes"}
    names = [c["name"] for c in golden["selection_cases"]]
    assert names == [c["name"] for c in fixture.SELECTION_CASES]
    for rec, case in zip(golden["selection_cases"], fixture.SELECTION_CASES):
        assert rec["expected"]["indices"] == case["expected"]["indices"]


# ---------------------------------------------------------------------------- model internals

@pytest.mark.parametrize("hw", [(64, 96), (128, 32), (32, 32)])
def test_anchors_match_torchvision(fixture_model, hw):
    """On sizes divisible by 32 (what batch_images gives training) the exported graph's anchors
    are torchvision's AnchorGenerator's, so training and inference agree."""
    x = torch.zeros(1, 3, *hw)
    feat = fixture_model.backbone(x)
    gen = AnchorGenerator(sizes=(tuple(fixture_model.config.anchor_sizes),),
                          aspect_ratios=(tuple(fixture_model.config.aspect_ratios),))
    want = gen(ImageList(x, [hw]), [feat])[0]
    torch.testing.assert_close(fixture_model.anchors(feat), want)


def test_proposal_count_is_dynamic(fixture_model):
    cfg = fixture_model.config
    counts = {}
    with torch.no_grad():
        for hw in [(1, 1), (16, 16), (40, 60), (300, 300)]:
            counts[hw] = len(fixture_model(torch.randn(1, 3, *hw) * 50)[0])
    assert counts[(1, 1)] == 1 and counts[(16, 16)] >= 1
    assert counts[(300, 300)] == cfg.rpn_post_nms_top_n_test
    assert counts[(40, 60)] < cfg.rpn_post_nms_top_n_test


def test_training_losses_hook():
    """The module layout trains with torchvision's RPN / RoI losses plus the attribute loss."""
    torch.manual_seed(0)
    model = Detector(DetectorConfig(**fixture.DETECTOR)).init_weights(0).train()
    images = [torch.randn(3, 100, 130) * 50, torch.randn(3, 90, 64) * 50]
    targets = [{"boxes": torch.tensor([[10., 10., 60., 70.], [70., 20., 120., 90.]]),
                "labels": torch.tensor([1, 3]), "attributes": torch.tensor([2, 0])},
               {"boxes": torch.tensor([[5., 5., 50., 40.]]), "labels": torch.tensor([2]),
                "attributes": torch.tensor([5])}]
    losses = model.losses(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                           "loss_box_reg", "loss_attribute"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name in ("backbone.0.weight", "rpn.head.cls_logits.weight",
                 "roi_heads.box_predictor.cls_score.weight", "attr_score.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert batch_images(images).tensors.shape[-2:] == (128, 160)
    with pytest.raises(RuntimeError, match="train"):
        model.eval().losses(images, targets)
