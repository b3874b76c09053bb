"""Tests of the reference UNITER (models/uniter/model.py): the official state-dict layout,
config loading, checkpoint loading (legacy names, tied keys, diagnostics), the padded layout's
equivalence with the official packed layout, and the image embedding.

Run:  cd models && /usr/bin/python3 -m pytest -q tests/test_model.py
"""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from uniter_testing import REPO, make_model, make_pairs, pad_batch, record, ref_packed, small_config
from uniter.model import LoadReport, UniterConfig, UniterForPretraining, load_checkpoint

torch.set_num_threads(1)

TOL = 1e-5


# ---------------------------------------------------------------------------- key layout

def official_keys(H=768, L=12, I=3072, V=28996, IMG=2048, LABELS=1601, P=512, TV=2):
    """The 230 keys of the official pre-training checkpoint with their shapes, written out from
    the official UNITER checkpoint's layout (independently of model.py)."""
    k = {}

    def lin(name, out_f, in_f, bias=True):
        k[name + ".weight"] = (out_f, in_f)
        if bias:
            k[name + ".bias"] = (out_f,)

    def ln(name, n=H):
        k[name + ".weight"] = (n,)
        k[name + ".bias"] = (n,)

    e = "uniter.embeddings."
    k[e + "word_embeddings.weight"] = (V, H)
    k[e + "position_embeddings.weight"] = (P, H)
    k[e + "token_type_embeddings.weight"] = (TV, H)
    ln(e + "LayerNorm")

    ie = "uniter.img_embeddings."
    lin(ie + "img_linear", H, IMG)
    lin(ie + "pos_linear", H, 7)
    ln(ie + "img_layer_norm")
    ln(ie + "pos_layer_norm")
    ln(ie + "LayerNorm")
    k[ie + "mask_embedding.weight"] = (2, IMG)

    for n in range(L):
        p = f"uniter.encoder.layer.{n}."
        for qkv in ("query", "key", "value"):
            lin(p + "attention.self." + qkv, H, H)
        lin(p + "attention.output.dense", H, H)
        ln(p + "attention.output.LayerNorm")
        lin(p + "intermediate.dense", I, H)
        lin(p + "output.dense", H, I)
        ln(p + "output.LayerNorm")
    lin("uniter.pooler.dense", H, H)

    k["cls.predictions.bias"] = (V,)
    lin("cls.predictions.transform.dense", H, H)
    ln("cls.predictions.transform.LayerNorm")
    k["cls.predictions.decoder.weight"] = (V, H)

    k["feat_regress.weight"] = (H, IMG)
    k["feat_regress.bias"] = (IMG,)
    lin("feat_regress.net.0", H, H)
    ln("feat_regress.net.2")

    lin("region_classifier.net.0", H, H)
    ln("region_classifier.net.2")
    lin("region_classifier.net.3", LABELS, H)

    lin("itm_output", 2, H)
    return k


@pytest.fixture(scope="module")
def base_model():
    return UniterForPretraining(UniterConfig())


def test_official_key_layout_uniter_base(base_model):
    want = official_keys()
    assert len(want) == 230
    got = {k: tuple(v.shape) for k, v in base_model.state_dict().items()}
    assert set(got) - set(want) == set(), "keys the official checkpoint does not have"
    assert set(want) - set(got) == set(), "official keys the model lacks"
    bad = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert bad == {}


def test_with_rank_adds_exactly_rank_output(base_model):
    ranked = UniterForPretraining(UniterConfig(), with_rank=True).state_dict()
    base = base_model.state_dict()
    extra = {k: tuple(v.shape) for k, v in ranked.items() if k not in base}
    assert extra == {"rank_output.weight": (1, 768), "rank_output.bias": (1,)}
    assert set(base) <= set(ranked) and len(ranked) == 232


def test_tied_weights_share_storage(base_model):
    m = base_model
    assert m.cls.predictions.decoder.weight is m.uniter.embeddings.word_embeddings.weight
    assert m.feat_regress.weight is m.uniter.img_embeddings.img_linear.weight


# ---------------------------------------------------------------------------- config

OFFICIAL_BASE_JSON = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
                      "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
                      "intermediate_size": 3072, "max_position_embeddings": 512,
                      "num_attention_heads": 12, "num_hidden_layers": 12, "type_vocab_size": 2,
                      "vocab_size": 28996}


