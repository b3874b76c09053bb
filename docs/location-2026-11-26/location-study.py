"""Can the small UNITER learn to read region locations at all? MLM on size or relation words.

    /usr/bin/python3 docs/location-2026-11-26/location-study.py MODE STEPS [INIT_CKPT] [WORK]

A hidden-128 x 4 model (fresh, seed 0, or INIT_CKPT's weights; "-" for none) trains on MLM alone,
64 captions per step, AdamW lr 1e-3 constant, masking in every caption one word of MODE's group:

  size       small / large (needs the object's box size: w/W, h/H, area in the 7-d location)
  relation   left / right / above / below (needs two objects' positions)
  colour     the colour words (the control: read from the region features)
  count      two / three / four (needs the number of regions of a kind)

MODE may end in a variant of the location input, to test why it is not read (not UNITER):
  +noln      no LayerNorm after pos_linear (the 7-d location enters linearly)
  +x10       the 7-d location multiplied by 10 before pos_linear (same information, larger scale)
  +uniform   (size) train only on captions of images whose objects all have the same size, so
             that the sizes of all regions, averaged, already tell the answer (a first step
             that needs no binding; probes still use every validation caption, and also report
             the uniform ones); +uniformN: only for the first N steps, then every caption

With SAVE=PATH in the environment the trained model is written there at the end (official
layout, as models/pretrain.py writes it; its config is the hidden-128 x 4 one of
.cache/shapes-train/pre-wra/config.json), so that ITM fine-tuning can start from it.

Every 250 steps, the first word of the group in 1,000 validation captions is masked and predicted
with the image as is, with the locations permuted among each image's regions (features keep a
wrong box) and with the region features zeroed (locations kept). Reading locations shows as
"true" well above "permuted".
"""
import json, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import numpy as np, torch, torch.nn.functional as F
from uniter.data import PretrainDataset, collate
from uniter.model import load_checkpoint
from uniter.pretrain import build_model, build_optimizer, resolve_config

torch.set_num_threads(1); torch.manual_seed(0)
mode, steps = sys.argv[1], int(sys.argv[2])
mode, _, variant = mode.partition("+")
init = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
work = sys.argv[4] if len(sys.argv) > 4 else ".cache/shapes-train"
tr = PretrainDataset(f"{work}/feat-train", max_text_len=128)
va = PretrainDataset(f"{work}/feat-val", max_text_len=128, vocab=tr.vocab)
words = tr.vocab.tokens
group = torch.tensor([words.index(w) for w in {
    "size": "small large", "relation": "left right above below",
    "colour": "red green blue yellow orange purple white black",
    "count": "two three four"}[mode].split()])
cfg = resolve_config({"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
                      "intermediate_size": 512}, tr, tr.vocab)
model = build_model(cfg, 0)
if init:
    load_checkpoint(model, init)
emb = model.uniter.img_embeddings
if variant == "noln":
    emb.pos_layer_norm = torch.nn.Identity()
elif variant == "x10":
    lin = emb.pos_linear
    emb.pos_linear = torch.nn.Sequential()
    emb.pos_linear.forward = lambda loc: lin(10 * loc)
    emb.pos_linear.lin = lin
elif variant and not variant.startswith(("uniform", "twoobj")):
    raise SystemExit(f"unknown variant {variant}")
uniform_steps = (int(variant[7:]) if variant[7:] else steps) if variant.startswith("uniform") else 0
if variant.startswith("twoobj"):
    uniform_steps = int(variant[6:]) if variant[6:] else steps
    sizes = lambda split: [len(json.loads(l)["objects"]) == 2 for l in open(f"{work}/{split}/annotations.jsonl")]
else:
    sizes = lambda split: [len({o["size"] for o in json.loads(l)["objects"]}) == 1 for l in open(f"{work}/{split}/annotations.jsonl")]
uniform_tr, uniform_va = np.array(sizes("train")), np.array(sizes("val"))
subset = "two-object" if variant.startswith("twoobj") else "one-size"
all_caps = np.arange(len(tr))
one_size_caps = all_caps[uniform_tr[tr.image_of]]
if uniform_steps:
    print(f"{len(one_size_caps)} of {len(tr)} training captions have {subset} images; "
          f"only they for the first {uniform_steps} steps", flush=True)
opt = build_optimizer(model, 1e-3)
gen = torch.Generator().manual_seed(0)


def probe(idx, how):
    x = collate([va[int(c)] for c in idx], 0)
    ids = x["input_ids"]; hit = torch.isin(ids, group)
    first, keep = hit.float().argmax(1), hit.any(1)
    rows = torch.arange(len(ids))
    lab = ids[rows, first]; ids = ids.clone(); ids[rows, first] = tr.vocab.special.mask
    feat, loc = x["img_feat"], x["img_loc"].clone()
    if how == "permuted":
        g = torch.Generator().manual_seed(1)
        for i in range(len(loc)):
            n = int(x["img_mask"][i].sum())
            loc[i, :n] = loc[i, torch.randperm(n, generator=g)]
    elif how == "zeroed":
        feat = torch.zeros_like(feat)
    with torch.no_grad():
        h, _, _ = model.uniter(ids, x["text_mask"], feat, loc, x["img_mask"])
        pred = model.cls(h[rows, first]).argmax(1)
    return (pred[keep] == lab[keep]).float().mean().item()


rng = np.random.default_rng(0); t0 = time.time()
idx = np.arange(0, 5000, 5)
uidx = np.flatnonzero(uniform_va[va.image_of])[:1000]
print(f"{mode}{'+' + variant if variant else ''} from {init or 'scratch'}: step 0 true {probe(idx, 'true'):.3f} permuted {probe(idx, 'permuted'):.3f} "
      f"features zeroed {probe(idx, 'zeroed'):.3f}", flush=True)
for step in range(1, steps + 1):
    model.train()
    caps = one_size_caps if step <= uniform_steps else all_caps
    b = collate([tr[int(c)] for c in caps[rng.integers(len(caps), size=64)]], 0)
    ids = b["input_ids"]; can = b["text_mask"].bool() & torch.isin(ids, group)
    rows = can.any(1).nonzero().squeeze(1)
    pick = torch.multinomial(can[rows].float(), 1, generator=gen).squeeze(1)
    lab = ids[rows, pick]; ids = ids.clone(); ids[rows, pick] = tr.vocab.special.mask
    h, _, _ = model.uniter(ids, b["text_mask"], b["img_feat"], b["img_loc"], b["img_mask"])
    loss = F.cross_entropy(model.cls(h[rows, pick]), lab)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 250 == 0:
        model.eval()
        print(f"{mode}{'+' + variant if variant else ''} step {step} loss {loss.item():.3f} true {probe(idx, 'true'):.3f} "
              f"permuted {probe(idx, 'permuted'):.3f} features zeroed {probe(idx, 'zeroed'):.3f} "
              f"| {subset} images: true {probe(uidx, 'true'):.3f} permuted {probe(uidx, 'permuted'):.3f} "
              f"({time.time() - t0:.0f}s)", flush=True)
if os.environ.get("SAVE"):
    from uniter.pretrain import save_checkpoint
    save_checkpoint(model, os.environ["SAVE"], {"study": f"{mode}{'+' + variant if variant else ''}", "steps": steps, "init": init})
    print(f"wrote {os.environ['SAVE']}", flush=True)
