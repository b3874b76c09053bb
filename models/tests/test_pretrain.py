"""Tests of the pre-training recipe (models/uniter/pretrain.py), its data format and loader
(models/uniter/data.py) and its command line (python3 -m uniter.pretrain), on tiny synthetic data written to
tmp_path in the on-disk split format.

Run:  cd models && /usr/bin/python3 -m pytest -q tests/test_pretrain.py
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uniter import ot
from uniter.data import PretrainDataset, SpecialIds, Vocab, collate, write_split
from uniter.model import UniterForPretraining, load_checkpoint
from uniter.ot import cost_matrix_cosine, ipot
from uniter.pretrain import (DEFAULT_MIX, CaptionBatcher, TrainConfig, TaskSampler, build_model, build_optimizer,
                             evaluate, forward_task, grounded_groups, hard_itm_samples, itm_samples,
                             lr_factor, mask_grounded, mask_regions, mask_tokens, mrc_hard_labels, parse_mix, prepare_task, pretrain,
                             resolve_config, wra_loss, attention_alignment, plan_distill_loss, PLAN_DISTILL_TAU,
                             plan_rows_loss, PLAN_ROWS_POWER, PLAN_ROWS_TARGETS)

torch.set_num_threads(1)

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLASS_WORDS = ["circle", "square", "triangle", "star"]  # detector classes 1..4, 0 = background
FILLER = ["a", "an", "the", "and", "there", "is", "are", "of", "left", "right", "above", "below",
          "red", "blue", "green", "big", "small", "two", "one", "near", "with", "on", "in",
          "shape", "picture", "image", "some", "##s", "[unused0]", "[unused1]"]
VOCAB = SPECIALS + CLASS_WORDS + FILLER  # 39 tokens
TOK = {t: i for i, t in enumerate(VOCAB)}
SP = SpecialIds()  # [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=32)
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def make_split(root, n_images=12, n_regions=3, D=16, C=5, seed=0, truth=True, vocab=True):
    """12 images x 3 regions of D=16, C=5 detector classes; region features are noisy class
    prototypes, soft labels peak at the class. Two captions per image: all its shapes, and one of
    them. truth[c, i]: the shapes caption c names are all in image i."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(C, D)) * 2
    feats, locs, soft, boxes, offsets, classes = [], [], [], [], [0], []
    for _ in range(n_images):
        cls = rng.choice(np.arange(1, C), size=n_regions, replace=False)
        classes.append({CLASS_WORDS[c - 1] for c in cls})
        for c in cls:
            feats.append(np.abs(protos[c] + 0.1 * rng.normal(size=D)))
            p = rng.dirichlet(np.ones(C) * 0.3) * 0.3
            p[c] += 0.6
            p[0] += 0.1
            soft.append(p / p.sum())
            x1, y1 = rng.uniform(0, 0.6, 2)
            w, h = rng.uniform(0.05, 0.4, 2)
            locs.append([x1, y1, x1 + w, y1 + h, w, h, w * h])
            boxes.append([x1 * 640, y1 * 480, (x1 + w) * 640, (y1 + h) * 480])
        offsets.append(offsets[-1] + n_regions)
    caps, named = [], []
    for i in range(n_images):
        words = sorted(classes[i])
        for text in ("there is a " + " and a ".join(words), "a " + words[int(rng.integers(len(words)))]):
            ids = [TOK["[CLS]"]] + [TOK[w] for w in text.split()] + [TOK["[SEP]"]]
            caps.append({"image": i, "text": text, "input_ids": ids,
                         "caption_id": f"{i}-{len(caps)}", "lf": {"words": text.split()}})
            named.append({w for w in text.split() if w in CLASS_WORDS})
    tr = np.array([[s <= classes[i] for i in range(n_images)] for s in named])
    write_split(str(root), np.array(feats), np.array(locs), np.array(soft), np.array(boxes),
                np.array(offsets), caps, truth=tr if truth else None,
                vocab_tokens=VOCAB if vocab else None)
    return tr


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    make_split(root)
    return str(root)


@pytest.fixture(scope="module")
def ds(split):
    return PretrainDataset(split)


def tiny_model(ds, seed=0, **kw):
    cfg = resolve_config(dict(TINY, **kw), ds, ds.vocab)
    return build_model(cfg, seed)


# ------------------------------------------------------------------------------- data format

def test_split_loads_and_collates_to_the_padded_layout(split, ds):
    assert len(ds) == 24 and ds.num_images == 12
    assert ds.vocab.size == len(VOCAB) and ds.vocab.special == SP
    assert ds.truth is not None and ds.truth.shape == (24, 12) and ds.truth.dtype == bool
    assert ds.captions[0]["lf"]["words"][0] == "there"
    with np.load(os.path.join(split, "regions.npz")) as z:
        assert z["features"].dtype == np.float16 and z["soft_labels"].dtype == np.float16
        assert z["locations"].dtype == np.float32 and z["offsets"].dtype == np.int64
        feat0 = z["features"][0:3].astype(np.float32)
    s0 = ds[0]
    assert torch.equal(s0["img_feat"], torch.from_numpy(feat0))
    b = collate([ds[1], ds[0], ds.pair(3, 7, 0)])
    T, N = max(len(ds.captions[c]["input_ids"]) for c in (1, 0, 3)), 3
    assert b["input_ids"].shape == (3, T) and b["text_mask"].shape == (3, T)
    assert b["img_feat"].shape == (3, N, 16) and b["img_loc"].shape == (3, N, 7)
    assert b["img_mask"].shape == (3, N) and b["img_soft_labels"].shape == (3, N, 5)
    assert b["img_feat"].dtype == torch.float32 and b["input_ids"].dtype == torch.long
    short = len(ds.captions[1]["input_ids"])
    assert b["text_mask"][0].tolist() == [1] * short + [0] * (T - short)
    assert (b["input_ids"][0, short:] == SP.pad).all()
    assert b["image_index"].tolist() == [0, 0, 7] and b["caption_index"].tolist() == [1, 0, 3]
    assert "targets" not in b
    assert collate([ds.pair(0, 0, 1), ds.pair(0, 5, 0)])["targets"].tolist() == [1, 0]


def test_truncation_keeps_sep(split):
    d = PretrainDataset(split, max_text_len=5)
    ids = d.input_ids(0).tolist()
    assert len(ids) == 5 and ids[0] == SP.cls and ids[-1] == SP.sep