def test_config_from_official_json(tmp_path):
    path = tmp_path / "uniter-base.json"
    path.write_text(json.dumps(OFFICIAL_BASE_JSON))
    cfg = UniterConfig.from_json(str(path))
    for key, val in OFFICIAL_BASE_JSON.items():
        assert getattr(cfg, key) == val, key
    assert cfg.img_dim == 2048 and cfg.img_label_dim == 1601
    assert cfg.extra == {}
    # Round trip keeps the official fields.
    d = cfg.to_dict()
    assert {k: d[k] for k in OFFICIAL_BASE_JSON} == OFFICIAL_BASE_JSON


def test_config_rejects_unsupported_activation(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(dict(OFFICIAL_BASE_JSON, hidden_act="relu")))
    with pytest.raises(ValueError, match="hidden_act"):
        UniterConfig.from_json(str(path))


def test_config_rejects_indivisible_heads():
    with pytest.raises(ValueError):
        UniterConfig.from_dict(dict(OFFICIAL_BASE_JSON, num_attention_heads=7))


# ---------------------------------------------------------------------------- checkpoint loading

def _fixed_input(cfg):
    pairs = make_pairs(cfg, [7, 4], [3, 5], seed=11)
    return pad_batch(pairs, cfg)


def _outputs(model, batch):
    with torch.no_grad():
        hidden, pooled, _ = model.uniter(*batch)
        return hidden, pooled, model.itm_output(pooled)


def _is_layer_norm_param(model, key):
    mod_name = key.rsplit(".", 1)[0]
    return isinstance(dict(model.named_modules())[mod_name], torch.nn.LayerNorm)


def test_load_legacy_gamma_beta_module_prefix_and_tied(tmp_path):
    cfg = small_config()
    src = make_model(cfg, seed=1)
    sd = src.state_dict()
    legacy, expect_renamed = {}, {}
    ln_params = 0
    for i, (k, v) in enumerate(sd.items()):
        if k in ("cls.predictions.decoder.weight", "feat_regress.weight"):
            continue
        nk = k
        if _is_layer_norm_param(src, k):
            ln_params += 1
            nk = nk[: -len("weight")] + "gamma" if k.endswith(".weight") else nk[: -len("bias")] + "beta"
        if i % 3 == 0:
            nk = "module." + nk
        legacy[nk] = v.clone()
        if nk != k:
            expect_renamed[nk] = k
    # 2 per LayerNorm: embeddings 1, img 3, 2 per layer, MLM transform 1, feat_regress 1, MRC 1.
    assert ln_params == 2 * (1 + 3 + 2 * cfg.num_hidden_layers + 3)
    assert len(legacy) == 230 - 2 - 12 * 16 + cfg.num_hidden_layers * 16
    path = tmp_path / "legacy.pt"
    torch.save(legacy, path)

    dst = UniterForPretraining(cfg).eval()
    report = load_checkpoint(dst, str(path))
    assert isinstance(report, LoadReport)
    assert report.ok(), str(report)
    assert report.renamed == expect_renamed
    assert sorted(report.tied_filled) == ["cls.predictions.decoder.weight", "feat_regress.weight"]

    # Tied weights are still the same tensors after loading.
    assert dst.cls.predictions.decoder.weight is dst.uniter.embeddings.word_embeddings.weight
    assert dst.feat_regress.weight is dst.uniter.img_embeddings.img_linear.weight
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k]), k

    batch = _fixed_input(cfg)
    for a, b in zip(_outputs(src, batch), _outputs(dst, batch)):
        assert torch.equal(a, b)


def test_load_wrapped_in_model_key_and_rank_from_itm():
    cfg = small_config()
    src = make_model(cfg, seed=2)
    dst = UniterForPretraining(cfg, with_rank=True)
    report = load_checkpoint(dst, {"model": src.state_dict()})
    assert report.ok(), str(report)
    assert set(report.tied_filled) == {"rank_output.weight", "rank_output.bias"}
    assert torch.equal(dst.rank_output.weight, src.itm_output.weight[1:2])
    assert torch.equal(dst.rank_output.bias, src.itm_output.bias[1:2])


