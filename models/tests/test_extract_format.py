"""`uniter extract` (Go writer, offline/extract.go) against models/uniter/data.py (Python reader).

A 5-image Shapes World split is made with `uniter synth`, its images are detected with the
fixture bundle by `uniter extract`, and the result is loaded with PretrainDataset and collated:
the two sides agree on the on-disk format. Needs UNITER_BIN (see conftest.py); by hand:
    cd /work/main && go build -o bin/uniter ./cmd/uniter
    cd models && UNITER_BIN=$PWD/../bin/uniter \
        UNITER_ORT_LIBRARY=$PWD/../.cache/onnxruntime/lib/libonnxruntime.so \
        /usr/bin/python3 -m pytest -q tests/test_extract_format.py
"""
import base64
import json
import os
import subprocess

import numpy as np
import pytest
import torch

from uniter_testing import REPO
from uniter.data import PretrainDataset, RegionStore, collate

FIXTURE = os.path.join(REPO, "testdata", "bundles", "tiny-random")
COUNT = 5


def _run(args, **kw):
    env = dict(os.environ)
    if "UNITER_ORT_LIBRARY" not in env:  # the config default is relative to the repository root
        env["UNITER_ORT_LIBRARY"] = os.path.join(REPO, ".cache", "onnxruntime", "lib",
                                                 "libonnxruntime.so")
    env.setdefault("UNITER_LOG_LEVEL", "warn")
    proc = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
                          **kw)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def extracted(uniter_bin, tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    split, out = str(root / "split"), str(root / "out")
    _run([uniter_bin, "synth", "--split", "extract-py", "--seed", "31", "--count", str(COUNT),
          "--out", split, "--quiet"])
    _run([uniter_bin, "extract", "--bundle", FIXTURE, "--split-dir", split, "--out", out,
          "--workers", "2"])
    return split, out


def _annotations(split):
    with open(os.path.join(split, "annotations.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_files_and_dtypes(extracted):
    split, out = extracted
    for name in ("regions.npz", "captions.jsonl", "false_captions.jsonl", "truth.npz", "vocab.txt",
                 "extract.json"):
        assert os.path.exists(os.path.join(out, name)), name
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    with np.load(os.path.join(out, "regions.npz"), allow_pickle=False) as z:
        assert sorted(z.files) == ["boxes", "features", "locations", "offsets", "soft_labels"]
        assert z["features"].dtype == np.float16 and z["features"].shape[1] == 64
        assert z["soft_labels"].dtype == np.float16 and z["soft_labels"].shape[1] == 11
        assert z["locations"].dtype == np.float32 and z["boxes"].dtype == np.float32
        assert z["offsets"].dtype == np.int64 and z["offsets"].shape == (COUNT + 1,)
        R = z["features"].shape[0]
        assert z["offsets"][0] == 0 and z["offsets"][-1] == R
        np.testing.assert_allclose(z["soft_labels"].astype(np.float32).sum(1), 1, atol=1e-2)
    with open(os.path.join(out, "extract.json")) as f:
        info = json.load(f)
    assert info["bundle"]["name"] == "tiny-random"
    assert info["source"]["split"]["seed"] == 31 and info["source"]["split"]["count"] == COUNT
    assert info["counts"]["images"] == COUNT and info["counts"]["regions"] == R
    with open(os.path.join(FIXTURE, "vocab.txt"), "rb") as a, \
            open(os.path.join(out, "vocab.txt"), "rb") as b:
        assert a.read() == b.read()


def test_python_loader_reads_go_output(extracted):
    split, out = extracted
    anns = _annotations(split)
    ds = PretrainDataset(out)
    assert ds.num_images == COUNT
    assert ds.vocab is not None and ds.vocab.size == 243
    assert len(ds) == sum(len(a["captions"]) for a in anns)
    # Captions in annotation order, text and logical form carried through.
    c = 0
    for i, a in enumerate(anns):
        for k, cap in enumerate(a["captions"]):
            rec = ds.captions[c]
            assert rec["image"] == i and rec["text"] == cap["text"] and rec["lf"] == cap["lf"]
            assert rec["caption_id"] == f"{a['id']}-{k}"
            assert rec["input_ids"][0] == ds.vocab.special.cls
            assert rec["input_ids"][-1] == ds.vocab.special.sep
            c += 1
    # Truth: every caption true on its own image (the loader checks it too), negatives exist.
    assert ds.truth is not None and ds.truth.shape == (len(ds), COUNT)
    assert ds.truth[np.arange(len(ds)), ds.image_of].all()
    assert (~ds.truth).any()
    rng = np.random.default_rng(0)
    for c in range(len(ds)):
        j = ds.negative_image(c, rng)
        if j is not None:
            assert not ds.truth[c, j]

    # False captions: the annotations' minimal edits in order, each a text negative of its
    # source caption's image.
    falses = [(i, k, f) for i, a in enumerate(anns) for k, f in enumerate(a["false_captions"])]
    assert len(ds.false_captions) == len(falses) > 0
    first = np.cumsum([0] + [len(a["captions"]) for a in anns])
    for rec, (i, k, f) in zip(ds.false_captions, falses):
        assert rec["image"] == i and rec["text"] == f["text"] and rec["edit"] == f["edit"]
        assert rec["source"] == (first[i] + f["source"] if f["source"] >= 0 else -1)
    for c in range(len(ds)):
        f = ds.text_negative(c, rng)
        assert f is not None and ds.false_captions[f]["image"] == ds.image_of[c]

    # One collated batch: captions with their images plus one ITM negative.
    samples = [ds[c] for c in range(4)]
    samples = [dict(s, target=1) for s in samples]
    neg = next(c for c in range(len(ds)) if ds.negative_image(c, rng) is not None)
    samples.append(ds.pair(neg, ds.negative_image(neg, rng), target=0))
    batch = collate(samples, pad_id=ds.vocab.special.pad)
    B = len(samples)
    T = max(len(s["input_ids"]) for s in samples)
    N = max(ds.regions.num_regions(int(s["image_index"])) for s in samples)
    assert batch["input_ids"].shape == (B, T) and batch["text_mask"].shape == (B, T)
    assert batch["img_feat"].shape == (B, N, 64) and batch["img_feat"].dtype == torch.float32
    assert batch["img_loc"].shape == (B, N, 7)
    assert batch["img_soft_labels"].shape == (B, N, 11)
    assert batch["targets"].tolist() == [1, 1, 1, 1, 0]
    for b, s in enumerate(samples):
        n = ds.regions.num_regions(int(s["image_index"]))
        assert batch["img_mask"][b].sum() == n
        assert batch["text_mask"][b].sum() == len(s["input_ids"])
        assert torch.isfinite(batch["img_feat"][b, :n]).all()


def test_regions_match_uniter_regions(extracted, uniter_bin):
    """The stored rows are the service's regions for the image (`uniter regions --json`)."""
    split, out = extracted
    store = RegionStore(os.path.join(out, "regions.npz"))
    img = os.path.join(split, "images", "00002.png")
    proc = _run([uniter_bin, "regions", "--bundle", FIXTURE, "--json", "--features", img])
    resp = json.loads(proc.stdout)
    a, b = int(store.offsets[2]), int(store.offsets[3])
    assert len(resp["regions"]) == b - a
    boxes = np.array([r["box"] for r in resp["regions"]], dtype=np.float32)
    locs = np.array([r["location"] for r in resp["regions"]], dtype=np.float32)
    np.testing.assert_array_equal(store.boxes[a:b], boxes)
    np.testing.assert_array_equal(store.locations[a:b], locs)
    block = resp["features"]
    assert block["dtype"] == "float16" and block["shape"] == [b - a, store.feat_dim]
    feats = np.frombuffer(base64.b64decode(block["data"]), dtype="<f2").reshape(block["shape"])
    assert store.features[a:b].tobytes() == feats.tobytes()  # bit for bit: serve = train


def test_deterministic_across_workers(extracted, uniter_bin, tmp_path):
    split, out = extracted
    out2 = str(tmp_path / "out2")
    _run([uniter_bin, "extract", "--bundle", FIXTURE, "--split-dir", split, "--out", out2,
          "--workers", "1", "--quiet"])
    for name in ("regions.npz", "captions.jsonl", "truth.npz", "vocab.txt"):
        with open(os.path.join(out, name), "rb") as f1, open(os.path.join(out2, name), "rb") as f2:
            assert f1.read() == f2.read(), name


def test_truth_limit(extracted, uniter_bin, tmp_path):
    split, _ = extracted
    out = str(tmp_path / "no-truth")
    proc = _run([uniter_bin, "extract", "--bundle", FIXTURE, "--split-dir", split, "--out", out,
                 "--truth-max", "10", "--quiet"])
    assert "no truth.npz" in proc.stderr
    assert not os.path.exists(os.path.join(out, "truth.npz"))
    ds = PretrainDataset(out)
    assert ds.truth is None and ds.negative_image(0, np.random.default_rng(0)) is not None