def test_bad_splits_are_refused(tmp_path):
    root = tmp_path / "bad"
    make_split(root)
    with np.load(root / "regions.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["offsets"] = arrays["offsets"].copy()
    arrays["offsets"][2] = arrays["offsets"][1]  # image 1 without regions
    np.savez(root / "regions.npz", **arrays)
    with pytest.raises(ValueError, match="at least one region"):
        PretrainDataset(str(root))

    root = tmp_path / "bad_truth"
    tr = make_split(root)
    tr[0, 0] = False  # caption 0 false on its own image
    np.savez(root / "truth.npz", truth=tr)
    with pytest.raises(ValueError, match="own image"):
        PretrainDataset(str(root))

    root = tmp_path / "bad_caption"
    make_split(root)
    with open(root / "captions.jsonl", "a") as f:
        f.write(json.dumps({"image": 99, "input_ids": [2, 5, 3]}) + "\n")
    with pytest.raises(ValueError, match="image 99"):
        PretrainDataset(str(root))


def test_vocab_without_file_and_from_file(split):
    v = Vocab(39)
    assert v.special == SP and not set(v.random_ids.tolist()) & {0, 1, 2, 3, 4}
    vf = Vocab.from_file(os.path.join(split, "vocab.txt"))
    bracketed = {TOK["[unused0]"], TOK["[unused1]"]}
    assert not set(vf.random_ids.tolist()) & (bracketed | {0, 1, 2, 3, 4})


# ------------------------------------------------------------------------------- masking

def _caption_batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    tm = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(5, len(VOCAB), (n,), generator=g)
        ids[b, 0], ids[b, n - 1] = SP.cls, SP.sep
        tm[b, :n] = 1
    return ids, tm


def test_mlm_masking_statistics():
    vocab = Vocab(len(VOCAB), SP, VOCAB)
    lengths = [22] * 150 + [12] * 100 + [3] * 50  # 20, 10 and 1 maskable tokens
    ids, tm = _caption_batch(lengths)
    gen = torch.Generator().manual_seed(1)
    n_draws = 40
    chosen_per = {20: [], 10: [], 1: []}
    n_mask = n_rand = n_same = 0
    for _ in range(n_draws):
        mids, labels = mask_tokens(ids, tm, vocab, gen, 0.15)
        chosen = labels != -1
        # targets are the original ids; never specials, padding or positions outside the text
        assert torch.equal(labels[chosen], ids[chosen])
        assert not chosen[tm == 0].any()
        assert not chosen[(ids == SP.cls) | (ids == SP.sep) | (ids == SP.pad)].any()
        assert torch.equal(mids[~chosen], ids[~chosen])  # nothing else changes
        per = chosen.sum(1)
        assert (per >= 1).all()  # at least one per caption
        for b, n in enumerate(lengths):
            chosen_per[n - 2].append(int(per[b]))
        m = mids[chosen]
        o = ids[chosen]
        n_mask += int((m == SP.mask).sum())
        n_same += int((m == o).sum())
        rnd = (m != SP.mask) & (m != o)
        n_rand += int(rnd.sum())
        assert not torch.isin(m[rnd], torch.tensor([0, 1, 2, 3, 4, TOK["[unused0]"], TOK["[unused1]"]])).any()
    # expected number chosen among n maskable: 0.15 n + P(none drawn) = 0.15 n + 0.85^n
    for n, counts in chosen_per.items():
        want = 0.15 * n + 0.85 ** n
        got = np.mean(counts)
        sd = math.sqrt(0.15 * 0.85 * n / len(counts)) + 1e-9
        assert abs(got - want) < 5 * sd + 0.01, (n, got, want)
    assert chosen_per[1] == [1] * len(chosen_per[1])  # a one-word caption always gets its token
    total = n_mask + n_rand + n_same
    # random replacements equal to the original (p = 1/32) count as unchanged
    p_same = 0.1 + 0.1 / len(vocab.random_ids)
    for got, want in ((n_mask / total, 0.8), (n_rand / total, 0.1 - 0.1 / len(vocab.random_ids)),
                      (n_same / total, p_same)):
        assert abs(got - want) < 5 * math.sqrt(want * (1 - want) / total), (got, want)
    assert abs(np.mean(chosen_per[20]) / 20 - 0.15) < 0.01  # ~15% on long captions


def test_grounded_masking_masks_one_group_word_per_caption():
    """mask_grounded: each caption holding a word of the group gets exactly one of them masked
    (always [MASK]), chosen uniformly among them; captions without one keep every token and have
    no target; nothing else changes."""
    vocab = Vocab(len(VOCAB), SP, VOCAB)
    group = [TOK[w] for w in CLASS_WORDS]
    rows = [["circle", "left", "of", "a", "star"],   # two group words
            ["a", "red", "square"],                  # one
            ["there", "is", "a", "shape"]]           # none
    T = 2 + max(map(len, rows)) + 1
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    tm = torch.zeros_like(ids)
    for b, words in enumerate(rows):
        seq = [SP.cls] + [TOK[w] for w in words] + [SP.sep]
        ids[b, :len(seq)], tm[b, :len(seq)] = torch.tensor(seq), 1
    gen = torch.Generator().manual_seed(3)
    first_of_two = 0
    draws = 400
    for _ in range(draws):
        mids, labels = mask_grounded(ids, tm, group, vocab, gen)
        chosen = labels != -1
        assert chosen.sum(1).tolist() == [1, 1, 0]
        assert torch.isin(ids[chosen], torch.tensor(group)).all()
        assert torch.equal(labels[chosen], ids[chosen])
        assert (mids[chosen] == SP.mask).all() and torch.equal(mids[~chosen], ids[~chosen])
        assert labels[1, 3] == TOK["square"]
        first_of_two += int(labels[0, 1] != -1)
    assert abs(first_of_two / draws - 0.5) < 5 * math.sqrt(0.25 / draws)  # uniform between the two


def test_grounded_groups_come_from_label_lists_with_plurals():
    tokens = SPECIALS + ["circle", "circles", "cross", "crosses", "red", "blue", "a"]
    vocab = Vocab(len(tokens), SP, tokens)
    t = {w: i for i, w in enumerate(tokens)}
    groups = grounded_groups(vocab, [["__no_attribute__", "red", "blue", "purple"],
                                     ["__background__", "circle", "cross", "star"]])
    assert groups == ((t["red"], t["blue"]), (t["circle"], t["circles"], t["cross"], t["crosses"]))
    with pytest.raises(ValueError, match="no word"):
        grounded_groups(vocab, [["red"], ["hexagon", "star"]])
    with pytest.raises(ValueError, match="tokens"):
        grounded_groups(Vocab(len(tokens), SP), [["red"]])


def test_region_masking_statistics():
    counts = [6] * 200 + [2] * 200 + [1] * 50
    N = max(counts)
    img_mask = torch.zeros(len(counts), N, dtype=torch.long)
    for b, n in enumerate(counts):
        img_mask[b, :n] = 1
    gen = torch.Generator().manual_seed(2)
    per = {6: [], 2: [], 1: []}
    for _ in range(50):
        m = mask_regions(img_mask, gen, 0.15)
        assert m.dtype == torch.bool and not m[img_mask == 0].any()
        s = m.sum(1)
        assert (s >= 1).all()
        for b, n in enumerate(counts):
            per[n].append(int(s[b]))
    for n, c in per.items():
        want = 0.15 * n + 0.85 ** n
        sd = math.sqrt(0.15 * 0.85 * n / len(c)) + 1e-9
        assert abs(np.mean(c) - want) < 5 * sd + 0.01, (n, np.mean(c), want)


def test_masking_is_conditional(ds):
    vocab = ds.vocab
    batch = collate([ds[c] for c in range(8)])
    gen = torch.Generator().manual_seed(3)
    x = prepare_task("mlm", batch, vocab, gen)
    assert x["img_masks"] is None and x["feat_targets"] is None
    assert torch.equal(x["img_feat"], batch["img_feat"]) and torch.equal(x["img_loc"], batch["img_loc"])
    assert (x["txt_labels"] != -1).sum(1).min() >= 1
    for task in ("mrfr", "mrc", "mrc-kl"):
        x = prepare_task(task, batch, vocab, gen)
        assert x["txt_labels"] is None and torch.equal(x["input_ids"], batch["input_ids"])
        m = x["img_masks"]
        assert m.sum(1).min() >= 1 and not m[batch["img_mask"] == 0].any()
        assert (x["img_feat"][m] == 0).all()                       # masked features zeroed
        assert torch.equal(x["img_feat"][~m], batch["img_feat"][~m])
        assert torch.equal(x["img_loc"], batch["img_loc"])          # locations never masked
        assert torch.equal(x["feat_targets"], batch["img_feat"])     # targets are the originals
    itm_b = collate(itm_samples(ds, range(8), np.random.default_rng(0)))
    x = prepare_task("itm", itm_b, vocab, gen)
    assert x["img_masks"] is None and x["txt_labels"] is None
    assert torch.equal(x["input_ids"], itm_b["input_ids"]) and torch.equal(x["img_feat"], itm_b["img_feat"])

    # the model adds mask_embedding[1] (only) at masked regions
    model = tiny_model(ds).eval()
    x = prepare_task("mrfr", batch, vocab, gen)
    m = x["img_masks"]
    ie = model.uniter.img_embeddings
    manual = x["img_feat"] + m.unsqueeze(-1).float() * ie.mask_embedding.weight[1]
    types = model.uniter.embeddings.token_type_embeddings.weight[1].expand(*m.shape, -1)
    with torch.no_grad():
        assert torch.allclose(ie(x["img_feat"], x["img_loc"], types, m), ie(manual, x["img_loc"], types))


# ------------------------------------------------------------------------------- losses

def _hidden(model, x):
    with torch.no_grad():
        h, pooled, _ = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"],
                                    x["img_mask"], img_masks=x["img_masks"])
    T = x["input_ids"].size(1)
    return h[:, :T], h[:, T:], pooled


def test_mrc_hard_label_excludes_background(ds):
    soft = torch.tensor([[0.7, 0.1, 0.05, 0.1, 0.05],    # background most likely: class 1 or 3
                         [0.05, 0.05, 0.05, 0.05, 0.8],
                         [0.9, 0.0, 0.0, 0.1, 0.0]])
    assert mrc_hard_labels(soft).tolist() == [1, 4, 3]
    model = tiny_model(ds, **NO_DROPOUT).eval()
    batch = collate([ds[c] for c in range(6)])
    x = prepare_task("mrc", batch, ds.vocab, torch.Generator().manual_seed(0))
    x["img_soft_labels"] = x["img_soft_labels"].clone()
    x["img_soft_labels"][..., 0] = 5.0  # background dominates everywhere: still never a target
    with torch.no_grad():
        loss, m = forward_task(model, "mrc", x)
    _, h_img, _ = _hidden(model, x)
    logits = model.region_classifier(h_img[x["img_masks"]]).detach()
    target = x["img_soft_labels"][x["img_masks"]][:, 1:].argmax(-1) + 1
    assert (target >= 1).all()
    assert abs(loss.item() - F.cross_entropy(logits, target).item()) < 1e-6


def test_mrc_kl_matches_hand_computed_kl(ds):
    model = tiny_model(ds, **NO_DROPOUT).eval()
    batch = collate([ds[c] for c in range(4)])
    x = prepare_task("mrc-kl", batch, ds.vocab, torch.Generator().manual_seed(5))
    with torch.no_grad():
        loss, _ = forward_task(model, "mrc-kl", x)
    _, h_img, _ = _hidden(model, x)
    with torch.no_grad():
        logits = model.region_classifier(h_img[x["img_masks"]]).double()
    p = x["img_soft_labels"][x["img_masks"]].double()
    p = p / p.sum(-1, keepdim=True)
    kls = []
    for pr, lg in zip(p.tolist(), logits.tolist()):  # by hand, over all C classes
        z = sum(math.exp(v) for v in lg)
        q = [math.exp(v) / z for v in lg]
        kls.append(sum(pi * math.log(pi / qi) for pi, qi in zip(pr, q) if pi > 0))
    assert len(kls) == int(x["img_masks"].sum()) >= 4
    assert abs(loss.item() - sum(kls) / len(kls)) < 1e-5