def test_missing_and_unexpected_keys_are_reported():
    cfg = small_config()
    sd = make_model(cfg, seed=3).state_dict()
    del sd["uniter.pooler.dense.bias"]
    del sd["itm_output.weight"]
    sd["vqa_output.weight"] = torch.zeros(3, cfg.hidden_size)
    sd["uniter.encoder.layer.7.output.dense.bias"] = torch.zeros(cfg.hidden_size)

    report = load_checkpoint(UniterForPretraining(cfg), dict(sd))
    assert not report.ok()
    assert report.missing == ["itm_output.weight", "uniter.pooler.dense.bias"]
    assert report.unexpected == ["uniter.encoder.layer.7.output.dense.bias", "vqa_output.weight"]
    text = str(report)
    for k in report.missing + report.unexpected:
        assert k in text

    with pytest.raises(ValueError) as ei:
        load_checkpoint(UniterForPretraining(cfg), dict(sd), strict=True)
    msg = str(ei.value)
    for k in ("itm_output.weight", "uniter.pooler.dense.bias", "vqa_output.weight",
              "uniter.encoder.layer.7.output.dense.bias"):
        assert k in msg


def test_shape_mismatch_raises_naming_the_key():
    cfg = small_config()
    sd = make_model(cfg, seed=4).state_dict()
    sd["region_classifier.net.3.weight"] = torch.zeros(cfg.img_label_dim + 1, cfg.hidden_size)
    with pytest.raises(ValueError, match=r"region_classifier\.net\.3\.weight"):
        load_checkpoint(UniterForPretraining(cfg), sd)


def test_committed_fixture_checkpoint_loads():
    ck = os.path.join(REPO, "testdata", "checkpoints")
    cfg = UniterConfig.from_json(os.path.join(ck, "tiny-random.json"))
    model = UniterForPretraining(cfg).eval()
    report = load_checkpoint(model, os.path.join(ck, "tiny-random.pt"), strict=True)
    assert report.ok(), str(report)
    assert report.renamed == {}
    with open(os.path.join(ck, "tiny-random-vocab.txt"), encoding="utf-8") as f:
        assert sum(1 for _ in f) == cfg.vocab_size

    # The committed goldens were computed from this checkpoint.
    golden_path = os.path.join(REPO, "testdata", "golden", "tiny-random.json")
    with open(golden_path) as f:
        golden = json.load(f)
    pairs = golden["pairs"]
    for gb in golden["batches"]:
        members = [pairs[i] for i in gb["pairs"]]
        ps = [{"ids": torch.tensor(p["ids"]), "feat": torch.tensor(p["features"]),
               "loc": torch.tensor(p["locations"], dtype=torch.float32)} for p in members]
        batch = pad_batch(ps, cfg)
        _, pooled, itm = _outputs(model, batch)
        assert torch.allclose(itm, torch.tensor(gb["itm_logits"]), atol=1e-5)
        assert torch.allclose(pooled, torch.tensor(gb["pooled"]), atol=1e-5)


# ---------------------------------------------------------------------------- padded layout

def _maxdiff(a, b):
    return (a - b).abs().max().item()


def test_padded_batch_equals_single_and_packed():
    cfg = small_config(hidden_size=48, num_attention_heads=6, num_hidden_layers=3,
                       intermediate_size=80)
    model = make_model(cfg, seed=5)
    sd = model.state_dict()
    pairs = make_pairs(cfg, text_lens=[6, 11, 3, 8], region_counts=[4, 2, 7, 1], seed=6)
    batch = pad_batch(pairs, cfg)
    T = batch[0].shape[1]
    with torch.no_grad():
        hidden, pooled, _ = model.uniter(*batch)
        itm = model.itm_output(pooled)
        packed = ref_packed(sd, cfg, pairs)
    for b, p in enumerate(pairs):
        t, n = len(p["ids"]), len(p["feat"])
        single = pad_batch([p], cfg)
        with torch.no_grad():
            h1, p1, _ = model.uniter(*single)
            i1 = model.itm_output(p1)
        # Alone vs inside the padded batch.
        diffs = [_maxdiff(i1[0], itm[b]), _maxdiff(p1[0], pooled[b]),
                 _maxdiff(h1[0, :t], hidden[b, :t]), _maxdiff(h1[0, t:t + n], hidden[b, T:T + n])]
        # Padded vs the official packed layout.
        diffs += [_maxdiff(packed[b]["itm"], itm[b]), _maxdiff(packed[b]["pooled"], pooled[b]),
                  _maxdiff(packed[b]["text"], hidden[b, :t]),
                  _maxdiff(packed[b]["regions"], hidden[b, T:T + n])]
        assert max(diffs) <= TOL, (b, diffs)
        record("padded batch vs pair alone", "itm/pooled/hidden", max(diffs[:4]))
        record("padded batch vs packed (gather_index)", "itm/pooled/hidden", max(diffs[4:]))
    # The comparison must not be vacuous: different pairs give different scores.
    assert _maxdiff(itm[0], itm[1]) > 1e-3


