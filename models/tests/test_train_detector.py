"""Smoke tests for uniter.train_detector (detector training on Shapes World) and uniter.make_vocab."""
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from uniter import make_vocab
from uniter import train_detector as td
from uniter import wordpiece
from uniter.detector import Detector

RGB = {"red": (220, 30, 30), "blue": (30, 60, 230), "green": (30, 200, 40)}
PRE = dict(td.PREPROCESS, shorter_side=96, longer_side_max=128)


def write_split(root, n=4):
    """n small images (96×80 and 80×96), two or three flat shapes each, annotations.jsonl in the
    Shapes World format (box x2/y2 exclusive)."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        w, h = (96, 80) if i % 2 == 0 else (80, 96)
        im = Image.new("RGB", (w, h), (120, 120, 110))
        d = ImageDraw.Draw(im)
        objs = []
        slots = [(6, 6), (w - 40, h - 40), (6, h - 40)][: 2 + i % 2]
        for j, (x, y) in enumerate(slots):
            s = int(rng.integers(26, 33))
            shape = ["square", "circle"][(i + j) % 2]
            color = ["red", "blue", "green"][(i + 2 * j) % 3]
            box = [x, y, x + s, y + s]
            if shape == "square":
                d.rectangle([x, y, x + s - 1, y + s - 1], fill=RGB[color])
            else:
                d.ellipse([x, y, x + s - 1, y + s - 1], fill=RGB[color])
            objs.append({"box": box, "shape": shape, "color": color, "size": "large"})
        f = f"images/{i:05d}.png"
        im.save(os.path.join(root, f))
        caps = [{"text": f"a {objs[0]['color']} {objs[0]['shape']}"}]
        fcaps = [{"text": "there are no stars, right?"}]
        lines.append(json.dumps({"id": i, "file": f, "width": w, "height": h, "objects": objs,
                                 "captions": caps, "false_captions": fcaps}))
    with open(os.path.join(root, "annotations.jsonl"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return root


def tiny_config():
    cfg = td.default_config(feature_dim=32)
    cfg.backbone_channels = (8, 16, 16, 32, 32, 32)
    cfg.anchor_sizes = (24, 32, 48)
    return cfg


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_split(str(tmp_path_factory.mktemp("shapes")))


def test_labels_and_help():
    assert td.LABELS[0] == "__background__" and len(td.LABELS) == 9
    assert td.ATTRIBUTES[0] == "__no_attribute__" and len(td.ATTRIBUTES) == 9
    assert "--export" in td.build_parser().format_help()
    cfg = td.default_config()
    assert cfg.num_classes == 9 and cfg.num_attributes == 9 and cfg.stride == 16


def test_make_example_boxes_and_flip(split):
    recs = td.load_split(split)
    rec = recs[0]
    for flip in (False, True):
        x, t = td.make_example(rec, PRE, flip)
        assert x.shape[0] == 3 and t["boxes"].shape == (len(rec["objects"]), 4)
        assert t["labels"].tolist() == [td.LABELS.index(o["shape"]) for o in rec["objects"]]
        assert t["attributes"].tolist() == [td.ATTRIBUTES.index(o["color"]) for o in rec["objects"]]
        # The centre pixel of each box has the object's colour (BGR, means subtracted).
        means = torch.tensor(PRE["pixel_means"]).view(3)
        for b, o in zip(t["boxes"].tolist(), rec["objects"]):
            cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
            bgr = (x[:, cy, cx] + means).tolist()
            want = RGB[o["color"]][::-1]
            assert max(abs(a - c) for a, c in zip(bgr, want)) < 2, (flip, o, bgr)


def test_training_smoke_losses_decrease(split):
    torch.set_num_threads(1)
    recs = td.load_split(split)
    model = Detector(tiny_config()).init_weights(0)
    logged = []
    _, totals = td.train_steps(model, recs, 20, batch_size=4, lr=2e-3, warmup=3, pre=PRE,
                               fixed_batch=True, log=logged.append, log_every=5)
    assert len(totals) == 20 and all(math.isfinite(v) for v in totals)
    assert np.mean(totals[-3:]) < 0.8 * np.mean(totals[:3]), totals
    assert {"loss_objectness", "loss_classifier", "loss_attribute"} <= set(logged[-1])
    ev = td.evaluate(model, recs, pre=PRE)
    for k in ("map50", "region_recall", "color_accuracy", "shape_accuracy"):
        assert 0 <= ev[k] <= 1, (k, ev[k])
    assert 1 <= ev["selected_min"] <= ev["selected_mean"] <= ev["selected_max"] <= 100
    assert ev["gt_objects"] == sum(len(r["objects"]) for r in recs)


def test_checkpoint_roundtrip(tmp_path):
    model = Detector(tiny_config()).init_weights(1)
    path = str(tmp_path / "detector.pt")
    td.save_checkpoint(path, model, None, 7)
    m2, ck = td.load_checkpoint(path)
    assert ck["step"] == 7 and ck["labels"] == td.LABELS
    assert os.path.exists(str(tmp_path / "detector_config.json"))
    x = torch.randn(1, 3, 64, 80) * 50
    model.eval(), m2.eval()
    with torch.no_grad():
        for a, b in zip(model(x), m2(x)):
            assert torch.equal(a, b)


def test_average_precision_hand_cases():
    g = {0: np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float), 1: np.zeros((0, 4))}
    ap = td.average_precision
    # Perfect: both found, ranked above nothing wrong.
    assert ap([(0, 0.9, [0, 0, 10, 10]), (0, 0.8, [20, 20, 30, 30])], g) == pytest.approx(1.0)
    # A false positive (in an image without this class) ranked first: P = 1/2 at R = 1/2,
    # 2/3 at R = 1; the envelope gives 2/3 over the whole recall range.
    dets = [(1, 0.95, [0, 0, 10, 10]), (0, 0.8, [0, 0, 10, 10]), (0, 0.7, [20, 20, 30, 30])]
    assert ap(dets, g) == pytest.approx(2 / 3)
    # Half the objects missed: AP 0.5; a duplicate of a matched object is a false positive
    # ranked after the hit, so it does not lower AP.
    assert ap([(0, 0.9, [0, 0, 10, 10])], g) == pytest.approx(0.5)
    assert ap([(0, 0.9, [0, 0, 10, 10]), (0, 0.8, [0, 0, 10, 10])], g) == pytest.approx(0.5)
    # IoU below 0.5 (10×10 vs 10×20 shifted: 50/250) never matches; exactly 0.5 does.
    assert ap([(0, 0.9, [0, 5, 10, 25])], g) == pytest.approx(0.0)
    assert ap([(0, 0.9, [0, 0, 10, 20])], {0: np.array([[0, 0, 10, 10]], dtype=float)}) == pytest.approx(1.0)
    assert ap([], g) == 0.0
    assert math.isnan(ap([(0, 0.9, [0, 0, 1, 1])], {0: np.zeros((0, 4))}))
    # voc_ap directly: monotone envelope.
    assert td.voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(
        0.5 * 1.0 + 0.5 * 2 / 3)


def test_make_vocab(split, tmp_path):
    out = str(tmp_path / "vocab.txt")
    words = tmp_path / "words.txt"
    words.write_text("Hexagon\nleft-of\n")
    assert make_vocab.main(["--split", split, "--words", str(words), "--out", out]) == 0
    vocab = open(out, encoding="utf-8").read().splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))
    for w in ("a", "red", "circle", "there", "are", "no", "stars", "right", "?", ",",
              "hexagon", "left", "-", "of"):
        assert w in vocab, w
    # Words sorted after the specials, then characters, then their ## forms (dedup'ed).
    first_char = vocab.index("b")
    assert vocab[5:first_char] == sorted(vocab[5:first_char])
    assert vocab[-1] == "##" + make_vocab.CHARS[-1]
    assert vocab.index("##a") > vocab.index("9")
    # Deterministic, and any ASCII text tokenizes without [UNK].
    assert make_vocab.build_vocab(["B a"], ["c"]) == make_vocab.build_vocab(["c", "a b"])
    v = wordpiece.load_vocab(out)
    text = "The QUICK brown fox jumps over 13 lazy dogs! (#$%&*+-./:;<=>@[]^_`{|}~) 'x' \"y\""
    ids = wordpiece.encode(text, v, lowercase=True, max_length=200)
    assert v["[UNK]"] not in ids and ids[0] == v["[CLS]"] and ids[-1] == v["[SEP]"]


def test_main_eval_and_export(split, tmp_path, capsys):
    """--steps 0 --resume: evaluates on --val, writes eval_val.json; --export without an encoder
    bundle only says how to export later; with a bundle manifest (dims C = 9, D) it writes
    detector.onnx, attribute_labels.txt and the manifest's detector section."""
    model = Detector(tiny_config()).init_weights(2)
    ck = str(tmp_path / "run" / "detector.pt")
    os.makedirs(os.path.dirname(ck))
    td.save_checkpoint(ck, model, None, 5)
    out = str(tmp_path / "run")
    assert td.main(["--steps", "0", "--resume", ck, "--val", split, "--out", out,
                    "--export", str(tmp_path / "nobundle"), "--no-progress", "--threads", "1"]) == 0
    ev = json.load(open(os.path.join(out, "eval_val.json")))
    assert ev["images"] == 4 and ev["event"] == "final_eval"
    assert not os.path.exists(str(tmp_path / "nobundle" / "detector.onnx"))
    assert "--export" in capsys.readouterr().err
    # A bundle manifest with matching dims (only what write_detector reads).
    b = tmp_path / "bundle"
    b.mkdir()
    (b / "manifest.json").write_text(json.dumps({
        "model": {"label_dim": 9, "feature_dim": 32}, "regions": {"background_index": 0},
        "graphs": {}}))
    (b / "region_labels.txt").write_text("\n".join(td.LABELS) + "\n")
    assert td.main(["--steps", "0", "--resume", ck, "--out", out, "--export", str(b),
                    "--no-progress", "--threads", "1"]) == 0
    m = json.load(open(b / "manifest.json"))
    assert m["detector"]["preprocess"]["shorter_side"] == 256
    assert m["detector"]["preprocess"]["longer_side_max"] == 384
    assert m["detector"]["selection"] == td.SELECTION
    assert (b / "detector.onnx").exists()
    assert (b / "attribute_labels.txt").read_text().splitlines() == td.ATTRIBUTES