def test_mrfr_regresses_original_features_through_tied_transposed_img_linear(ds):
    model = tiny_model(ds, **NO_DROPOUT).eval()
    W = model.uniter.img_embeddings.img_linear.weight      # [H, D]
    assert model.feat_regress.weight is W
    batch = collate([ds[c] for c in range(5)])
    x = prepare_task("mrfr", batch, ds.vocab, torch.Generator().manual_seed(6))
    loss, _ = forward_task(model, "mrfr", x)
    _, h_img, _ = _hidden(model, x)
    sel = x["img_masks"]
    with torch.no_grad():
        pred = model.feat_regress.net(h_img[sel]) @ W + model.feat_regress.bias  # [n, D]
    target = batch["img_feat"][sel]
    assert pred.shape == target.shape == (int(sel.sum()), 16)
    assert abs(loss.item() - ((pred - target) ** 2).mean().item()) < 1e-5
    model.zero_grad()
    loss.backward()
    assert W.grad is not None and W.grad.abs().sum() > 0


# ------------------------------------------------------------------------------- ITM and WRA

def test_itm_negatives_are_true_negatives_at_half_rate(split, ds):
    rng = np.random.default_rng(7)
    n_neg = n = 0
    for _ in range(60):
        samples = itm_samples(ds, range(len(ds)), rng, 0.5)
        for s in samples:
            c, i = s["caption_index"], s["image_index"]
            if s["target"] == 1:
                assert i == ds.image_of[c]
            else:
                assert not ds.truth[c, i], "a negative the caption is true on"
                n_neg += 1
            n += 1
    assert abs(n_neg / n - 0.5) < 0.05
    # 'a circle'-style captions are true on many images: negatives still respect truth.npz
    assert ds.truth.sum() > len(ds)

    # without truth.npz any other image is a negative
    d2 = PretrainDataset(split)
    d2.truth = None
    for s in itm_samples(d2, range(len(d2)), np.random.default_rng(8), 1.0):
        assert s["target"] == 0 and s["image_index"] != d2.image_of[s["caption_index"]]


def test_hard_negatives_are_the_models_highest_scoring_false_images(ds):
    """Each hard negative is a true negative and scores at least as high, by the model scoring
    every candidate independently, as every other candidate drawn with the same generator."""
    model = tiny_model(ds, seed=3)
    model.train()
    k = 4
    caps = list(range(len(ds)))
    got = hard_itm_samples(model, ds, caps, np.random.default_rng(11), 1.0, k)
    assert model.training, "the model is left in training mode"
    # Replay the draws: the same generator gives the same candidates, in order.
    rng = np.random.default_rng(11)
    model.eval()
    with torch.no_grad():
        for c, s in zip(caps, got):
            assert rng.random() < 1.0
            js = [ds.negative_image(c, rng) for _ in range(k)]
            assert s["target"] == 0 and s["image_index"] in js and not ds.truth[c, s["image_index"]]
            scores = {}
            for j in js:
                x = collate([ds.pair(c, j, 0)])
                _, pooled, _ = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"], x["img_mask"])
                scores[j] = model.itm_output(pooled)[0, 1].item()
            assert scores[s["image_index"]] >= max(scores.values()) - 1e-5
    # positives are untouched; the negative rate follows neg_prob
    mixed = hard_itm_samples(model, ds, caps * 20, np.random.default_rng(5), 0.5, k)
    for s in mixed:
        if s["target"] == 1:
            assert s["image_index"] == ds.image_of[s["caption_index"]]
    assert abs(sum(s["target"] == 0 for s in mixed) / len(mixed) - 0.5) < 0.06