def test_padding_content_is_ignored():
    cfg = small_config()
    model = make_model(cfg, seed=7)
    pairs = make_pairs(cfg, [5, 9], [3, 6], seed=8)
    a = pad_batch(pairs, cfg)
    b = [t.clone() for t in a]
    b[0][0, 5:] = 7           # junk token ids in padding
    b[2][0, 3:] *= -3         # junk features in padding
    b[3][0, 3:] = 0.5
    with torch.no_grad():
        ha, pa, _ = model.uniter(*a)
        hb, pb, _ = model.uniter(*b)
    assert _maxdiff(pa, pb) <= TOL
    assert _maxdiff(ha[0, :5], hb[0, :5]) <= TOL


# ---------------------------------------------------------------------------- image embeddings

def test_image_embedding_structure():
    cfg = small_config()
    model = make_model(cfg, seed=9)
    ie = model.uniter.img_embeddings
    tt = model.uniter.embeddings.token_type_embeddings.weight
    g = torch.Generator().manual_seed(10)
    feat = torch.randn(2, 5, cfg.img_dim, generator=g)
    loc = torch.rand(2, 5, 7, generator=g)
    H = cfg.hidden_size

    def ln(x, mod):
        return F.layer_norm(x, (H,), mod.weight, mod.bias, 1e-12)
    with torch.no_grad():
        want = ln(ln(F.linear(feat, ie.img_linear.weight, ie.img_linear.bias), ie.img_layer_norm)
                  + ln(F.linear(loc, ie.pos_linear.weight, ie.pos_linear.bias), ie.pos_layer_norm)
                  + tt[1], ie.LayerNorm)
        ids = torch.zeros(2, 1, dtype=torch.long)
        got = model.uniter.embed(ids, feat, loc)[:, 1:]
    assert _maxdiff(got, want) <= 1e-6
    assert all(m.eps == 1e-12 for m in (ie.img_layer_norm, ie.pos_layer_norm, ie.LayerNorm))


def test_regions_have_no_position_embedding():
    cfg = small_config()
    model = make_model(cfg, seed=12)
    (p,) = make_pairs(cfg, [6], [5], seed=13)
    perm = torch.tensor([3, 0, 4, 2, 1])
    q = dict(p, feat=p["feat"][perm], loc=p["loc"][perm])
    with torch.no_grad():
        ha, pa, _ = model.uniter(*pad_batch([p], cfg))
        hb, pb, _ = model.uniter(*pad_batch([q], cfg))
        ea = model.uniter.embed(p["ids"][None], p["feat"][None], p["loc"][None])
        eb = model.uniter.embed(q["ids"][None], q["feat"][None], q["loc"][None])
    assert _maxdiff(eb[0, 6:], ea[0, 6:][perm]) <= 1e-6
    assert _maxdiff(hb[0, 6:], ha[0, 6:][perm]) <= TOL
    assert _maxdiff(hb[0, :6], ha[0, :6]) <= TOL
    assert _maxdiff(pb, pa) <= TOL


def test_mrm_mask_embedding():
    cfg = small_config()
    model = make_model(cfg, seed=14)
    ie = model.uniter.img_embeddings
    with torch.no_grad():
        ie.mask_embedding.weight[0].fill_(3.0)  # row 0 non-zero: must still add nothing
    g = torch.Generator().manual_seed(15)
    feat = torch.randn(2, 4, cfg.img_dim, generator=g)
    loc = torch.rand(2, 4, 7, generator=g)
    tt = model.uniter.embeddings.token_type_embeddings.weight[1].expand(2, 4, -1)
    masks = torch.tensor([[0, 1, 0, 1], [1, 0, 0, 0]])
    with torch.no_grad():
        plain = ie(feat, loc, tt)
        none_masked = ie(feat, loc, tt, torch.zeros(2, 4, dtype=torch.long))
        masked = ie(feat, loc, tt, masks)
        want = ie(feat + masks.unsqueeze(-1).float() * ie.mask_embedding.weight[1], loc, tt)
        # Booleans too, as a data loader may pass them.
        masked_bool = ie(feat, loc, tt, masks.bool())
    assert torch.equal(none_masked, plain)
    assert _maxdiff(masked, want) <= 1e-6
    assert torch.equal(masked_bool, masked)
    keep = masks == 0
    assert torch.equal(masked[keep], plain[keep])
    assert _maxdiff(masked[~keep], plain[~keep]) > 1e-3
