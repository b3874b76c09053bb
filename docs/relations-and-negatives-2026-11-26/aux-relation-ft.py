"""Does ITM fine-tuning use relations if relation MLM keeps training beside it? (a study, not the recipe)

    /usr/bin/python3 docs/relations-and-negatives-2026-11-26/aux-relation-ft.py INIT_CKPT OUT_DIR TEXT_NEG [WORK]

From INIT_CKPT (e.g. the relation stage's model), 3,000 ITM steps as train-shapes.sh fine-tunes
(batch 32, lr 3e-4, warm-up 200 then linear decay, 4 hard-negative candidates, OT weight 0.1,
TEXT_NEG share of negatives being minimal-edit text negatives from WORK/feat-train-x), and after
every third ITM step one MLM step with every caption's relation word masked (the relation
stage's batches), so that the encoder keeps computing relations while ITM learns. Writes
OUT_DIR/final.pt and config.json, for the bundle and the probes of evalrun.sh.
"""
import json, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import torch
from uniter.data import PretrainDataset, collate
from uniter.model import load_checkpoint
from uniter.pretrain import (CaptionBatcher, _derive, _derive_torch, build_model, build_optimizer,
                             forward_task, grounded_groups, hard_itm_samples, lr_factor,
                             mask_grounded, prepare_task, resolve_config, save_checkpoint)

torch.set_num_threads(1); torch.manual_seed(42)
init, out, text_neg = sys.argv[1], sys.argv[2], float(sys.argv[3])
work = sys.argv[4] if len(sys.argv) > 4 else ".cache/shapes-train"
ds = PretrainDataset(f"{work}/feat-train-x", max_text_len=128)
vocab = ds.vocab
cfg = resolve_config(json.load(open(f"{work}/pre-wra/config.json")), ds, vocab)
model = build_model(cfg, 42); load_checkpoint(model, init); model.train()
group = grounded_groups(vocab, [["left", "right", "above", "below"]])[0]
steps, warmup = 3000, 200
opt = build_optimizer(model, 3e-4)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, steps))
itm_batches, mlm_batches = CaptionBatcher(len(ds), 32, 42), CaptionBatcher(len(ds), 32, 43)
rng, gen = _derive(42, 3), _derive_torch(42, 4)
pad = vocab.special.pad
t0, acc = time.time(), {"itm": [], "mlm": []}
for step in range(1, steps + 1):
    b = collate(hard_itm_samples(model, ds, next(itm_batches), rng, 0.5, 4, pad, text_neg), pad)
    loss, m = forward_task(model, "itm", prepare_task("itm", b, vocab, gen), 0.1)
    acc["itm"].append(m["acc"])
    if step % 3 == 0:  # the relation MLM step, added to the same update
        b = collate([ds[c] for c in next(mlm_batches)], pad)
        x = prepare_task("mlm", b, vocab, gen)
        x["input_ids"], x["txt_labels"] = mask_grounded(b["input_ids"], b["text_mask"], group, vocab, gen)
        mlm_loss, mm = forward_task(model, "mlm", x)
        loss = loss + mlm_loss
        acc["mlm"].append(mm["acc"])
    opt.zero_grad(set_to_none=True); loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 5.0)
    opt.step(); sched.step()
    if step % 100 == 0:
        print(f"step {step} itm acc {sum(acc['itm'][-100:]) / 100:.3f} relation mlm acc "
              f"{sum(acc['mlm'][-33:]) / max(1, len(acc['mlm'][-33:])):.3f} ({time.time() - t0:.0f}s)", flush=True)
os.makedirs(out, exist_ok=True)
json.dump(cfg.to_dict(), open(f"{out}/config.json", "w"), indent=2)
save_checkpoint(model, f"{out}/final.pt", {"study": "aux relation MLM in fine-tuning", "init": init,
                                           "text_negatives": text_neg, "steps": steps})
print(f"wrote {out}/final.pt", flush=True)