def test_wra_loss_hand_computed_and_weighting(ds):
    # two pairs: pair 0 positive, pair 1 negative
    g = torch.Generator().manual_seed(9)
    txt, img = torch.randn(2, 5, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    txt_pad = torch.tensor([[False] * 5, [False] * 4 + [True]])
    img_pad = torch.tensor([[False] * 3, [False] * 2 + [True]])
    d, _ = ot.optimal_transport_dist(txt, img, txt_pad, img_pad)
    targets = torch.tensor([1, 0])
    assert abs(wra_loss(d, targets).item() - (d[0] - d[1]).item() / 2) < 1e-7
    assert abs(wra_loss(d, torch.tensor([0, 1])).item() - (d[1] - d[0]).item() / 2) < 1e-7
    assert abs(wra_loss(d, torch.tensor([1, 1])).item() - (d[0] + d[1]).item() / 2) < 1e-7

    # inside the ITM loss: xe + ot_weight * (Σ d_pos − Σ d_neg) / (n_pos + n_neg), on the final
    # hidden states of all text tokens (incl. [CLS]/[SEP]) and regions
    model = tiny_model(ds, **NO_DROPOUT).eval()
    b = collate([ds.pair(0, 0, 1), ds.pair(1, 5, 0), ds.pair(4, 2, 1)])
    x = prepare_task("itm", b, ds.vocab, torch.Generator())
    h_txt, h_img, pooled = _hidden(model, x)
    d, _ = ot.optimal_transport_dist(h_txt, h_img, b["text_mask"] == 0, b["img_mask"] == 0)
    with torch.no_grad():
        xe = F.cross_entropy(model.itm_output(pooled), b["targets"]).item()
    want_ot = ((d[0] + d[2]) - d[1]).item() / 3
    with torch.no_grad():
        loss, m = forward_task(model, "itm", x, ot_weight=0.1)
    assert abs(m["ot"] - want_ot) < 1e-5 and abs(m["xe"] - xe) < 1e-6
    assert abs(loss.item() - (xe + 0.1 * want_ot)) < 1e-5
    with torch.no_grad():
        loss0, m0 = forward_task(model, "itm", x, ot_weight=0.0)
    assert loss0.item() == pytest.approx(xe, abs=1e-6) and "ot" not in m0

    # sign: a gradient step on the WRA term alone lowers the positive pair's distance
    model.train(False)
    h = torch.randn(2, 5, 8, generator=g, requires_grad=True)
    r = torch.randn(2, 3, 8, generator=g)
    pad_t, pad_r = torch.zeros(2, 5, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)
    d0, _ = ot.optimal_transport_dist(h, r, pad_t, pad_r)
    wra_loss(d0, torch.tensor([1, 0])).backward()
    with torch.no_grad():
        d1, _ = ot.optimal_transport_dist(h - 0.5 * h.grad, r, pad_t, pad_r)
    assert d1[0] < d0[0] and d1[1] > d0[1]


# ------------------------------------------------------------------------------- sampling, optimiser

def test_task_sampling_follows_mix_and_is_deterministic():
    mix = parse_mix(DEFAULT_MIX)
    assert mix == {"itm": 3.0, "mlm": 4.0, "mrfr": 2.0, "mrc-kl": 2.0}
    assert parse_mix("itm:1, mrc:2,mlm:0") == {"itm": 1.0, "mrc": 2.0}
    for bad in ("itm:1,foo:2", "itm", "itm:-1", "mlm:0", "itm:1,itm:2", "itm:x"):
        with pytest.raises(ValueError):
            parse_mix(bad)
    n = 20000
    draws = TaskSampler(DEFAULT_MIX, seed=0).sample(n)
    total = sum(mix.values())
    chi2 = sum((draws.count(t) - n * w / total) ** 2 / (n * w / total) for t, w in mix.items())
    assert chi2 < 16.27, chi2  # chi-square, 3 degrees of freedom, p = 0.001
    assert TaskSampler(DEFAULT_MIX, seed=0).sample(200) == draws[:200]
    assert TaskSampler(DEFAULT_MIX, seed=1).sample(200) != draws[:200]
    five = TaskSampler("itm:1,mlm:1,mrfr:1,mrc:1,mrc-kl:1", seed=3).sample(5000)
    assert all(abs(five.count(t) / 5000 - 0.2) < 0.03 for t in ("itm", "mlm", "mrfr", "mrc", "mrc-kl"))


def test_optimizer_groups_and_schedule(ds):
    model = tiny_model(ds)
    opt = build_optimizer(model, 1e-3, 0.01)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert opt.defaults["betas"] == (0.9, 0.98)
    names = {id(p): n for n, p in model.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert all(n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n or ".net.2." in n for n in nd)
    assert "feat_regress.net.2.weight" in nd and "cls.predictions.bias" in nd
    assert all(n.endswith("weight") for n in d)
    assert "uniter.embeddings.word_embeddings.weight" in d
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    f = [lr_factor(s, 4, 20) for s in range(20)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0] and f[4] == 1.0
    assert all(a > b for a, b in zip(f[4:], f[5:])) and f[-1] == pytest.approx(1 / 16)


# ------------------------------------------------------------------------------- training

def _run(ds, out, seed=0, steps=30, mix=DEFAULT_MIX, **kw):
    model = tiny_model(ds, seed=seed)
    tc = TrainConfig(steps=steps, batch_size=24, lr=3e-3, warmup=3, mix=mix, seed=seed,
                     log_every=10, ckpt_every=20, progress=False, **kw)
    return model, pretrain(model, ds, ds.vocab, tc, out_dir=str(out), val_ds=ds,
                           print_fn=lambda s: None)


def test_training_run_learns_checkpoints_and_is_deterministic(ds, tmp_path):
    model, r = _run(ds, tmp_path / "a")
    h = r["history"]
    assert len(h) == 30 and {e["task"] for e in h} == {"itm", "mlm", "mrfr", "mrc-kl"}
    mlm = [e["loss"] for e in h if e["task"] == "mlm"]
    assert np.mean(mlm[-3:]) < np.mean(mlm[:3]) - 0.3, mlm
    assert all(math.isfinite(e["loss"]) for e in h)

    # official-layout checkpoints every 20 steps and at the end, loadable with report.ok()
    ck = tmp_path / "a" / "ckpt"
    assert sorted(os.listdir(ck)) == ["model_step_20.json", "model_step_20.pt",
                                      "model_step_30.json", "model_step_30.pt"]
    sd = torch.load(tmp_path / "a" / "final.pt")
    assert set(sd) == set(model.state_dict()) and all(k.split(".")[0] in
               ("uniter", "cls", "feat_regress", "region_classifier", "itm_output") for k in sd)
    fresh = UniterForPretraining(model.config)
    report = load_checkpoint(fresh, str(ck / "model_step_30.pt"))
    assert report.ok(), str(report)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    meta = json.loads((ck / "model_step_30.json").read_text())
    assert meta["step"] == 30 and meta["seed"] == 0 and meta["config"]["hidden_size"] == 32
    assert "mlm_loss" in meta["losses"] and "itm_acc" in meta["losses"]
    assert json.loads((tmp_path / "a" / "config.json").read_text())["vocab_size"] == len(VOCAB)
    logs = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logs if e["split"] == "train"] == [10, 20, 30]
    assert [e["step"] for e in logs if e["split"] == "val"] == [20, 30]
    assert "itm_acc" in logs[-1] and "mlm_loss" in logs[-1]

    # determinism: the same seed gives identical losses, another seed does not
    _, r2 = _run(ds, tmp_path / "b")
    assert [(e["task"], e["loss"]) for e in r2["history"]] == [(e["task"], e["loss"]) for e in h]
    assert r2["logs"][-1] == r["logs"][-1]
    _, r3 = _run(ds, tmp_path / "c", seed=1, steps=5)
    assert [e["loss"] for e in r3["history"]] != [e["loss"] for e in h[:5]]


def test_grounding_warmup_precedes_the_recipe(ds, tmp_path):
    """--grounded-mlm-steps N: the first N steps are MLM batches of grounded-word masking, the
    groups taking turns, logged as their own task; the recipe follows. Without groups it is refused."""
    groups = ((TOK["circle"], TOK["square"]), (TOK["triangle"], TOK["star"]))
    _, r = _run(ds, tmp_path / "g", steps=12, grounded_mlm_steps=6, grounded_groups=groups)
    tasks = [e["task"] for e in r["history"]]
    assert tasks[:6] == ["grounded-mlm"] * 6 and "grounded-mlm" not in tasks[6:]
    assert set(tasks[6:]) <= {"itm", "mlm", "mrfr", "mrc-kl"}
    # every caption of the fixture names a class word, so every warm-up batch has targets
    assert all(e["n"] > 0 and math.isfinite(e["loss"]) for e in r["history"][:6])
    assert "grounded-mlm_loss" in r["logs"][0]
    with pytest.raises(ValueError, match="grounded_groups"):
        _run(ds, tmp_path / "bad", steps=2, grounded_mlm_steps=1)


def test_grounded_curriculum_draws_only_its_images_first(ds, tmp_path):
    """grounded_images + grounded_images_steps: the first steps' captions come only from those
    images (here the images without a circle, so masking "circle" finds no target there), then
    from every image; the curriculum's batches go through its pool an epoch at a time."""
    no_circle = tuple(i for i in range(ds.num_images)
                      if not any(TOK["circle"] in ds[c]["input_ids"].tolist()
                                 for c in np.flatnonzero(ds.image_of == i)))
    assert 0 < len(no_circle) < ds.num_images
    _, r = _run(ds, tmp_path / "c", steps=8, grounded_mlm_steps=8, grounded_groups=((TOK["circle"],),),
                grounded_images=no_circle, grounded_images_steps=4)
    n = [e["n"] for e in r["history"]]
    assert n[:4] == [0.0] * 4 and all(v > 0 for v in n[4:]), n

    pool = np.flatnonzero(np.isin(ds.image_of, no_circle))
    b = CaptionBatcher(len(ds), 3, 0, pool=pool)
    drawn = [c for _ in range(len(pool)) for c in next(b)]  # three epochs of the pool
    for e in range(3):
        assert sorted(drawn[e * len(pool):(e + 1) * len(pool)]) == sorted(pool.tolist())
    with pytest.raises(ValueError, match="grounded_images_steps"):
        _run(ds, tmp_path / "bad", steps=4, grounded_mlm_steps=2, grounded_groups=((TOK["circle"],),),
             grounded_images=no_circle, grounded_images_steps=3)
    with pytest.raises(ValueError, match=r"want image indices 0\.\.11 of the training split, got \[12\]"):
        _run(ds, tmp_path / "bad2", steps=4, grounded_mlm_steps=2, grounded_groups=((TOK["circle"],),),
             grounded_images=(ds.num_images,), grounded_images_steps=2)


def test_train_only_mlm_head_leaves_the_rest_of_the_model_bit_identical(ds, tmp_path):
    """train_only="mlm-head": grounded MLM steps change the MLM head's transform and bias and no
    other parameter (the tied decoder weight, i.e. the word embeddings, included); a run that
    would also train other tasks is refused, and so is an unknown part."""
    groups = ((TOK["circle"], TOK["square"]), (TOK["triangle"], TOK["star"]))
    model = tiny_model(ds, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tc = TrainConfig(steps=6, batch_size=24, lr=3e-3, warmup=1, seed=0, log_every=10, ckpt_every=0,
                     progress=False, grounded_mlm_steps=6, grounded_groups=groups, train_only="mlm-head")
    r = pretrain(model, ds, ds.vocab, tc, print_fn=lambda s: None)
    assert all(math.isfinite(e["loss"]) for e in r["history"])
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
                       "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
                       "cls.predictions.bias"}, changed
    with pytest.raises(ValueError, match="every step must be MLM"):
        _run(ds, tmp_path / "mix", steps=4, grounded_mlm_steps=2, grounded_groups=groups, train_only="mlm-head")
    with pytest.raises(ValueError, match="want one of"):
        _run(ds, tmp_path / "bad", steps=2, mix="mlm:1", train_only="encoder")


def test_loss_weights_scale_that_tasks_gradients(ds, tmp_path):
    """--loss-weights itm:3 triples the first ITM step's gradient norm (no clipping) and leaves
    the other tasks' and the logged (unweighted) losses alone."""
    def first(history, task):
        return next(h for h in history if h["task"] == task)
    _, plain = _run(ds, tmp_path / "a", steps=6, grad_clip=1e9, mix="itm:1,mlm:1")
    _, weighted = _run(ds, tmp_path / "b", steps=6, grad_clip=1e9, mix="itm:1,mlm:1", loss_weights="itm:3")
    a, b = first(plain["history"], "itm"), first(weighted["history"], "itm")
    assert a["step"] == b["step"] and b["loss"] == pytest.approx(a["loss"])
    assert a["grad_norm"] > 0 and b["grad_norm"] == pytest.approx(3 * a["grad_norm"], rel=1e-4)
    if plain["history"][0]["task"] == "mlm":  # before any weighted step the runs are identical
        assert weighted["history"][0]["grad_norm"] == pytest.approx(plain["history"][0]["grad_norm"], rel=1e-6)
    with pytest.raises(ValueError):
        _run(ds, tmp_path / "c", steps=1, loss_weights="itm:x")


def test_itm_overfits_a_fixed_batch(ds):
    """ITM (with WRA) through the training pieces: 30 AdamW steps on one fixed batch of pairs."""
    torch.manual_seed(0)
    model = tiny_model(ds, **NO_DROPOUT).train()
    b = collate(itm_samples(ds, range(len(ds)), np.random.default_rng(0)))
    assert 0 < b["targets"].sum() < len(ds)
    x = prepare_task("itm", b, ds.vocab, torch.Generator())
    opt = build_optimizer(model, 1e-2)
    losses = []
    for _ in range(30):
        loss, m = forward_task(model, "itm", x, ot_weight=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(m["xe"])
    assert losses[0] > 0.65 and max(losses[-5:]) < losses[0] - 0.1, losses


def test_wra_off_and_all_tasks_run(ds, tmp_path):
    _, r = _run(ds, tmp_path / "x", steps=10, mix="itm:1,mrc:1,mrc-kl:1", ot_weight=0.0)
    assert all("ot" not in e for e in r["history"])
    assert {e["task"] for e in r["history"]} == {"itm", "mrc", "mrc-kl"}
    model = tiny_model(ds)
    tc = TrainConfig(batch_size=10, seed=3)
    a = evaluate(model, ds, ds.vocab, ["mlm", "itm", "mrfr", "mrc", "mrc-kl"], tc)
    b = evaluate(model, ds, ds.vocab, ["mlm", "itm", "mrfr", "mrc", "mrc-kl"], tc)
    assert a == b and {"mlm_loss", "mlm_acc", "itm_acc", "itm_ot", "mrfr_loss", "mrc_acc",
                       "mrc-kl_loss"} <= set(a)


def test_cli(split, tmp_path):
    out = subprocess.run([sys.executable, "-m", "uniter.pretrain", "--help"], cwd=MODELS,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--data", "--val", "--out", "--config", "--steps", "--batch-size", "--lr",
                 "--warmup", "--mix", "--ot-weight", "--seed", "--log-every", "--ckpt-every",
                 "--threads"):
        assert flag in out.stdout
    from uniter import pretrain as cli
    rc = cli.main(["--data", split, "--val", split, "--out", str(tmp_path / "run"),
                   "--config", json.dumps(TINY), "--steps", "4", "--batch-size", "8",
                   "--lr", "1e-3", "--log-every", "2", "--ckpt-every", "0", "--no-progress"])
    assert rc == 0
    run = tmp_path / "run"
    assert os.path.exists(run / "final.pt") and os.path.exists(run / "ckpt" / "model_step_4.pt")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["hidden_size"] == 32 and cfg["img_dim"] == 16 and cfg["img_label_dim"] == 5
    with pytest.raises(SystemExit, match="false_captions.jsonl"):
        cli.main(["--data", split, "--out", str(tmp_path / "nofalse"), "--config", json.dumps(TINY),
                  "--steps", "1", "--itm-text-negatives", "0.5", "--no-progress"])
    with pytest.raises(SystemExit, match="0..1"):
        cli.main(["--data", split, "--out", str(tmp_path / "badshare"), "--config", json.dumps(TINY),
                  "--steps", "1", "--itm-text-negatives", "1.5", "--no-progress"])
    words = tmp_path / "classes.txt"
    words.write_text("__background__\ncircle\nsquare\ntriangle\nstar\n")
    with pytest.raises(SystemExit, match="--grounded-words"):
        cli.main(["--data", split, "--out", str(tmp_path / "nogroups"), "--config", json.dumps(TINY),
                  "--steps", "1", "--grounded-mlm-steps", "1", "--no-progress"])
    with pytest.raises(SystemExit, match="No such file"):
        cli.main(["--data", split, "--out", str(tmp_path / "nofile"), "--config", json.dumps(TINY),
                  "--steps", "1", "--grounded-mlm-steps", "1", "--grounded-words",
                  str(tmp_path / "missing.txt"), "--no-progress"])
    assert cli.main(["--data", split, "--out", str(tmp_path / "grounded"), "--config", json.dumps(TINY),
                     "--steps", "3", "--batch-size", "8", "--grounded-mlm-steps", "2",
                     "--grounded-words", str(words), "--log-every", "1", "--ckpt-every", "0",
                     "--no-progress"]) == 0
    logs = [json.loads(line) for line in (tmp_path / "grounded" / "log.jsonl").read_text().splitlines()]
    assert [("grounded-mlm_loss" in e) for e in logs if e["split"] == "train"] == [True, True, False]
    images = tmp_path / "images.txt"
    images.write_text("0\n3\n")
    assert cli.main(["--data", split, "--out", str(tmp_path / "curriculum"), "--config", json.dumps(TINY),
                     "--steps", "2", "--batch-size", "4", "--grounded-mlm-steps", "2", "--grounded-words",
                     str(words), "--grounded-images", str(images), "--grounded-images-steps", "1",
                     "--ckpt-every", "0", "--no-progress"]) == 0
    images.write_text("0\n99\n")
    with pytest.raises(SystemExit, match="want image indices 0..11"):
        cli.main(["--data", split, "--out", str(tmp_path / "badimg"), "--config", json.dumps(TINY),
                  "--steps", "2", "--grounded-mlm-steps", "2", "--grounded-words", str(words),
                  "--grounded-images", str(images), "--grounded-images-steps", "1", "--no-progress"])
    with pytest.raises(SystemExit, match="go together"):
        cli.main(["--data", split, "--out", str(tmp_path / "alone"), "--config", json.dumps(TINY),
                  "--steps", "2", "--grounded-mlm-steps", "2", "--grounded-words", str(words),
                  "--grounded-images", str(images), "--no-progress"])
    with pytest.raises(ValueError, match="img_dim"):
        cli.main(["--data", split, "--out", str(tmp_path / "bad"), "--config",
                  json.dumps(dict(TINY, img_dim=8)), "--steps", "1", "--no-progress"])


def test_cuda_matches_cpu(ds, tmp_path):
    """Runs for real whenever a usable GPU is present: the same steps on CUDA give the same losses
    as on the CPU (no dropout, so no device-specific random numbers)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the GPU path is not exercised on this machine")
    runs = {}
    for device in ("cpu", "cuda"):
        model = tiny_model(ds, **NO_DROPOUT).to(device)
        tc = TrainConfig(steps=6, batch_size=12, lr=1e-3, warmup=2, seed=5, log_every=3,
                         ckpt_every=0, progress=False)
        runs[device] = pretrain(model, ds, ds.vocab, tc, out_dir=str(tmp_path / device),
                                print_fn=lambda s: None)["history"]
    assert [e["task"] for e in runs["cpu"]] == [e["task"] for e in runs["cuda"]]
    for a, b in zip(runs["cpu"], runs["cuda"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-4), (a, b)
    report = load_checkpoint(UniterForPretraining(model.config), str(tmp_path / "cuda" / "final.pt"))
    assert report.ok()


def test_time_budget_caps_steps_and_completes_the_schedule(ds, tmp_path):
    """--minutes: after the probe steps the measured rate fixes the step count; the linear decay
    then ends at that step (lr reaches 0 at the last step), and checkpoints follow the new end."""
    tiny_budget = 1e-9  # minutes: far less than the probe took, so training stops at probe + 1
    _, r = _run(ds, tmp_path / "a", steps=30, minutes=tiny_budget, budget_probe=5)
    h = r["history"]
    assert len(h) == 6, len(h)
    # warm-up 3, end 6: the last step (index 5) runs at (6 - 5) / (6 - 3) of the peak 3e-3,
    # where the original end (30) would give (30 - 5) / 27
    assert h[-1]["lr"] == pytest.approx(3e-3 / 3)
    assert sorted(os.listdir(tmp_path / "a" / "ckpt")) == ["model_step_6.json", "model_step_6.pt"]
    assert json.loads((tmp_path / "a" / "final.json").read_text())["step"] == 6
    # a budget larger than the run leaves the step count alone
    _, r = _run(ds, tmp_path / "b", steps=8, minutes=60, budget_probe=5)
    assert len(r["history"]) == 8


def _with_false_captions(root):
    """The standard split plus false_captions.jsonl: for each image, 'a V' with V a shape the
    image lacks, made from its 'a W' caption (source = that line), and one random false caption
    'there is a V and a U' with no source."""
    make_split(root)
    d = PretrainDataset(str(root))
    lines = []
    for i in range(d.num_images):
        own = [c for c in range(len(d)) if d.image_of[c] == i]
        present = {w for c in own for w in d.captions[c]["text"].split() if w in CLASS_WORDS}
        absent = [w for w in CLASS_WORDS if w not in present]
        short = next(c for c in own if d.captions[c]["text"].startswith("a "))
        for text, src in ((f"a {absent[0]}", short), (f"there is a {absent[0]} and a {sorted(present)[0]}", -1)):
            ids = [TOK["[CLS]"]] + [TOK[w] for w in text.split()] + [TOK["[SEP]"]]
            lines.append({"image": i, "text": text, "input_ids": ids, "source": src, "edit": "shape"})
    with open(os.path.join(root, "false_captions.jsonl"), "w") as f:
        f.write("".join(json.dumps(l) + "\n" for l in lines))
    return lines


def test_text_negatives_are_minimal_edits_false_on_the_captions_own_image(tmp_path):
    lines = _with_false_captions(tmp_path)
    d = PretrainDataset(str(tmp_path))
    assert len(d.false_captions) == len(lines)
    rng = np.random.default_rng(0)
    for c in range(len(d)):
        f = d.text_negative(c, rng)
        assert lines[f]["image"] == d.image_of[c]
        if d.captions[c]["text"].startswith("a "):
            assert lines[f]["source"] == c  # the caption's own edit when it has one
    # every negative a text negative: the caption's image, a false caption's ids, target 0
    for s in itm_samples(d, range(len(d)), np.random.default_rng(1), neg_prob=1.0, text_prob=1.0):
        f = -1 - s["caption_index"]
        assert s["target"] == 0 and f >= 0 and s["image_index"] == lines[f]["image"]
        assert s["input_ids"].tolist() == lines[f]["input_ids"]
        named = {VOCAB[t] for t in lines[f]["input_ids"]} & set(CLASS_WORDS)
        img_words = {w for c in range(len(d)) if d.image_of[c] == s["image_index"]
                     for w in d.captions[c]["text"].split()}
        assert not named <= img_words, "a text negative that is true of its image"
    # a share of them, and none without the knob (the random sequence unchanged)
    samples = [s for _ in range(30) for s in itm_samples(d, range(len(d)), rng, 1.0, 0.5)]
    share = np.mean([s["caption_index"] < 0 for s in samples])
    assert abs(share - 0.5) < 0.07, share
    a = itm_samples(d, range(len(d)), np.random.default_rng(5), 0.5)
    b = itm_samples(d, range(len(d)), np.random.default_rng(5), 0.5, 0.0)
    assert [(s["caption_index"], s["image_index"]) for s in a] == [(s["caption_index"], s["image_index"]) for s in b]
    # hard-negative mining leaves text negatives as they are
    model = tiny_model(d)
    hard = hard_itm_samples(model, d, range(len(d)), np.random.default_rng(2), 1.0, 3, text_prob=1.0)
    assert all(s["target"] == 0 and s["caption_index"] < 0 for s in hard)
    # a minimal edit must be of a caption of the same image
    bad = dict(lines[0], source=len(d) - 1)
    with open(tmp_path / "false_captions.jsonl", "a") as f:
        f.write(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="source"):
        PretrainDataset(str(tmp_path))


def _with_near_misses(root, truth_too=True):
    """The standard split with truth.npz's near: near[c, i] when caption c is false on image i
    but i holds one of the shapes c names."""
    tr = make_split(root)
    d = PretrainDataset(str(root))
    shapes_of = [{w for c in range(len(d)) if d.image_of[c] == i for w in d.captions[c]["text"].split()
                  if w in CLASS_WORDS} for i in range(d.num_images)]
    near = np.array([[not tr[c, i] and bool(set(d.captions[c]["text"].split()) & shapes_of[i])
                      for i in range(d.num_images)] for c in range(len(d))])
    np.savez(os.path.join(root, "truth.npz"), truth=tr, near=near)
    return tr, near


def test_near_negatives_are_drawn_among_near_misses(tmp_path):
    tr, near = _with_near_misses(tmp_path)
    d = PretrainDataset(str(tmp_path))
    assert np.array_equal(d.near, near) and near.any() and (~near & ~tr).any()
    with_near = [c for c in range(len(d)) if near[c].any()]
    # near_prob 1: every image negative of a caption with near misses is one of them
    for s in itm_samples(d, with_near * 5, np.random.default_rng(0), neg_prob=1.0, near_prob=1.0):
        assert s["target"] == 0 and near[s["caption_index"], s["image_index"]]
    # a share: near misses among the negatives at about p + (1-p)·(their share of false images)
    p, got, want = 0.5, [], []
    rng = np.random.default_rng(1)
    for _ in range(40):
        for s in itm_samples(d, with_near, rng, neg_prob=1.0, near_prob=p):
            c = s["caption_index"]
            got.append(near[c, s["image_index"]])
            want.append(p + (1 - p) * near[c].sum() / (~tr[c]).sum())
    assert abs(np.mean(got) - np.mean(want)) < 0.05, (np.mean(got), np.mean(want))
    # without the knob the random sequence is unchanged
    a = itm_samples(d, range(len(d)), np.random.default_rng(5), 0.5)
    b = itm_samples(d, range(len(d)), np.random.default_rng(5), 0.5, near_prob=0.0)
    assert [(s["caption_index"], s["image_index"]) for s in a] == [(s["caption_index"], s["image_index"]) for s in b]
    # hard-negative mining: every candidate a near miss, so the chosen one is
    model = tiny_model(d)
    for s in hard_itm_samples(model, d, with_near, np.random.default_rng(2), 1.0, 3, near_prob=1.0):
        assert s["target"] == 0 and near[s["caption_index"], s["image_index"]]
    # a caption without near misses falls back to any false image
    lonely = [c for c in range(len(d)) if not near[c].any()]
    for s in itm_samples(d, lonely, np.random.default_rng(3), neg_prob=1.0, near_prob=1.0):
        assert s["target"] == 0 and not tr[s["caption_index"], s["image_index"]]


def test_near_misses_must_be_false_pairs_of_truths_shape(tmp_path):
    tr, near = _with_near_misses(tmp_path)
    bad = near.copy()
    bad[0, int(np.flatnonzero(tr[0])[0])] = True
    np.savez(tmp_path / "truth.npz", truth=tr, near=bad)
    with pytest.raises(ValueError, match="near marks pairs that truth says are true"):
        PretrainDataset(str(tmp_path))
    np.savez(tmp_path / "truth.npz", truth=tr, near=near[:, 1:])
    with pytest.raises(ValueError, match="near has shape"):
        PretrainDataset(str(tmp_path))


def test_cli_near_negatives(split, tmp_path):
    from uniter import pretrain as cli
    base = ["--config", json.dumps(TINY), "--steps", "2", "--batch-size", "8", "--mix", "itm:1",
            "--no-progress", "--ckpt-every", "0"]
    with pytest.raises(SystemExit, match="near misses"):
        cli.main(["--data", split, "--out", str(tmp_path / "a"), "--itm-near-negatives", "0.5"] + base)
    with pytest.raises(SystemExit, match="0..1"):
        cli.main(["--data", split, "--out", str(tmp_path / "b"), "--itm-near-negatives", "1.5"] + base)
    _with_near_misses(tmp_path / "near")
    assert cli.main(["--data", str(tmp_path / "near"), "--out", str(tmp_path / "c"), "--itm-near-negatives", "0.5",
                     "--itm-hard-negatives", "3"] + base) == 0
    assert json.loads((tmp_path / "c" / "final.json").read_text())["train"]["itm_near_negatives"] == 0.5


def test_cli_plan_absorb(split, tmp_path):
    from uniter import pretrain as cli
    base = ["--data", split, "--config", json.dumps(TINY), "--steps", "2", "--batch-size", "8", "--mix", "itm:1",
            "--no-progress", "--ckpt-every", "0"]
    with pytest.raises(SystemExit, match="need --plan-distill"):
        cli.main(["--out", str(tmp_path / "a"), "--plan-absorb"] + base)
    with pytest.raises(SystemExit, match="need --plan-distill"):
        cli.main(["--out", str(tmp_path / "a"), "--plan-target", "plan"] + base)
    with pytest.raises(SystemExit, match="need --plan-distill"):
        cli.main(["--out", str(tmp_path / "a"), "--plan-columns"] + base)
    with pytest.raises(SystemExit, match="need --plan-distill"):
        cli.main(["--out", str(tmp_path / "a"), "--plan-argmax", "0.3"] + base)
    with pytest.raises(SystemExit, match="a share"):
        cli.main(["--out", str(tmp_path / "a"), "--plan-distill", "1", "--plan-argmax", "1"] + base)
    assert cli.main(["--out", str(tmp_path / "b"), "--plan-distill", "1", "--plan-absorb", "--plan-target", "plan",
                     "--plan-columns"] + base) == 0
    train = json.loads((tmp_path / "b" / "final.json").read_text())["train"]
    assert train["plan_absorb"] is True and train["plan_distill"] == 1 and train["plan_target"] == "plan"
    assert train["plan_columns"] is True
    assert train["plan_argmax"] is None
    assert cli.main(["--out", str(tmp_path / "c"), "--plan-distill", "1", "--plan-argmax", "0.3"] + base) == 0
    assert json.loads((tmp_path / "c" / "final.json").read_text())["train"]["plan_argmax"] == 0.3
    words = tmp_path / "naming.txt"
    words.write_text("red\ncircle\n")
    with pytest.raises(SystemExit, match="needs --plan-absorb"):
        cli.main(["--out", str(tmp_path / "a"), "--plan-distill", "1", "--plan-naming-words", str(words)] + base)
    with pytest.raises(SystemExit, match="--plan-naming-words"):
        cli.main(["--out", str(tmp_path / "a"), "--plan-distill", "1", "--plan-absorb",
                  "--plan-naming-words", str(tmp_path / "missing.txt")] + base)
    assert cli.main(["--out", str(tmp_path / "d"), "--plan-distill", "1", "--plan-absorb",
                     "--plan-naming-words", str(words)] + base) == 0
    assert json.loads((tmp_path / "d" / "final.json").read_text())["train"]["plan_naming_ids"]
    with pytest.raises(SystemExit, match="--plan-rows needs --plan-distill"):
        cli.main(["--out", str(tmp_path / "a"), "--plan-rows", "0.5"] + base)
    with pytest.raises(SystemExit, match="want >= 0"):
        cli.main(["--out", str(tmp_path / "a"), "--plan-distill", "1", "--plan-rows", "-1"] + base)
    assert cli.main(["--out", str(tmp_path / "e"), "--plan-distill", "1", "--plan-rows", "0.5",
                     "--plan-rows-target", "cosine"] + base) == 0
    train = json.loads((tmp_path / "e" / "final.json").read_text())["train"]
    assert train["plan_rows"] == 0.5 and train["plan_rows_target"] == "cosine"


def _distill_case(ds):
    """A tiny model without dropout on an ITM batch with a padded region in a real pair: (model, x,
    hidden, attention, text length, special ids)."""
    torch.manual_seed(0)
    model = tiny_model(ds, **NO_DROPOUT).eval()
    b = collate(itm_samples(ds, range(len(ds)), np.random.default_rng(0)))
    b["img_mask"][0, -1] = 0
    x = prepare_task("itm", b, ds.vocab, torch.Generator())
    hidden, _, attn = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"], x["img_mask"])
    return model, x, hidden, attn, x["input_ids"].size(1), (ds.vocab.special.cls, ds.vocab.special.sep)


def _attention_target(attn, bi, t, T, regions):
    """Token t's attention to each region plus the region's to it, over every layer and head,
    scaled to sum to 1 (float64)."""
    w = torch.tensor([sum(float(a[bi, h, t, T + r] + a[bi, h, T + r, t]) for a in attn for h in range(a.size(1)))
                      for r in regions], dtype=torch.float64)
    return w / w.sum()


def test_plan_distillation_matches_a_token_by_token_computation(ds):
    """plan_distill_loss against loops over pairs, tokens and regions: the attention between a
    token and each real region (both directions, every layer and head), scaled to sum to 1, is
    the target of the softmax of cosines / tau over the real regions; KL averaged over the
    matching pairs' non-special tokens. It is added to ITM with its weight, and only there."""
    model, x, hidden, attn, T, specials = _distill_case(ds)
    kls = []
    for bi in range(hidden.size(0)):
        if x["targets"][bi] != 1:
            continue
        regions = [r for r in range(x["img_mask"].size(1)) if x["img_mask"][bi, r]]
        for t in range(T):
            if not x["text_mask"][bi, t] or int(x["input_ids"][bi, t]) in specials:
                continue
            p = _attention_target(attn, bi, t, T, regions)
            cos = torch.tensor([float(F.cosine_similarity(hidden[bi, t], hidden[bi, T + r], dim=0)) for r in regions],
                               dtype=torch.float64)
            logq = torch.log_softmax(cos / PLAN_DISTILL_TAU, 0)
            kls.append(float((p * (p.log() - logq)).sum()))
    assert len(kls) > 10
    words = x["text_mask"].bool() & ~torch.isin(x["input_ids"], torch.tensor(specials)) & (x["targets"] == 1)[:, None]
    got = plan_distill_loss(hidden[:, :T], hidden[:, T:], attn, x["img_mask"], words)
    assert abs(float(got) - np.mean(kls)) < 1e-4, (float(got), np.mean(kls))
    assert attention_alignment(attn, T).shape == (hidden.size(0), T, x["img_mask"].size(1))
    # added to ITM with its weight
    base, m0 = forward_task(model, "itm", x, ot_weight=0.1)
    both, m1 = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=0.5, special_ids=specials)
    assert "distill" not in m0 and abs(m1["distill"] - np.mean(kls)) < 1e-4
    assert abs(float(both) - float(base) - 0.5 * m1["distill"]) < 1e-5


def _pair_targets(x, attn, T, specials):
    """For each matching pair: (pair index, its real tokens, its real regions, the tokens x
    regions targets). A word's row is its attention target; an absorber's ([CLS], [SEP]) is
    max(0, 1/N - mean over the pair's words of their targets), scaled to sum to 1."""
    for bi in range(x["input_ids"].size(0)):
        if x["targets"][bi] != 1:
            continue
        regions = [r for r in range(x["img_mask"].size(1)) if x["img_mask"][bi, r]]
        toks = [t for t in range(T) if x["text_mask"][bi, t]]
        targets = {t: _attention_target(attn, bi, t, T, regions) for t in toks if int(x["input_ids"][bi, t]) not in specials}
        left = (1.0 / len(regions) - torch.stack(list(targets.values())).mean(0)).clamp_min(0)
        assert left.sum() > 0  # some region is claimed less than its share
        yield bi, toks, regions, torch.stack([targets[t] if t in targets else left / left.sum() for t in toks])


def _cos(hidden, T, bi, t, r):
    """Cosine of token t's and region r's final states in pair bi."""
    return float(F.cosine_similarity(hidden[bi, t], hidden[bi, T + r], dim=0))


def _kl_to_softmax(p, cos):
    """KL(p || softmax(cos / tau)), float64."""
    logq = torch.log_softmax(torch.tensor(cos, dtype=torch.float64) / PLAN_DISTILL_TAU, 0)
    return float(torch.where(p > 0, p * (p.clamp_min(1e-300).log() - logq), torch.zeros_like(p)).sum())


def test_plan_absorbers_take_the_regions_the_words_leave(ds):
    """With absorbers, [CLS] and [SEP] of matching pairs join the mean, each with the target
    max(0, 1/N - mean over the pair's words of their attention target), scaled to sum to 1;
    computed here pair by pair from the same per-token targets as the loop above."""
    model, x, hidden, attn, T, specials = _distill_case(ds)
    kls, n_absorbers = [], 0
    for bi, toks, regions, rows in _pair_targets(x, attn, T, specials):
        for k, t in enumerate(toks):
            kls.append(_kl_to_softmax(rows[k], [_cos(hidden, T, bi, t, r) for r in regions]))
            n_absorbers += int(x["input_ids"][bi, t]) in specials
    assert n_absorbers >= 4
    words = x["text_mask"].bool() & ~torch.isin(x["input_ids"], torch.tensor(specials)) & (x["targets"] == 1)[:, None]
    absorbers = x["text_mask"].bool() & torch.isin(x["input_ids"], torch.tensor(specials)) & (x["targets"] == 1)[:, None]
    got = plan_distill_loss(hidden[:, :T], hidden[:, T:], attn, x["img_mask"], words, absorbers=absorbers)
    assert abs(float(got) - np.mean(kls)) < 1e-4, (float(got), np.mean(kls))
    _, m = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=0.5, special_ids=specials, plan_absorb=True)
    assert abs(m["distill"] - np.mean(kls)) < 1e-4
    without = plan_distill_loss(hidden[:, :T], hidden[:, T:], attn, x["img_mask"], words)
    assert abs(float(without) - float(got)) > 1e-3  # the absorbers change the loss


