"""The analyses of trained models (uniter.diagnostics) and uniter.adopt.

Their parts are checked on planted inputs whose answers are known. Then, with UNITER_BIN (see
conftest.py), on a small Shapes World work folder made by `uniter synth` and `uniter extract`
with the fixture bundle: an oracle model whose hidden states tie every word of a shape or colour
span to its object's region (so the cosine must ground every span), and a random model that every
analysis's command line runs on.

Run:  cd models && /usr/bin/python3 -m pytest -q tests/test_diagnostics.py
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from uniter import adopt
from uniter.data import PretrainDataset, write_split
from uniter.diagnostics import (aux_relation_ft, common, count_failures, count_near_misses, location_probe,
                                location_study, masking, mlm_probe, plan_anatomy, plan_capacity,
                                plan_distractors, plan_misses, plan_sources, plan_targets, readouts,
                                relation_swaps)
from uniter.model import UniterConfig
from uniter.ot import ipot
from uniter.pretrain import build_model, resolve_config, save_checkpoint
from uniter_testing import REPO, run_uniter

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "testdata", "bundles", "tiny-random")
CHECKPOINT = os.path.join(REPO, "testdata", "checkpoints")

torch.set_num_threads(1)


# ------------------------------------------------------------------------------ common parts

def test_iou():
    assert common.iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert common.iou([0, 0, 2, 2], [2, 0, 4, 2]) == 0.0
    assert common.iou([0, 0, 2, 2], [1, 0, 3, 2]) == pytest.approx(1 / 3)


def test_token_spans_follow_greedy_wordpiece():
    vocab = {"a", "red", "square", "##s", "hex", "##agon", "##ag"}
    text = "A red squares hexagon"
    spans = common.token_spans(text, vocab)
    assert [text[s:e].lower() for s, e in spans] == ["a", "red", "square", "s", "hex", "agon"]
    assert common.span_positions(spans, {"start": 6, "end": 13}) == [3, 4]  # [CLS] is position 0
    with pytest.raises(ValueError, match="tokenize"):
        common.token_spans("blue", vocab)


def test_matches_leaves_out_what_the_description_leaves_out():
    o = {"shape": "square", "color": "red", "size": "small"}
    assert common.matches({"shape": "square"}, o) and common.matches({"shape": "square", "color": "", "size": None}, o)
    assert not common.matches({"shape": "square", "color": "blue"}, o)


def test_naming_words_of_the_fixture_bundle():
    words = common.naming_words(FIXTURE)
    assert {"circle", "circles", "crosses", "red", "small", "large"} <= words
    assert "left" not in words and "two" not in words


def test_mask_first_masks_only_the_first_group_word():
    ids = torch.tensor([[2, 7, 9, 8, 3], [2, 5, 5, 3, 0], [2, 8, 7, 3, 0]])
    out, rows, first, labels, keep = common.mask_first(ids, torch.tensor([7, 8]), 4)
    assert keep.tolist() == [True, False, True]
    assert first[keep].tolist() == [1, 1] and labels[keep].tolist() == [7, 8]
    assert out.tolist() == [[2, 4, 9, 8, 3], [2, 5, 5, 3, 0], [2, 4, 7, 3, 0]]


def test_mask_one_of_draws_one_allowed_position_per_caption():
    ids = torch.arange(20).view(4, 5)
    can = torch.zeros(4, 5, dtype=torch.bool)
    can[0, [1, 3]] = True
    can[2, 4] = True
    out, rows, pick, labels = common.mask_one_of(ids, can, 99, torch.Generator().manual_seed(0))
    assert rows.tolist() == [0, 2] and pick[1] == 4 and int(pick[0]) in (1, 3)
    assert labels.tolist() == [int(ids[0, pick[0]]), 14]
    assert (out == 99).sum() == 2 and (out[1] == ids[1]).all()


def test_other_image_rows_pick_another_image():
    images = torch.tensor([0, 0, 0, 1, 1, 2])
    for shift in (1, 2, 37):
        p = common.other_image_rows(images, shift)
        assert (images[p] != images).all(), shift
    assert common.other_image_rows(torch.tensor([3, 3, 3]), 1).tolist() == [2, 0, 1]


def test_permute_locations_keeps_each_image_s_boxes_and_the_padding():
    loc = torch.arange(2 * 4 * 7, dtype=torch.float).view(2, 4, 7)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    out = common.permute_locations(loc, mask, torch.Generator().manual_seed(3))
    for i, n in enumerate((3, 2)):
        assert sorted(map(tuple, out[i, :n].tolist())) == sorted(map(tuple, loc[i, :n].tolist()))
        assert torch.equal(out[i, n:], loc[i, n:])
    assert not torch.equal(out, loc)


class _Oracle:
    """A stand-in model for the masked-word probe: it predicts the id in the first region's first
    feature, and nothing from the locations."""

    def __init__(self, vocab_size):
        self.V = vocab_size

    def uniter(self, ids, text_mask, feat, loc, mask):
        B, T = ids.shape
        h = torch.zeros(B, T + feat.shape[1], self.V)
        h[torch.arange(B), :, feat[:, 0, 0].long()] = 1.0
        return h, None, None

    def cls(self, h):
        return h


def test_masked_word_accuracy_sees_what_each_probe_changes():
    ids = torch.tensor([[2, 7, 3], [2, 7, 3], [2, 8, 3], [2, 8, 3]])  # two captions per image
    feat = torch.zeros(4, 2, 3)
    feat[:, 0, 0] = torch.tensor([7.0, 7.0, 8.0, 8.0])
    x = {"input_ids": ids, "text_mask": torch.ones_like(ids), "img_feat": feat, "img_loc": torch.rand(4, 2, 7),
         "img_mask": torch.ones(4, 2, dtype=torch.long), "image_index": torch.tensor([0, 0, 1, 1])}
    m, group = _Oracle(10), torch.tensor([7, 8, 9])
    acc = {how: common.masked_word_accuracy(m, x, group, 4, how) for how in common.PROBES}
    assert acc == {"image": 1.0, "other": 0.0, "zeroed": 0.0, "permuted": 1.0}
    with pytest.raises(ValueError):
        common.masked_word_accuracy(m, x, group, 4, "shuffled")


# ------------------------------------------------------------------------------ plan analyses

def test_plan_misses_sorts_the_plan_s_misses():
    # tokens: [CLS], the noun, a colour word; regions: the noun's object (0), two others
    good, names = [True, False, False], [False, True, True]
    cos = torch.tensor([[0.1, 0.1, 0.1], [0.9, 0.1, 0.2], [0.1, 0.9, 0.1]])
    plan = torch.tensor([[0.1, 0.1, 0.1], [0.3, 0.0, 0.0], [0.0, 0.2, 0.2]])
    assert plan_misses.classify(plan, cos, [1], good, names) == (plan_misses.HIT, None)
    lost = torch.tensor([[0.2, 0.0, 0.0], [0.05, 0.25, 0.0], [0.15, 0.1, 0.1]])  # the plan sends the noun to region 1
    assert plan_misses.classify(lost, torch.tensor([[0.0] * 3, [0.1, 0.9, 0.1], [0.0] * 3]), [1], good,
                                names) == (plan_misses.COSINE_WRONG, None)
    kind, share = plan_misses.classify(lost, cos, [1], good, names)  # the colour word's cosine peaks on region 1
    assert kind == plan_misses.CLAIMED
    assert share == pytest.approx((0.05 / 0.4, 0.15 / 0.4, 0.2 / 0.4))
    kind, _ = plan_misses.classify(lost, cos, [1], good, [False, True, False])
    assert kind == plan_misses.UNCLAIMED


def test_ipot_plan_ignores_per_token_cost_constants():
    """What plan_targets rests on: a fitted cos = tau log p + c_t gives the plan of -tau log p."""
    g = torch.Generator().manual_seed(0)
    B, M, N = 2, 5, 4
    C = torch.rand(B, M, N, generator=g)
    tpad = torch.zeros(B, M, dtype=torch.bool)
    tpad[1, 4] = True
    ipad = torch.zeros(B, N, dtype=torch.bool)
    ipad[0, 3] = True
    jp = tpad.unsqueeze(-1) | ipad.unsqueeze(-2)
    args = ((~tpad).sum(1).float(), tpad, (~ipad).sum(1).float(), ipad, jp)
    P = ipot(C.masked_fill(jp, 0), *args)
    shifted = (C + torch.rand(B, M, 1, generator=g)).masked_fill(jp, 0)
    torch.testing.assert_close(ipot(shifted, *args), P, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(ipot((C * torch.rand(B, M, N, generator=g)).masked_fill(jp, 0), *args), P, atol=1e-3)


def test_target_shapes_cut_and_smooth():
    q = torch.tensor([[[0.5, 0.3, 0.2, 0.0]]])
    assert plan_targets.cut(q, 0.5)[0, 0].tolist() == pytest.approx([0.625, 0.375, 0.0, 0.0])
    assert plan_targets.cut(q, 1.0)[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    real = torch.tensor([[True, True, True, False]])
    s = plan_targets.smooth(plan_targets.cut(q, 1.0), 0.3, real)[0, 0]
    assert s.tolist() == pytest.approx([0.8, 0.1, 0.1, 0.0])


def test_token_masks_and_label_restriction():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "square", "squares", "left"]
    ids = torch.tensor([[2, 5, 6, 7, 9, 3, 0]])
    tpad = ids == 0
    spec, words, name, other = plan_targets.token_masks(vocab, ids, tpad, {"red", "square", "squares"})
    assert spec[0].tolist() == [True, False, False, False, False, True, False]
    assert name[0].tolist() == [False, False, True, True, False, False, False]
    assert other[0].tolist() == [True, True, False, False, True, True, False]
    classes = plan_sources.token_classes(vocab, ["__background__", "circle", "square"])
    assert classes.tolist() == [0] * 7 + [2, 2, 0]
    q = torch.tensor([[[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]]])
    match = torch.tensor([[[False, False, True], [False, False, False]]])
    r = plan_sources.label_restricted(q, match)
    assert int(r[0, 0].argmax()) == 2 and torch.equal(r[0, 1], q[0, 1])


def test_plan_capacity():
    naming = {"red", "square"}
    assert plan_capacity.capacity(["[CLS]", "a", "red", "square", "[SEP]"], naming, [True, False, False, False]) == (0.6, 0.75)


def _batch(cost, text_len, regions):
    B, T, N = cost.shape
    tpad = torch.arange(T)[None] >= torch.tensor(text_len)[:, None]
    ipad = torch.arange(N)[None] >= torch.tensor(regions)[:, None]
    jp = tpad.unsqueeze(-1) | ipad.unsqueeze(-2)
    return common.Batch(list(range(B)), {}, None, (), T, tpad, ipad, jp, cost.masked_fill(jp, 0),
                        (~tpad).sum(1).float(), (~ipad).sum(1).float())


def test_plan_without_specials_leaves_out_cls_and_sep():
    b = _batch(torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(1)), [6, 4], [4, 3])
    P = plan_anatomy.plan_without_specials(b)
    assert float(P[0, 0].abs().sum()) == 0 and float(P[0, 5].abs().sum()) == 0
    assert float(P[1, 0].abs().sum()) == 0 and float(P[1, 3].abs().sum()) == 0
    torch.testing.assert_close(P.sum((1, 2)), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(P[0, 1:5].sum(1), torch.full((4,), 0.25), atol=1e-4, rtol=0)


def test_token_kinds_and_landings():
    tokens = [(0, 1), (2, 5), (6, 12), (12, 13)]  # "a red squares"
    spans = [{"start": 0, "end": 13, "kind": "ref"}, {"start": 2, "end": 5, "kind": "color"},
             {"start": 6, "end": 13, "kind": "shape"}]
    assert plan_anatomy.token_kinds(tokens, spans, 6) == {0: "special", 1: "ref", 2: "color", 3: "shape",
                                                            4: "shape", 5: "special"}
    objects = [{"box": [0, 0, 10, 10], "shape": "square"}, {"box": [20, 0, 30, 10], "shape": "square"},
               {"box": [40, 0, 50, 10], "shape": "star"}]
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 61, 30], [60, 0, 90, 30]], np.float32)
    assert plan_anatomy.landing(boxes, 1, objects, {0, 1}) == "mentioned other"
    assert plan_anatomy.landing(boxes, 2, objects, {0}) == "unmentioned object"
    assert plan_anatomy.landing(boxes, 4, objects, {0}) == "no object"
    assert plan_distractors.landing(boxes, 1, objects, [0]) == plan_distractors.SAME_SHAPE
    assert plan_distractors.landing(boxes, 2, objects, [0]) == plan_distractors.OTHER_SHAPE
    assert plan_distractors.landing(boxes, 4, objects, [0]) == plan_distractors.NO_OBJECT
    assert readouts.landing(boxes, 0, True, objects) == "referred object"
    assert readouts.landing(boxes, 2, False, objects) == "another object"
    assert readouts.landing(boxes, 3, False, objects) == "sliver"
    assert readouts.landing(boxes, 4, False, objects) == "other"


# ------------------------------------------------------------------------------ counts, relations

def test_count_failures_summary():
    images = [{"objects": [{"shape": "square", "color": "red", "size": "small"}] * k} for k in (1, 2, 5)]
    captions = [{"lf": {"op": "count", "n": 2, "obj": {"shape": "square"}}},
                {"lf": {"op": "exists", "obj": {"shape": "square"}}},
                {"lf": {"op": "count", "n": 1, "obj": {"shape": "square", "color": "red"}}}]
    truth = np.array([[0, 1, 0], [1, 1, 1], [1, 0, 0]], bool)
    scores = np.array([[0.1, 0.5, 0.9], [0.0, 0.0, 0.0], [0.8, 0.2, 0.1]], np.float32)
    r = count_failures.summarise(scores, truth, captions, images)
    assert r["captions"] == 2 and r["r1"] == 0.5
    assert r["misses"] == {(2, 5): 1}
    assert r["mean_p"] == pytest.approx({-1: 0.1, 0: 0.65, 1: 0.2, 3: 0.9, 4: 0.1})
    assert r["pairs"] == {-1: 1, 0: 2, 1: 1, 3: 1, 4: 1}


def test_relation_truth():
    a = {"shape": "square", "color": "red", "size": "small", "box": [0, 0, 10, 10]}
    b = {"shape": "circle", "color": "blue", "size": "large", "box": [50, 45, 70, 65]}
    rec = {"width": 100, "height": 100, "objects": [a, b]}
    lf = {"op": "relation", "rel": "left_of", "a": {"shape": "square"}, "b": {"shape": "circle"}}
    assert relation_swaps.relation_true(lf, rec)
    assert relation_swaps.relation_true(dict(lf, rel="above"), rec)
    assert not relation_swaps.relation_true(dict(lf, rel="right_of"), rec)
    assert not relation_swaps.relation_true(dict(lf, a={"shape": "square", "color": "blue"}), rec)
    near = {"width": 100, "height": 100, "objects": [a, dict(b, box=[3, 0, 13, 10])]}  # within the 5% margin
    assert not relation_swaps.relation_true(lf, near) and not relation_swaps.relation_true(dict(lf, rel="right_of"), near)


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "square", "circle", "left", "of", "right",
         "above", "below", "two", "squares"]


def _relation_split(root):
    """Two images and three captions: "a square left of a circle" on image 0 (its swap is false
    there), the same on image 1 (where a square right of the circle makes the swap true too), and
    a count caption with a near miss."""
    recs = [{"width": 100, "height": 100, "objects": [
                {"shape": "square", "color": "red", "size": "small", "box": [0, 0, 10, 10]},
                {"shape": "circle", "color": "red", "size": "small", "box": [50, 0, 60, 10]}]},
            {"width": 100, "height": 100, "objects": [
                {"shape": "square", "color": "red", "size": "small", "box": [0, 0, 10, 10]},
                {"shape": "circle", "color": "red", "size": "small", "box": [50, 0, 60, 10]},
                {"shape": "square", "color": "red", "size": "small", "box": [90, 0, 100, 10]}]}]
    rel = {"op": "relation", "rel": "left_of", "a": {"shape": "square"}, "b": {"shape": "circle"}}
    caps = [{"image": 0, "input_ids": [2, 5, 6, 8, 9, 5, 7, 3], "lf": rel},
            {"image": 1, "input_ids": [2, 5, 6, 8, 9, 5, 7, 3], "lf": rel},
            {"image": 1, "input_ids": [2, 13, 14, 3], "lf": {"op": "count", "n": 2, "obj": {"shape": "square"}}}]
    feats = np.ones((5, 4))
    write_split(str(root / "feat"), feats, np.zeros((5, 7)), np.full((5, 3), 1 / 3), np.zeros((5, 4)),
                [0, 2, 5], caps, truth=[[1, 0], [1, 1], [0, 1]], vocab_tokens=VOCAB,
                near=[[0, 1], [0, 0], [1, 0]])
    os.makedirs(root / "split")
    with open(root / "split" / "annotations.jsonl", "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    return str(root / "feat"), str(root / "split")


def test_relation_swaps_build(tmp_path):
    feat, split = _relation_split(tmp_path)
    assert relation_swaps.build(feat, split, str(tmp_path / "out")) == (2, 1)
    with open(tmp_path / "out" / "false_captions.jsonl") as f:
        (swap,) = [json.loads(line) for line in f]
    assert swap["input_ids"] == [2, 5, 6, 10, 9, 5, 7, 3] and swap["source"] == 0 and swap["lf"]["rel"] == "right_of"
    assert sorted(os.listdir(tmp_path / "out")) == ["captions.jsonl", "false_captions.jsonl", "regions.npz",
                                                     "truth.npz", "vocab.txt"]
    ds = PretrainDataset(str(tmp_path / "out"))
    assert len(ds.false_captions) == 1 and ds.false_captions[0]["edit"] == "relation"


def test_count_near_misses_build(tmp_path):
    feat, _ = _relation_split(tmp_path)
    assert count_near_misses.build(feat, str(tmp_path / "out")) == (1, 1)
    with np.load(tmp_path / "out" / "truth.npz") as z:
        assert z["near"].tolist() == [[False, False], [False, False], [True, False]]
        assert z["truth"].tolist() == [[True, False], [True, True], [False, True]]
    assert PretrainDataset(str(tmp_path / "out")).near is not None


# ------------------------------------------------------------------------------ training studies

def test_masking_positions():
    groups = {"colour": torch.tensor([10, 11]), "shape": torch.tensor([20, 21]), "size": torch.tensor([30]),
              "relation": torch.tensor([40])}
    ids = torch.tensor([[2, 10, 20, 40, 11, 3], [2, 5, 21, 30, 3, 0]])
    tm = (ids != 0).long()
    assert masking.maskable("colour", 1, ids, tm, groups).tolist() == [[False, True] + [False] * 4, [False] * 6]
    assert masking.maskable("shape", 1, ids, tm, groups).tolist() == [[False, False, True, False, False, False],
                                                                      [False, False, True, False, False, False]]
    assert masking.maskable("one", 1, ids, tm, groups).tolist() == [[False, True, True, True, True, False],
                                                                    [False, True, True, True, False, False]]
    assert masking.maskable("alt", 1, ids, tm, groups)[0, 1] and masking.maskable("alt", 2, ids, tm, groups)[0, 2]
    assert [bool(masking.maskable("catbatch", s, ids, tm, groups)[0, p]) for s, p in ((0, 1), (1, 2), (3, 3))] == [True] * 3
    assert masking.maskable("content", 1, ids, tm, groups)[1].tolist() == [False, False, True, True, False, False]


def test_keep_confident_regions(tmp_path):
    soft = np.array([[0.1, 0.9, 0], [0.6, 0.2, 0.2], [0.5, 0.3, 0.2], [0.2, 0.1, 0.7], [0.1, 0.8, 0.1]])
    write_split(str(tmp_path), np.arange(5)[:, None] * np.ones((5, 2)), np.zeros((5, 7)), soft,
                np.zeros((5, 4)), [0, 2, 3, 5], [{"image": i, "input_ids": [2, 3]} for i in range(3)])
    ds = PretrainDataset(str(tmp_path))
    assert masking.keep_confident(ds) == 4
    # image 0 keeps region 0, image 1 (none confident) its best, image 2 both
    assert ds.regions.offsets.tolist() == [0, 1, 2, 4]
    assert ds.regions.features[:, 0].tolist() == [0, 2, 3, 4]
    masking.standardise(ds, np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    assert ds.regions.features[:, 1].tolist() == [-0.5, 0.5, 1.0, 1.5]


def test_location_study_modes_and_variants():
    assert location_study.parse_mode("size") == ("size", "", 0)
    assert location_study.parse_mode("size+uniform") == ("size", "uniform", -1)
    assert location_study.parse_mode("relation+twoobj500") == ("relation", "twoobj", 500)
    assert location_study.parse_mode("size+x10") == ("size", "x10", 0)
    for bad in ("shape", "size+x20", "size+uniformX"):
        with pytest.raises(ValueError):
            location_study.parse_mode(bad)
    model = build_model(UniterConfig.from_json(os.path.join(CHECKPOINT, "tiny-random.json")), 0)
    emb = model.uniter.img_embeddings
    lin = emb.pos_linear
    location_study.apply_variant(model, "x10")
    x = torch.rand(3, 7)
    torch.testing.assert_close(emb.pos_linear(x), lin(10 * x))
    location_study.apply_variant(model, "noln")
    assert isinstance(emb.pos_layer_norm, torch.nn.Identity)


# ------------------------------------------------------------------------------ adopt

def _final(step, init, **train):
    return {"step": step, "seed": 42, "tasks": {"itm": 1.0}, "init": init, "train": dict(lr=3e-5, **train),
            "val": {"itm_acc": 0.9}}


def test_adopted_provenance():
    prev = {"checkpoint": "/x/head-cont-wra/final.pt", "pretraining": {"steps": 20000}, "mlm_head_refit": {"steps": 1500},
            "exported": "then", "evaluation": {"test-1k": {}}, "encoder_graphs_reexported": True}
    p = adopt.adopted_provenance(prev, {"exported": "now", "opset": 17}, _final(6000, "RUNS/h/final.pt", plan_rows=0.5),
                                 _final(1500, "RUNS/p/final.pt"), "W", "wra", "somewhere")
    assert list(p) == ["checkpoint", "pretraining", "exported", "mlm_head_refit_before_plan", "plan_stage",
                       "mlm_head_refit", "opset"]
    assert p["mlm_head_refit_before_plan"] == {"steps": 1500}
    assert p["plan_stage"]["init"] == "W/head-cont-wra/final.pt" and p["plan_stage"]["started_from"] == "somewhere"
    assert p["plan_stage"]["steps"] == 6000 and p["plan_stage"]["plan_rows"] == 0.5
    assert p["mlm_head_refit"]["init"] == "W/plan-wra/final.pt" and p["mlm_head_refit"]["steps"] == 1500
    assert p["checkpoint"] == os.path.abspath("W/head-wra/final.pt") and p["exported"] == "now"
    # a previous default with a plan stage already keeps its re-fit before the plan
    again = adopt.adopted_provenance(p, {}, _final(3000, "a"), _final(1000, "b"), "W", "wra", "there")
    assert again["mlm_head_refit_before_plan"] == {"steps": 1500} and again["plan_stage"]["steps"] == 3000


def test_relation_provenance():
    prev = {"checkpoint": "/x/head-wra/final.pt", "plan_stage": {"steps": 6000}, "mlm_head_refit": {"steps": 1500},
            "evaluation": {"test-1k": {}}, "exported": "then"}
    cur = [("above", _final(800, "a", itm_text_negatives=1.0)), ("above,below", _final(800, "b"))]
    p = adopt.relation_provenance(prev, {"exported": "now"}, cur, _final(3000, "c", plan_rows=0.1),
                                  _final(1500, "d"), "W", "wra", "somewhere", 30000, 8000)
    assert "evaluation" not in p and p["plan_stage"] == {"steps": 6000} and p["mlm_head_refit"] == {"steps": 1500}
    r = p["relation_stages"]
    assert r["started_from"] == "somewhere" and r["data"]["curriculum"]["images"] == 30000
    assert r["data"]["matching"] == {"split": "train", "seed": 1, "images": 8000, "truth": True}
    # the init paths chain as train-shapes.sh names the runs
    assert [(c["relations"], c["init"]) for c in r["curriculum"]] == [
        ("above", "W/head-wra/final.pt"), ("above,below", "W/rel1-above-wra/final.pt")]
    assert r["curriculum"][0]["itm_text_negatives"] == 1.0
    assert r["matching"]["init"] == "W/rel2-above,below-wra/final.pt" and r["matching"]["plan_rows"] == 0.1
    assert r["mlm_head_refit"]["init"] == "W/rel-wra/final.pt"
    assert p["checkpoint"] == os.path.abspath("W/head-rel-wra/final.pt") and p["exported"] == "now"
    assert adopt._curriculum("above=R1,above,below=R2,left_of=R3") == [
        ("above", "R1"), ("above,below", "R2"), ("left_of", "R3")]
    for bad in ("above,below", "above=R1,below", ""):
        with pytest.raises(SystemExit):
            adopt._curriculum(bad)


def test_adopt_builds_the_bundle(tmp_path):
    head, plan = tmp_path / "head", tmp_path / "plan"
    os.makedirs(head)
    os.makedirs(plan)
    shutil.copyfile(os.path.join(CHECKPOINT, "tiny-random.pt"), head / "final.pt")
    shutil.copyfile(os.path.join(CHECKPOINT, "tiny-random.json"), head / "config.json")
    (head / "final.json").write_text(json.dumps(_final(1500, "x")))
    (plan / "final.json").write_text(json.dumps(_final(6000, "y", plan_rows=0.5)))
    with open(os.path.join(FIXTURE, "manifest.json")) as f:
        previous = json.load(f)
    previous["provenance"]["mlm_head_refit"] = {"steps": 1500}
    (tmp_path / "previous.json").write_text(json.dumps(previous))
    for s, v in (("1k", 0.81), ("100", 0.83)):
        (tmp_path / f"r{s}.json").write_text(json.dumps({"ir_r1": v, "itm_accuracy": 0.97, "seconds": 1}))
    out = tmp_path / "out"
    assert adopt.main(["--plan-stage", str(plan), "--head-refit", str(head), "--report-1k", str(tmp_path / "r1k.json"),
                       "--report-100", str(tmp_path / "r100.json"), "--out", str(out), "--previous",
                       str(tmp_path / "previous.json"), "--detector-bundle", FIXTURE, "--work", "W"]) == 0
    with open(out / "manifest.json") as f:
        m = json.load(f)
    assert m["name"] == previous["name"] and m["detector"] == previous["detector"] and m["text"] == previous["text"]
    assert m["graphs"]["detector"] == previous["graphs"]["detector"]
    # the same weights as the fixture bundle, exported again
    assert m["graphs"]["encoder"]["sha256"] == previous["graphs"]["encoder"]["sha256"]
    p = m["provenance"]
    assert p["evaluation"] == {"test-1k": {"ir_r1": 0.81, "itm_accuracy": 0.97},
                               "test-100": {"ir_r1": 0.83, "itm_accuracy": 0.97}}
    assert p["mlm_head_refit_before_plan"] == {"steps": 1500} and p["plan_stage"]["plan_rows"] == 0.5
    assert previous["graphs"]["encoder"]["sha256"] in p["plan_stage"]["started_from"]
    for f in ("detector.onnx", "attribute_labels.txt", "eval-wra-test-1k.json", "eval-wra-test-100.json"):
        assert os.path.exists(out / f), f


# ------------------------------------------------------------------------------ the modules run

MODULES = ["export", "recover", "pretrain", "train_detector", "make_vocab", "shapes_bundle", "bench", "adopt",
           "fixtures.tiny_random", "fixtures.detector", "fixtures.min_box", "fixtures.ot_golden"] + [
    "diagnostics." + m for m in ("readouts", "plan_misses", "plan_sources", "plan_targets", "plan_capacity",
                                 "plan_anatomy", "plan_distractors", "location_probe", "location_study", "masking",
                                 "mlm_probe", "count_failures", "count_near_misses", "relation_swaps",
                                 "aux_relation_ft")]


def test_every_module_has_a_command_line_help():
    """Each tool runs as python3 -m uniter.NAME (as runpy runs it) and documents itself."""
    script = ("import contextlib, io, runpy, sys\n"
              "for m in sys.argv[1:]:\n"
              "    sys.argv = [m, '--help']\n"
              "    out = io.StringIO()\n"
              "    try:\n"
              "        with contextlib.redirect_stdout(out):\n"
              "            runpy.run_module('uniter.' + m, run_name='__main__', alter_sys=True)\n"
              "    except SystemExit as e:\n"
              "        assert e.code in (0, None), (m, e.code)\n"
              "    text = out.getvalue()\n"
              "    assert text.startswith('usage: python3 -m uniter.' + m + ' '), (m, text[:100])\n"
              "    assert len(text) > 300, (m, text)\n"
              "print('ok', len(sys.argv))\n")
    proc = subprocess.run([sys.executable, "-c", script] + MODULES, cwd=MODELS, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ------------------------------------------------------------------------------ on Shapes World data

@pytest.fixture(scope="module")
def work(uniter_bin, tmp_path_factory):
    """A work folder as train-shapes.sh lays it out (train/, val/, feat-train/, feat-val/; regions
    from the fixture bundle's random detector) and RUN/ with a small random model."""
    root = tmp_path_factory.mktemp("work")
    for split, count in (("train", 24), ("val", 12)):
        run_uniter(uniter_bin, ["synth", "--split", split, "--count", str(count), "--out", str(root / split), "--quiet"])
        run_uniter(uniter_bin, ["extract", "--bundle", FIXTURE, "--split-dir", str(root / split),
                                "--out", str(root / f"feat-{split}"), "--workers", "2"])
    ds = PretrainDataset(str(root / "feat-train"))
    cfg = resolve_config(dict(common.STUDY_CONFIG, hidden_size=32, intermediate_size=64, num_hidden_layers=2),
                         ds, ds.vocab)
    os.makedirs(root / "run")
    (root / "run" / "config.json").write_text(json.dumps(cfg.to_dict()))
    save_checkpoint(build_model(cfg, 0), str(root / "run" / "final.pt"), {"steps": 0})
    return root


def test_truth_agrees_with_the_grammar(work):
    """The relation and count evaluators (relation_swaps, count_failures) agree with `uniter synth`'s
    truth on every caption and image, and its relation edits are false on their image."""
    for split in ("train", "val"):
        ds = PretrainDataset(str(work / f"feat-{split}"))
        with open(work / split / "annotations.jsonl") as f:
            recs = [json.loads(line) for line in f]
        ops = set()
        for c, cap in enumerate(ds.captions):
            lf = cap["lf"]
            ops.add(lf["op"])
            for i, rec in enumerate(recs):
                if lf["op"] == "relation":
                    assert relation_swaps.relation_true(lf, rec) == ds.truth[c, i], (split, c, i)
                elif lf["op"] == "count":
                    assert (sum(common.matches(lf["obj"], o) for o in rec["objects"]) == lf["n"]) == ds.truth[c, i]
        assert {"relation", "count"} <= ops
        edits = [f for f in ds.false_captions if f.get("edit") == "relation"]
        assert edits and not any(relation_swaps.relation_true(f["lf"], recs[f["image"]]) for f in edits)
    n, kept = relation_swaps.build(str(work / "feat-train"), str(work / "train"), str(work / "swaps"))
    assert 0 < kept <= n
    swaps = PretrainDataset(str(work / "swaps"))
    assert len(swaps.false_captions) == kept
    n, _ = count_near_misses.build(str(work / "feat-train"), str(work / "counts"))
    near = PretrainDataset(str(work / "counts")).near
    is_count = np.array([c["lf"]["op"] == "count" for c in swaps.captions])
    assert n == is_count.sum() and not near[~is_count].any()


def _oracle_features(work, root):
    """feat-val with the annotated objects as the regions (one per object, its box shrunk to 80%
    of each side: IoU 0.64; then one on the background), and features that name them: [image,
    object (-1: background), ...]."""
    shutil.copytree(work / "feat-val", root / "feat-val")
    shutil.copytree(work / "val", root / "val", ignore=shutil.ignore_patterns("images"))
    with open(work / "val" / "annotations.jsonl") as f:
        recs = [json.loads(line) for line in f]
    labels = open(os.path.join(FIXTURE, "region_labels.txt")).read().split()
    feats, locs, soft, boxes, offs = [], [], [], [], [0]
    for i, rec in enumerate(recs):
        W, H = rec["width"], rec["height"]
        for j, o in enumerate(rec["objects"] + [{"box": [W - 2, H - 2, W, H], "shape": None}]):
            x1, y1, x2, y2 = o["box"]
            if o["shape"]:
                dx, dy = (x2 - x1) / 10, (y2 - y1) / 10
                x1, y1, x2, y2 = x1 + dx, y1 + dy, x2 - dx, y2 - dy
            f = np.zeros(64)
            f[0], f[1] = i, j if o["shape"] else -1
            feats.append(f)
            locs.append([x1 / W, y1 / H, x2 / W, y2 / H, (x2 - x1) / W, (y2 - y1) / H, (x2 - x1) * (y2 - y1) / (W * H)])
            s = np.zeros(len(labels))
            s[labels.index(o["shape"]) if o["shape"] else 0] = 1
            soft.append(s)
            boxes.append([x1, y1, x2, y2])
        offs.append(len(feats))
    np.savez(root / "feat-val" / "regions.npz", features=np.array(feats, np.float16),
             locations=np.array(locs, np.float32), soft_labels=np.array(soft, np.float16),
             boxes=np.array(boxes, np.float32), offsets=np.array(offs, np.int64))
    return recs


class _GroundingOracle(torch.nn.Module):
    """Hidden states that tie each token of a shape or colour span to its (first) object: one-hot
    vectors, the object's for its region and its span's tokens, others for the background region
    and every other token. Its token positions come from its own alignment of the tokens to the
    caption, not from uniter.diagnostics."""
    H = 64

    def __init__(self, ds, recs, vocab, layers=2, heads=2):
        super().__init__()
        self.ds, self.recs, self.vocab, self.layers, self.heads = ds, recs, vocab, layers, heads
        self.by_ids = {(c["image"], tuple(c["input_ids"])): c for c in ds.captions}

    def _token_objects(self, cap, ann):
        text, pos, out = cap["text"].lower(), 0, []
        for t in cap["input_ids"][1:-1]:
            piece = self.vocab[t][2:] if self.vocab[t].startswith("##") else self.vocab[t]
            s = text.index(piece, pos)
            pos = s + len(piece)
            obj = [sp["objects"][0] for sp in ann["spans"]
                   if sp["kind"] in ("shape", "color") and sp["objects"] and sp["start"] <= s and pos <= sp["end"]]
            out.append(obj[0] if obj else None)
        return [None] + out + [None]

    def forward(self, ids, text_mask, feat, loc, mask, img_masks=None):
        B, T = ids.shape
        N = feat.shape[1]
        h = torch.zeros(B, T + N, self.H)
        for k in range(B):
            image = int(feat[k, 0, 0])
            cap = self.by_ids[(image, tuple(ids[k][text_mask[k].bool()].tolist()))]
            ann = self.recs[image]["captions"][int(cap["caption_id"].split("-")[1])]
            for t, obj in enumerate(self._token_objects(cap, ann)):
                h[k, t, self.H - 1 if obj is None else obj] = 1
            for r in range(int(mask[k].sum())):
                obj = int(feat[k, r, 1])
                h[k, T + r, self.H - 2 if obj < 0 else obj] = 1
        valid = torch.cat([text_mask, mask], 1).float()
        a = valid[:, None, None, :].expand(B, self.heads, T + N, T + N) / valid.sum(1)[:, None, None, None]
        return h, h[:, 0], tuple(a for _ in range(self.layers))


def test_grounding_analyses_on_an_oracle(work, tmp_path):
    recs = _oracle_features(work, tmp_path)
    st = common.Study(str(work / "run" / "final.pt"), str(tmp_path))
    st.model.uniter = _GroundingOracle(st.ds, recs, st.vocab)
    ncap = len(st.caps)
    hits, lands = readouts.analyse(st, ncap)
    for kind in ("shape", "color"):
        n = hits[kind]["cos"][1]
        assert n > 10 and hits[kind]["cos"] == [n, n], kind
        assert hits[kind]["chance"][0] < 0.9 * n
    assert sum(lands.values()) == hits["shape"]["ot"][1] and lands["referred object"] == hits["shape"]["ot"][0]
    assert lands["sliver"] == 0
    count, shares, _ = plan_misses.analyse(st, ncap, common.naming_words(FIXTURE))
    assert sum(count.values()) == hits["shape"]["cos"][1] and count[plan_misses.COSINE_WRONG] == 0
    assert count[plan_misses.HIT] == hits["shape"]["ot"][0]
    assert all(abs(sum(s) - 1) < 1e-5 for s in shares)
    t = plan_targets.analyse(st, ncap, common.naming_words(FIXTURE))
    assert all(t["cosine"]["shape"]) and all(t["cosine"]["color"])
    assert t["plan"]["shape"] == [bool(v) for v in t["plan"]["shape"]]
    assert sum(t["plan"]["shape"]) == hits["shape"]["ot"][0]
    s = plan_sources.analyse(st, ncap, common.naming_words(FIXTURE), open(os.path.join(FIXTURE, "region_labels.txt")).read().split())
    assert all(s["cosine"]["shape"]) and all(s["cosine|label"]["shape"]) and s["plan"] == t["plan"]
    count, share_good, share_land = plan_distractors.analyse(st, ncap)
    assert count["nouns"] == hits["shape"]["ot"][1] and count["plan misses"] == count["nouns"] - hits["shape"]["ot"][0]
    assert count["... the cosine grounds it"] == count["plan misses"]
    variants, land, taker, ntok, nreg = plan_anatomy.analyse(st, ncap)
    assert variants["cos"] == [hits["shape"]["cos"][1]] * 2 and variants["ot"] == hits["shape"]["ot"]
    assert nreg == [len(recs[c["image"]]["objects"]) + 1 for c in st.caps]
    cap = plan_capacity.analyse(st, ncap, common.naming_words(FIXTURE))
    assert len(cap[True]) + len(cap[False]) == hits["shape"]["ot"][1]


def test_command_lines_on_a_model(work, tmp_path, capsys):
    ckpt, w = str(work / "run" / "final.pt"), str(work)

    def run(mod, *args):
        assert mod.main([str(a) for a in args]) == 0
        return capsys.readouterr().out

    out = run(readouts, ckpt, "--work", w, "--captions", 20)
    assert "20 validation captions" in out and "attn_both" in out and "lands on" in out
    for mod in (plan_misses, plan_targets, plan_sources, plan_capacity):
        assert ckpt in run(mod, ckpt, "--work", w, "--captions", 20, "--bundle", FIXTURE)
    assert "noun grounding" in run(plan_anatomy, ckpt, "--work", w, "--captions", 20)
    assert "'nouns'" in run(plan_distractors, ckpt, "--work", w, "--captions", 20)
    out = run(mlm_probe, ckpt, "--work", w, "--captions", 20)
    assert [line.split()[1] for line in out.splitlines()] == list(mlm_probe.KINDS)
    assert all(f" {how} " in out for how in ("image", "other", "zeroed", "permuted"))
    out = run(location_probe, ckpt, "--work", w, "--positives", 10, "--per-kind", 5)
    assert out.count("positives accepted") == 3 and "relation edits rejected" in out
    out = run(count_failures, ckpt, "--features", work / "feat-val", "--split", work / "val")
    assert "count captions, R@1" in out and "mean match probability" in out
    save = tmp_path / "loc" / "final.pt"
    out = run(location_study, "size+uniform2", 3, "--work", w, "--probe-every", 1, "--batch-size", 8, "--save", save)
    assert "step 3 loss" in out and "one-size images" in out and os.path.exists(save)
    shutil.copyfile(work / "run" / "config.json", tmp_path / "loc" / "config.json")
    assert "from " + str(save) in run(location_study, "relation", 0, "--work", w, "--init", save)
    for args in (("colour", 2), ("mlm", 2, "--regions", "confident"), ("catbatch", 2, "--regions", "standardised")):
        out = run(masking, *args, "--work", w, "--probe-every", 2, "--batch-size", 8)
        assert f"{args[0]} step 2 loss" in out and "shape image" in out
    aux = tmp_path / "aux"
    out = run(aux_relation_ft, ckpt, aux, "--work", w, "--config", work / "run" / "config.json", "--steps", 3,
              "--log-every", 3, "--batch-size", 8, "--text-negatives", 0.5)
    assert "step 3 itm acc" in out
    ds = PretrainDataset(str(work / "feat-train"))
    common.load_model(str(aux / "final.pt"), ds)  # loads strictly into the run's config
    with open(aux / "final.json") as f:
        assert json.load(f)["steps"] == 3
