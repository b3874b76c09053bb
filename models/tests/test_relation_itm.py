"""uniter.diagnostics.relation_itm: the caption edits it writes and the truth it checks them with."""
import json
import os

import pytest

from uniter.diagnostics import relation_itm as ri
from uniter.diagnostics.relation_swaps import relation_true


def obj(shape, color, cx, cy, size="small"):
    return {"shape": shape, "color": color, "size": size, "center": [cx, cy],
            "box": [cx - 5, cy - 5, cx + 5, cy + 5]}


SCENE = {"width": 200, "height": 100,
         "objects": [obj("circle", "red", 20, 20), obj("square", "blue", 150, 80), obj("star", "orange", 100, 21)]}


def test_swaps_keep_the_words_and_fix_articles():
    assert ri.swapped("a red circle left of a blue square", "left_of") == "a blue square left of a red circle"
    assert ri.swapped("something orange above a star", "above") == "a star above something orange"
    assert ri.color_swapped("a red circle left of an orange star", "left_of", "red", "orange") == \
        "an orange circle left of a red star"
    with pytest.raises(ValueError):
        ri.swapped("a red circle", "above")


def test_relation_truth_uses_the_margin():
    lf = {"op": "relation", "rel": "left_of", "a": {"shape": "circle"}, "b": {"shape": "square"}}
    assert relation_true(lf, SCENE)
    assert not relation_true(dict(lf, rel="right_of"), SCENE)
    # the star is 1 px below the circle: within the margin (5 px), neither above nor below
    near = {"op": "relation", "rel": "above", "a": {"shape": "circle"}, "b": {"shape": "star"}}
    assert not relation_true(near, SCENE) and not relation_true(dict(near, rel="below"), SCENE)
    # a description matching no object, or only the other object itself, makes it false
    assert not relation_true(dict(lf, b={"shape": "heart"}), SCENE)
    assert not relation_true(dict(lf, a={"color": "red"}, b={"color": "red"}), SCENE)


def test_build_writes_false_swaps_linked_to_their_captions(tmp_path):
    feat, split = tmp_path / "feat", tmp_path / "split"
    feat.mkdir(), split.mkdir()
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] a an above below left right of red blue orange circle square star something".split()
    (feat / "vocab.txt").write_text("\n".join(words) + "\n")
    for name in ("regions.npz", "extract.json"):
        (feat / name).write_text("")
    (split / "annotations.jsonl").write_text(json.dumps(SCENE) + "\n")
    ids = {w: i for i, w in enumerate(words)}
    caps = [("a red circle left of a blue square", {"op": "relation", "rel": "left_of",
             "a": {"shape": "circle", "color": "red"}, "b": {"shape": "square", "color": "blue"}}),
            ("a red circle", {"op": "exists", "obj": {"shape": "circle", "color": "red"}})]
    (feat / "captions.jsonl").write_text("".join(
        json.dumps({"image": 0, "text": t, "lf": lf, "input_ids": [2, *(ids[w] for w in t.split()), 3]}) + "\n"
        for t, lf in caps))
    (feat / "false_captions.jsonl").write_text(json.dumps(
        {"image": 0, "text": "a blue circle", "source": 1, "input_ids": [2, 5, 13, 15, 3]}) + "\n")
    got = ri.build(str(feat), str(split), {"left_of"}, str(tmp_path / "out"), keep_all=True,
                   color_swaps=True, word_swaps=True)
    assert got["captions"] == 2
    false = [json.loads(l) for l in (tmp_path / "out" / "false_captions.jsonl").read_text().splitlines()]
    texts = {f["edit"] if "edit" in f else "given": (f["text"], f["source"]) for f in false}
    assert texts == {"given": ("a blue circle", 1),
                     "relation_swap": ("a red circle right of a blue square", 0),
                     "color_swap": ("a blue circle left of a red square", 0),
                     "relation_args": ("a blue square left of a red circle", 0)}
    for f in false[1:]:
        assert f["input_ids"] == [2, *(ids[w] for w in f["text"].split()), 3]
        assert not relation_true(f["lf"], SCENE)


def test_build_links_truth_only_when_every_caption_is_kept(tmp_path):
    """truth.npz's rows are --features's captions in order: linked with --all (every caption
    kept), not for a subset, whose rows it would misname."""
    feat, split = tmp_path / "feat", tmp_path / "split"
    feat.mkdir(), split.mkdir()
    (feat / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\ncircle\n")
    for name in ("regions.npz", "extract.json", "truth.npz"):
        (feat / name).write_text("")
    (split / "annotations.jsonl").write_text(json.dumps(SCENE) + "\n")
    (feat / "captions.jsonl").write_text(json.dumps(
        {"image": 0, "text": "a circle", "lf": {"op": "exists"}, "input_ids": [2, 5, 6, 3]}) + "\n")
    (feat / "false_captions.jsonl").write_text("")
    ri.build(str(feat), str(split), {"left_of"}, str(tmp_path / "all"), keep_all=True)
    ri.build(str(feat), str(split), {"left_of"}, str(tmp_path / "some"))
    assert os.path.realpath(tmp_path / "all" / "truth.npz") == str(feat / "truth.npz")
    assert not os.path.lexists(tmp_path / "some" / "truth.npz")