def test_plan_columns_pull_each_region_towards_the_tokens_that_claim_it(ds):
    """With columns, each real region of a matching pair adds a KL term: its softmax over the
    pair's selected tokens of cos / tau against the targets' column, p(t, r) over the sum of
    p(., r); mean over regions, added to the rows' mean. Computed here region by region from the
    same per-token targets (absorbers included)."""
    model, x, hidden, attn, T, specials = _distill_case(ds)
    words = x["text_mask"].bool() & ~torch.isin(x["input_ids"], torch.tensor(specials)) & (x["targets"] == 1)[:, None]
    absorbers = x["text_mask"].bool() & torch.isin(x["input_ids"], torch.tensor(specials)) & (x["targets"] == 1)[:, None]
    col_kls = []
    for bi, toks, regions, rows in _pair_targets(x, attn, T, specials):
        for k, r in enumerate(regions):
            col_kls.append(_kl_to_softmax(rows[:, k] / rows[:, k].sum(), [_cos(hidden, T, bi, t, r) for t in toks]))
    assert len(col_kls) > 10
    rows_only = plan_distill_loss(hidden[:, :T], hidden[:, T:], attn, x["img_mask"], words, absorbers=absorbers)
    got = plan_distill_loss(hidden[:, :T], hidden[:, T:], attn, x["img_mask"], words, absorbers=absorbers,
                            columns=True)
    assert abs(float(got) - float(rows_only) - np.mean(col_kls)) < 1e-4, (float(got) - float(rows_only), np.mean(col_kls))
    _, m = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=0.5, special_ids=specials, plan_absorb=True,
                        plan_columns=True)
    assert abs(m["distill"] - float(got)) < 1e-5


