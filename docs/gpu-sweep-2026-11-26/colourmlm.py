import sys, json, time
sys.path.insert(0, '/work/main/models')
import numpy as np, torch, torch.nn.functional as F
from uniter.data import PretrainDataset, Vocab, collate
from uniter.pretrain import resolve_config, build_model, build_optimizer
torch.set_num_threads(1); torch.manual_seed(0)
mode, steps = sys.argv[1], int(sys.argv[2]); LR = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-3
tr = PretrainDataset('/work/main/.cache/shapes-train/feat-train', max_text_len=128)
va = PretrainDataset('/work/main/.cache/sweep/feat-val2', max_text_len=128, vocab=tr.vocab)
words = [l.strip() for l in open('/work/main/.cache/shapes-train/vocab.txt')]
cid = torch.tensor([words.index(c) for c in ['red','green','blue','yellow','orange','purple','white','black']])
F32 = tr.regions.features.astype(np.float32); mu, sd = F32.mean(0), F32.std(0) + 1e-3
def keep_confident(d, thr=0.5):
    r = d.regions; sl = r.soft_labels.astype(np.float32); conf = sl[:, 1:].max(1)
    rows, offs = [], [0]
    for i in range(r.num_images):
        a, b = int(r.offsets[i]), int(r.offsets[i + 1])
        k = [j for j in range(a, b) if conf[j] >= thr] or [a + int(conf[a:b].argmax())]
        rows += k; offs.append(len(rows))
    rows = np.array(rows)
    r.features, r.locations, r.soft_labels, r.boxes = r.features[rows], r.locations[rows], r.soft_labels[rows], r.boxes[rows]
    r.offsets = np.array(offs, dtype=np.int64)
    print('kept', len(rows), 'regions of', len(conf), flush=True)
if mode == 'conf':
    keep_confident(tr); keep_confident(va)
if mode == 'std':
    for d in (tr, va):
        d.regions.features = ((d.regions.features.astype(np.float32) - mu) / sd).astype(np.float16)
cfg = resolve_config({"hidden_size":128,"num_hidden_layers":4,"num_attention_heads":4,"intermediate_size":512}, tr, tr.vocab)
model = build_model(cfg, 0); opt = build_optimizer(model, LR)
def batch(ds, idx, other=False):
    s = [ds[c] for c in idx]; x = collate(s, 0)
    ids = x['input_ids']; isc = torch.isin(ids, cid)
    first = isc.float().argmax(1); keep = isc.any(1)
    lab = ids[torch.arange(len(ids)), first]
    ids = ids.clone(); ids[torch.arange(len(ids)), first] = 4
    if other:
        p = torch.roll(torch.arange(len(ids)), 1)
        for k in ('img_feat','img_loc','img_mask'): x[k] = x[k][p]
    return ids, x, first, lab, keep
def loss_acc(ds, idx, other=False):
    ids, x, first, lab, keep = batch(ds, idx, other)
    h, _, _ = model.uniter(ids, x['text_mask'], x['img_feat'], x['img_loc'], x['img_mask'])
    lo = model.cls(h[torch.arange(len(ids)), first])
    return F.cross_entropy(lo[keep], lab[keep]), (lo[keep].argmax(1) == lab[keep]).float().mean().item()
rng = np.random.default_rng(0); t0 = time.time()
for step in range(1, steps + 1):
    model.train(); l, a = loss_acc(tr, rng.integers(len(tr), size=64))
    opt.zero_grad(); l.backward(); opt.step()
    if step % 500 == 0:
        model.eval()
        with torch.no_grad():
            idx = np.arange(0, 2000, 2)
            _, a_img = loss_acc(va, idx); _, a_oth = loss_acc(va, idx, True)
        print(f'{mode} step {step} train_loss {l.item():.3f} val acc image {a_img:.3f} other-image {a_oth:.3f} ({time.time()-t0:.0f}s)', flush=True)
