"""uniter.finetune on a tiny model and a tiny made-up split: each task's loss goes down with one
step, a saved checkpoint loads key for key into its official class and exports, and --resume
continues from the saved step to the same weights as an uninterrupted run."""
from __future__ import annotations

import json
import os
import string

import numpy as np
import pytest
import torch

from uniter import finetune as ft
from uniter.export import read_labels
from uniter.model import UniterForPretraining
from uniter.tasks import build_model, detect_task, load_task_checkpoint

from uniter_testing import small_config

TASKS = ("qa", "ve", "nlvr2", "ref")
ANSWERS = ["red", "blue", "circle", "square", "yes", "no"]
WORDS = ["what", "color", "is", "the", "there", "a", "red", "blue", "circle", "left", "image"]
N_IMAGES, N_REGIONS, D, LABELS = 6, 3, 24, 6


def base_vocab():
    return (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?"] + list(string.ascii_lowercase)
            + ["##" + c for c in string.ascii_lowercase])


def write_split(root):
    """A split folder as `uniter synth --task all` + `uniter extract` would leave it (features in
    the folder itself)."""
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    R = N_IMAGES * N_REGIONS
    boxes = np.zeros((R, 4), np.float32)
    for r in range(R):
        x, y = rng.uniform(0, 100, 2)
        boxes[r] = [x, y, x + 20 + 10 * (r % 3), y + 20]
    loc = np.concatenate([boxes / 150, (boxes[:, 2:] - boxes[:, :2]) / 150,
                          ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 150 ** 2)[:, None]], 1)
    np.savez(os.path.join(root, "regions.npz"),
             features=rng.random((R, D)).astype(np.float16), locations=loc.astype(np.float32),
             soft_labels=np.full((R, LABELS), 1 / LABELS, np.float16), boxes=boxes,
             offsets=np.arange(0, R + 1, N_REGIONS, dtype=np.int64))
    with open(os.path.join(root, "annotations.jsonl"), "w") as f:
        for i in range(N_IMAGES):
            f.write(json.dumps({"id": i, "file": f"images/{i:05d}.png", "objects": [{}] * (i % 3 + 1)}) + "\n")
    qa, ve, nl, ref = [], [], [], []
    for i in range(N_IMAGES):
        for k in range(2):
            form = {"query": "color", "lf": {"op": "exists"} if k else
                    {"op": "relation", "rel": ("above", "left_of")[i % 2]}}
            qa.append({"image_id": i, "type": "color" if k else "relation_color", "form": form,
                       "question": "what color is the circle?", "answer": ANSWERS[(i + k) % 6]})
            ve.append({"image_id": i, "hypothesis": "there is a red circle",
                       "label": ["contradiction", "entailment", "neutral"][(i + k) % 3]})
            nl.append({"left_id": i, "right_id": (i + 1) % N_IMAGES, "type": "both",
                       "statement": "the left image has a blue square", "label": bool((i + k) % 2)})
            r = i * N_REGIONS + (i + k) % N_REGIONS
            ref.append({"image_id": i, "expression": "the red circle left of the blue square",
                        "box": boxes[r].tolist(), "with_relation": bool(k)})
    for name, items in (("qa", qa), ("ve", ve), ("nlvr2", nl), ("ref", ref)):
        with open(os.path.join(root, ft.TASK_FILES[name]), "w") as f:
            f.writelines(json.dumps(it) + "\n" for it in items)
    with open(os.path.join(root, "qa_answers.txt"), "w") as f:
        f.write("\n".join(ANSWERS) + "\n")
    with open(os.path.join(root, "task_words.txt"), "w") as f:
        f.write("\n".join(WORDS) + "\n")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    split = str(root / "split")
    write_split(split)
    vocab = base_vocab()
    bundle = root / "base"
    bundle.mkdir()
    (bundle / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (bundle / "region_labels.txt").write_text("\n".join(f"l{i}" for i in range(LABELS)) + "\n")
    cfg = small_config(vocab_size=len(vocab), img_dim=D, img_label_dim=LABELS,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    pre = UniterForPretraining(cfg)
    pre.init_weights(0)
    init = root / "init"
    init.mkdir()
    torch.save(pre.state_dict(), init / "final.pt")
    (init / "config.json").write_text(json.dumps(cfg.to_dict()))
    return {"root": root, "split": split, "bundle": str(bundle), "init": str(init / "final.pt"),
            "cfg": cfg, "vocab": vocab}


def args_for(env, task, out, *extra):
    return ft.parse_args(["--task", task, "--split-dir", env["split"], "--val-dir", env["split"],
                          "--init", env["init"], "--init-bundle", env["bundle"], "--out", str(out),
                          "--batch", "4", "--eval-every", "2", "--log-every", "1", "--val-items", "0",
                          "--no-progress", "--patience", "0", *extra])


def test_vocabulary_extension_keeps_ids(env):
    tokens = ft.build_vocab(env["vocab"], WORDS, "extend")
    assert tokens[:len(env["vocab"])] == env["vocab"]
    assert tokens[len(env["vocab"]):] == [w for w in WORDS if w not in env["vocab"]]
    tok = ft.Tokenizer(tokens)
    ids = tok.encode("What color is the circle?")
    assert [tokens[i] for i in ids] == ["[CLS]", "what", "color", "is", "the", "circle", "?", "[SEP]"]
    chars = ft.Tokenizer(ft.build_vocab(env["vocab"], WORDS, "chars"))
    assert [env["vocab"][i] for i in chars.encode("what")] == ["[CLS]", "w", "##h", "##a", "##t", "[SEP]"]


@pytest.mark.parametrize("task", TASKS)
def test_one_step_decreases_loss(env, task):
    tokens = ft.build_vocab(env["vocab"], WORDS, "extend")
    cfg = ft.UniterConfig.from_dict(dict(env["cfg"].to_dict(), vocab_size=len(tokens)))
    data = ft.TaskData(task, env["split"], env["split"], ft.Tokenizer(tokens), ANSWERS)
    assert data.trainable.all()
    model = ft.build_task_model(task, cfg, len(ANSWERS))
    model.init_weights(0)
    info = ft.init_from_pretrained(model, torch.load(env["init"]))
    assert info["new_word_rows"] == len(tokens) - len(env["vocab"])
    model.eval()  # no dropout: the same function before and after the step
    b = data.batch(list(range(8)))
    fwd = lambda: ft.task_loss(task, model(b["input_ids"], b["text_mask"], b["img_feat"],
                                           b["img_loc"], b["img_mask"]), b["labels"])
    opt = ft.build_optimizer(model, 1e-3, 10.0)
    before = fwd()
    assert torch.isfinite(before)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = fwd()
    assert float(after) < float(before)


def test_schedule_warmup_and_decay():
    lrs = [ft.lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[99] == pytest.approx(0.01 / 0.9, rel=1e-6)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


@pytest.mark.parametrize("task", TASKS)
def test_checkpoint_loads_key_exact_and_exports(env, task, tmp_path):
    out = tmp_path / task
    ft.run(args_for(env, task, out, "--steps", "2"))
    sd = torch.load(out / "final.pt")
    choice = detect_task(sd, {"nlvr2": "nlvr2-paired"}.get(task), answers_given=task == "qa")
    assert choice.task == ft.EXPORT_TASK.get(task, "nlvr2")
    cfg = ft.UniterConfig.from_json(str(out / "config.json"))
    model = build_model(choice, cfg, len(ANSWERS) if task == "qa" else None)
    assert set(sd) == set(model.state_dict())
    report = load_task_checkpoint(model, sd, strict=True)
    assert report.ok() and report.heads
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["name"] == f"shapes-{task}"
    assert manifest["task"]["name"] == choice.task
    assert manifest["model"]["vocab_size"] == len(ft.build_vocab(env["vocab"], WORDS, "extend"))
    assert read_labels(str(out / "bundle" / "vocab.txt")) == \
        ft.build_vocab(env["vocab"], WORDS, "extend")
    head = {"qa": "vqa", "ve": "ve", "nlvr2": "nlvr2", "ref": "re"}[task]
    assert manifest["heads"][head] is True
    if task == "qa":
        assert (out / "bundle" / "answers.txt").read_text().split() == ANSWERS
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log) and any("val_acc" in r for r in log)


def test_resume_continues_from_saved_step(env, tmp_path):
    full = tmp_path / "full"
    ft.run(args_for(env, "ref", full, "--steps", "4", "--no-export"))
    part = tmp_path / "part"
    got = ft.run(args_for(env, "ref", part, "--steps", "4", "--stop-after", "2", "--no-export"))
    assert got["interrupted"] and got["step"] == 2
    assert torch.load(part / "state.pt")["step"] == 2
    assert not (part / "final.pt").exists()
    ft.run(args_for(env, "ref", part, "--steps", "4", "--resume", "--no-export"))
    log = [json.loads(l) for l in (part / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == [1, 2, 3, 4]  # the resumed run logged 3 and 4, not 1 and 2 again
    assert json.loads((part / "final.json").read_text())["steps_done"] == 4
    a, b = torch.load(full / "last.pt"), torch.load(part / "last.pt")
    assert set(a) == set(b)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_bundle_has_no_attention_graph_and_export_only_rewrites_it(env, tmp_path):
    out = tmp_path / "qa"
    ft.run(args_for(env, "qa", out, "--steps", "2"))
    bundle = out / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"encoder"} and manifest["heads"]["attention"] is False
    assert not (bundle / "encoder_attention.onnx").exists()
    encoder = (bundle / "encoder.onnx").read_bytes()
    (bundle / "stale.txt").write_text("left over")
    # --export-only needs no --init: the run's config, vocabulary and answers are in OUT.
    got = ft.run(ft.parse_args(["--task", "qa", "--split-dir", env["split"], "--val-dir", env["split"],
                                "--init-bundle", env["bundle"], "--out", str(out), "--export-only",
                                "--no-progress"]))
    assert got == {"exported": True}
    assert (bundle / "encoder.onnx").read_bytes() == encoder  # the same weights, the same graph
    assert not (bundle / "stale.txt").exists()
    assert json.loads((bundle / "manifest.json").read_text())["graphs"]["encoder"] == manifest["graphs"]["encoder"]
    with pytest.raises(SystemExit):
        ft.parse_args(["--task", "qa", "--split-dir", env["split"], "--val-dir", env["split"], "--out", str(out)])


def test_types_and_max_objects_select_training_items(env, tmp_path, monkeypatch):
    seen = {}
    real = ft.batch_indices

    def spy(n, batch, step, seed):
        seen["n"] = n
        return real(n, batch, step, seed)

    monkeypatch.setattr(ft, "batch_indices", spy)
    ft.run(args_for(env, "qa", tmp_path / "types", "--steps", "1", "--no-export", "--types", "relation_color"))
    assert seen["n"] == N_IMAGES  # one relation_color question per image of the made-up split
    with pytest.raises(SystemExit, match="no training item has type"):
        ft.run(args_for(env, "qa", tmp_path / "bad", "--steps", "1", "--no-export", "--types", "count"))
    counts = ft.scene_object_counts(env["split"])
    assert counts == [i % 3 + 1 for i in range(N_IMAGES)]
    ft.run(args_for(env, "qa", tmp_path / "objs", "--steps", "1", "--no-export", "--max-objects", "2"))
    assert seen["n"] == 2 * sum(c <= 2 for c in counts)  # two questions an image


def test_relations_select_training_items_by_their_form(env, tmp_path, monkeypatch):
    seen = {}
    real = ft.batch_indices
    monkeypatch.setattr(ft, "batch_indices", lambda n, *a: seen.update(n=n) or real(n, *a))
    ft.run(args_for(env, "qa", tmp_path / "above", "--steps", "1", "--no-export", "--relations", "above"))
    assert seen["n"] == sum(i % 2 == 0 for i in range(N_IMAGES))  # the even images' relation question
    ft.run(args_for(env, "qa", tmp_path / "both", "--steps", "1", "--no-export", "--relations", "above,left_of"))
    assert seen["n"] == N_IMAGES
    with pytest.raises(SystemExit, match="no training item is left"):
        ft.run(args_for(env, "qa", tmp_path / "none", "--steps", "1", "--no-export", "--relations", "below"))


def test_evaluate_reports_relation_yes_no_per_relation_word(env, monkeypatch):
    tokens = ft.build_vocab(env["vocab"], WORDS, "extend")
    data = ft.TaskData("qa", env["split"], env["split"], ft.Tokenizer(tokens), ANSWERS)
    data.types = ["relation_yesno" if t == "relation_color" else t for t in data.types]
    cfg = ft.UniterConfig.from_dict(dict(env["cfg"].to_dict(), vocab_size=len(tokens)))
    right = lambda i: i % 3 != 0  # which items the stand-in scorer gets right
    monkeypatch.setattr(ft, "correct", lambda task, d, part, logits: np.array([right(i) for i in part]))
    res = ft.evaluate(ft.build_task_model("qa", cfg, len(ANSWERS)), "qa", data)
    want = {}
    for i, (t, r) in enumerate(zip(data.types, data.relations)):
        if t == "relation_yesno":
            want.setdefault(r, []).append(right(i))
    assert set(want) == {"above", "left_of"}
    assert res["relation_yesno_by_relation"] == {r: round(float(np.mean(v)), 4) for r, v in sorted(want.items())}


def test_reinit_location_layer_is_well_conditioned():
    hidden, spread = 64, 0.5
    locs = torch.rand(500, 7) * torch.tensor([0.8, 0.8, 0.2, 0.2, 0.3, 0.3, 0.05]) + 0.1
    lin = torch.nn.Linear(7, hidden)
    ft.reinit_location_layer(lin, locs, seed=3, spread=spread)
    with torch.no_grad():
        out = lin(locs)
    # orthogonal to the all-ones vector: the LayerNorm after it subtracts nothing
    assert out.mean(dim=1).abs().max() < 1e-4
    # a constant part of norm sqrt(hidden) plus spread × the standardised box, on orthonormal axes
    const = out.mean(dim=0)
    assert abs(const.norm().item() - hidden ** 0.5) < 1e-3
    z = (locs - locs.mean(0)) / locs.std(0)
    var = out - const
    assert torch.allclose(var.norm(dim=1), hidden ** 0.5 * spread * z.norm(dim=1), atol=1e-3)
    # the standardised coordinates are read back linearly (the axes are independent)
    coef = torch.linalg.lstsq(var, z).solution
    assert torch.allclose(var @ coef, z, atol=1e-3)


def test_location_layer_gets_its_own_learning_rate(env):
    tokens = ft.build_vocab(env["vocab"], WORDS, "extend")
    cfg = ft.UniterConfig.from_dict(dict(env["cfg"].to_dict(), vocab_size=len(tokens)))
    model = ft.build_task_model("qa", cfg, len(ANSWERS))
    opt = ft.build_optimizer(model, 1e-4, 10.0, pos_lr_mul=30.0)
    names = {id(p): n for n, p in model.named_parameters()}
    muls = {names[id(p)]: g["lr_mul"] for g in opt.param_groups for p in g["params"]}
    assert muls[ft.POS_PREFIX + "weight"] == muls[ft.POS_PREFIX + "bias"] == 30.0
    assert all(m == 10.0 for n, m in muls.items() if n.startswith(ft.HEAD_PREFIXES))
    assert all(m == 1.0 for n, m in muls.items() if not n.startswith(ft.HEAD_PREFIXES + (ft.POS_PREFIX,)))
    assert len(muls) == len(list(model.parameters()))


def test_pos_scale_multiplies_the_location_layer_at_the_start(env, tmp_path):
    base = tmp_path / "base"
    ft.run(args_for(env, "qa", base, "--steps", "1", "--no-export", "--lr", "1e-12", "--head-lr-mul", "1"))
    scaled = tmp_path / "scaled"
    ft.run(args_for(env, "qa", scaled, "--steps", "1", "--no-export", "--lr", "1e-12", "--head-lr-mul", "1",
                    "--pos-scale", "8"))
    a, b = torch.load(base / "last.pt"), torch.load(scaled / "last.pt")
    w = ft.POS_PREFIX + "weight"
    assert torch.allclose(b[w], 8 * a[w], atol=1e-6)
    assert torch.allclose(a[ft.POS_PREFIX + "bias"], b[ft.POS_PREFIX + "bias"], atol=1e-9)