def test_plan_argmax_targets_the_attention_argmax_region_smoothed(ds):
    """With argmax D, a word's target is (1 - D) on its attention target's argmax region plus D / N
    on every real region, and the absorbers' targets are computed from those word targets (the
    regions they leave unclaimed); computed here token by token."""
    model, x, hidden, attn, T, specials = _distill_case(ds)
    D = 0.3
    kls = []
    for bi, toks, regions, rows in _pair_targets(x, attn, T, specials):
        is_word = [int(x["input_ids"][bi, t]) not in specials for t in toks]
        n = len(regions)
        sharp = [torch.full((n,), D / n, dtype=torch.float64) for _ in toks]
        for k, row in enumerate(rows):
            sharp[k][int(row.argmax())] += 1 - D
        left = (1.0 / n - torch.stack([sharp[k] for k in range(len(toks)) if is_word[k]]).mean(0)).clamp_min(0)
        for k, t in enumerate(toks):
            target = sharp[k] if is_word[k] else left / left.sum()
            kls.append(_kl_to_softmax(target, [_cos(hidden, T, bi, t, r) for r in regions]))
    words = x["text_mask"].bool() & ~torch.isin(x["input_ids"], torch.tensor(specials)) & (x["targets"] == 1)[:, None]
    absorbers = x["text_mask"].bool() & torch.isin(x["input_ids"], torch.tensor(specials)) & (x["targets"] == 1)[:, None]
    got = plan_distill_loss(hidden[:, :T], hidden[:, T:], attn, x["img_mask"], words, absorbers=absorbers, argmax=D)
    assert abs(float(got) - np.mean(kls)) < 1e-4, (float(got), np.mean(kls))
    _, m = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=0.5, special_ids=specials, plan_absorb=True,
                        plan_argmax=D)
    assert abs(m["distill"] - float(got)) < 1e-5
    spread = plan_distill_loss(hidden[:, :T], hidden[:, T:], attn, x["img_mask"], words, absorbers=absorbers)
    assert abs(float(spread) - float(got)) > 1e-3  # the argmax targets change the loss


def test_plan_naming_words_leave_every_other_token_to_absorb(ds):
    """With naming ids, the words the distillation pulls towards their attention are those ids
    alone; every other text token of a matching pair ([CLS], [SEP], articles, relation words)
    is an absorber, its target the regions the naming words leave unclaimed."""
    model, x, hidden, attn, T, specials = _distill_case(ds)
    real = x["text_mask"].bool() & (x["targets"] == 1)[:, None]
    ids = [int(i) for i in x["input_ids"][real].unique() if int(i) not in specials]
    naming = ids[::2]  # half of the caption words name "objects"
    assert naming and len(naming) < len(ids)
    words = real & torch.isin(x["input_ids"], torch.tensor(naming))
    absorbers = real & ~words
    want = plan_distill_loss(hidden[:, :T], hidden[:, T:], attn, x["img_mask"], words, absorbers=absorbers)
    _, m = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=0.5, special_ids=specials, plan_absorb=True,
                        plan_naming_ids=naming)
    assert abs(m["distill"] - float(want)) < 1e-5
    _, m0 = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=0.5, special_ids=specials, plan_absorb=True)
    assert abs(m0["distill"] - m["distill"]) > 1e-3


def _pair_plan(x, hidden, bi, T, beta=0.5, iterations=50):
    """Pair bi alone, unpadded: (its real tokens, its real regions, the WRA cost [1, tokens,
    regions] in float64, the ot.ipot plan as tokens x regions)."""
    toks = [t for t in range(T) if x["text_mask"][bi, t]]
    regions = [r for r in range(x["img_mask"].size(1)) if x["img_mask"][bi, r]]
    ht, hr = hidden[bi, toks].double()[None], hidden[bi, [T + r for r in regions]].double()[None]
    C = cost_matrix_cosine(ht, hr)
    tp, ip = torch.zeros(1, len(toks), dtype=torch.bool), torch.zeros(1, len(regions), dtype=torch.bool)
    plan = ipot(C, torch.tensor([float(len(toks))]), tp, torch.tensor([float(len(regions))]), ip,
                tp[..., None] | ip[:, None, :], beta=beta, iterations=iterations)[0].T
    return toks, regions, C, plan


def test_plan_target_is_the_ot_plan_row_at_the_distillation_temperature(ds):
    """With plan_target "plan", q for a token is its row of the IPOT plan (float64, uniform
    marginals, [CLS] and [SEP] included) raised to the power eps / tau, eps = beta / iterations
    (the plan's own temperature), and scaled to sum to 1."""
    model, x, hidden, attn, T, specials = _distill_case(ds)
    beta, iterations = 0.5, 50
    kls = []
    for bi in range(hidden.size(0)):
        if x["targets"][bi] != 1:
            continue
        toks, regions, _, plan = _pair_plan(x, hidden, bi, T, beta, iterations)
        for k, t in enumerate(toks):
            if int(x["input_ids"][bi, t]) in specials:
                continue
            p = _attention_target(attn, bi, t, T, regions)
            q = plan[k] ** ((beta / iterations) / PLAN_DISTILL_TAU)
            q = q / q.sum()
            kls.append(float((p * (p.log() - q.log())).sum()))
    assert len(kls) > 10
    _, m = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=1.0, special_ids=specials, plan_target="plan")
    assert abs(m["distill"] - np.mean(kls)) < 1e-4, (m["distill"], np.mean(kls))
    _, m_cos = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=1.0, special_ids=specials)
    assert abs(m_cos["distill"] - m["distill"]) > 1e-3
    with pytest.raises(ValueError, match="plan_target"):
        forward_task(model, "itm", x, plan_distill=1.0, special_ids=specials, plan_target="rows")


def test_plan_distillation_pulls_the_cosine_alignment_to_the_attention(ds):
    """Training on the distillation alone lowers it: the final states come to pair each token with
    the regions it attends to (the target is detached: only the states move towards it)."""
    torch.manual_seed(0)
    model = tiny_model(ds, **NO_DROPOUT).train()
    b = collate(itm_samples(ds, range(len(ds)), np.random.default_rng(0), neg_prob=0.0))
    x = prepare_task("itm", b, ds.vocab, torch.Generator())
    specials = (ds.vocab.special.cls, ds.vocab.special.sep)
    words = x["text_mask"].bool() & ~torch.isin(x["input_ids"], torch.tensor(specials))
    opt = build_optimizer(model, 1e-2)
    losses = []
    T = x["input_ids"].size(1)
    for _ in range(40):
        hidden, _, attn = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"], x["img_mask"])
        loss = plan_distill_loss(hidden[:, :T], hidden[:, T:], attn, x["img_mask"], words)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_plan_rows_loss_matches_a_pair_by_pair_computation(ds):
    """plan_rows_loss against a loop over the matching pairs with ot.ipot on each pair alone
    (unpadded): a word's row of the plan raised to PLAN_ROWS_POWER and scaled to sum to 1, its
    cross-entropy at the argmax region of the word's attention (or of its cosine), averaged over
    the words; the hit share is how many rows already peak there. It is added to ITM with its
    weight, over the same words as the distillation."""
    model, x, hidden, attn, T, specials = _distill_case(ds)
    words = x["text_mask"].bool() & ~torch.isin(x["input_ids"], torch.tensor(specials)) & (x["targets"] == 1)[:, None]
    for target in PLAN_ROWS_TARGETS:
        ces, hits = [], []
        for bi in range(hidden.size(0)):
            if not words[bi].any():
                continue
            toks, regions, C, plan = _pair_plan(x, hidden, bi, T)
            for k, t in enumerate(toks):
                if not words[bi, t]:
                    continue
                score = _attention_target(attn, bi, t, T, regions) if target == "attention" else -C[0, k]
                goal = int(score.argmax())
                q = plan[k] ** PLAN_ROWS_POWER
                ces.append(-float((q[goal] / q.sum()).log()))
                hits.append(int(plan[k].argmax()) == goal)
        assert len(ces) > 10
        got, hit = plan_rows_loss(hidden[:, :T], hidden[:, T:], attn, x["text_mask"], x["img_mask"], words, target)
        assert abs(float(got) - np.mean(ces)) < 1e-4, (target, float(got), np.mean(ces))
        assert abs(hit - np.mean(hits)) < 1e-6
        _, m = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=0.5, special_ids=specials,
                            plan_rows=2.0, plan_rows_target=target)
        _, m0 = forward_task(model, "itm", x, ot_weight=0.1, plan_distill=0.5, special_ids=specials)
        assert abs(m["rows"] - np.mean(ces)) < 1e-4 and "rows" not in m0
        assert abs(m["loss"] - m0["loss"] - 2.0 * m["rows"]) < 1e-4
    with pytest.raises(ValueError, match="plan rows target"):
        plan_rows_loss(hidden[:, :T], hidden[:, T:], attn, x["text_mask"], x["img_mask"], words, "plan")


def test_plan_rows_loss_wins_a_region_from_a_competing_word():
    """Two words want region 0 (their cosines peak there), which holds 1/4 of the plan's mass
    against their 1/3 each: the plan gives it to the word it is cheaper for, and the other's row
    peaks elsewhere. Descending the loss for that other word, through the solver, moves its
    row's argmax to region 0 — which a loss on its own cosine row would not need to do, since
    region 0 is its cosine's argmax already."""
    torch.manual_seed(0)
    txt = torch.tensor([[[1.0, 0.1, 0.0, 0.0], [1.0, 0.5, 0.3, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    img = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    txt = txt.clone().requires_grad_(True)
    tmask, imask = torch.ones(1, 3), torch.ones(1, 4)
    words = torch.tensor([[False, True, False]])
    cos = F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).transpose(1, 2)
    assert int(cos[0, 1].argmax()) == 0
    _, hit = plan_rows_loss(txt, img, [], tmask, imask, words, "cosine")
    assert hit == 0.0
    opt = torch.optim.Adam([txt], lr=0.02)
    for _ in range(100):
        loss, hit = plan_rows_loss(txt, img, [], tmask, imask, words, "cosine")
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, hit = plan_rows_loss(txt, img, [], tmask, imask, words, "cosine")
    assert hit == 1.0
