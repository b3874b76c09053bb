"""RUN OUT: a bundle of RUN's head re-fit (.cache/rel/head-RUN) as the default, its provenance the
committed default's plus the plan stage (.cache/rel/ft-RUN) and the new head re-fit, recorded as
scripts/train-shapes.sh's bundle() records them (keep())."""
import json, os, shutil, subprocess, sys
run, out = sys.argv[1], sys.argv[2]
R, src = ".cache/rel", "bundles/shapes-uniter"
shutil.rmtree(out, ignore_errors=True)
subprocess.run([sys.executable, "docs/continued-finetuning-2026-11-26/mkbundle.py", f"{R}/head-{run}/final.pt", out],
               check=True, stderr=subprocess.DEVNULL)


def keep(m):
    t = m.get("train", {})
    return {"steps": m.get("step"), "seed": m.get("seed"), "mix": m.get("tasks"), "init": m.get("init"),
            "lr": t.get("lr"), "warmup": t.get("warmup"), "batch_size": t.get("batch_size"),
            "ot_weight": t.get("ot_weight"), "itm_hard_negatives": t.get("itm_hard_negatives", 0),
            "itm_near_negatives": t.get("itm_near_negatives", 0), "plan_distill": t.get("plan_distill", 0),
            "plan_absorb": t.get("plan_absorb", False), "plan_argmax": t.get("plan_argmax"),
            "plan_columns": t.get("plan_columns", False), "plan_naming_words": bool(t.get("plan_naming_ids")),
            "grounded_mlm_steps": t.get("grounded_mlm_steps", 0), "train_only": t.get("train_only") or None,
            "val_metrics": m.get("val")}


old = json.load(open(f"{src}/manifest.json"))
new = json.load(open(f"{out}/manifest.json"))
p = dict(old["provenance"])
p.pop("evaluation", None)
p["plan_stage"] = keep(json.load(open(f"{R}/ft-{run}/final.json")))
p["plan_stage"]["init"] = ".cache/shapes-train/cont-wra/final.pt"
p["plan_stage"]["started_from"] = (
    "the previous default bundle (encoder.onnx sha256 " + old["graphs"]["encoder"]["sha256"] +
    "), recovered by models/recover_checkpoint.py: its encoder and ITM head are cont-wra's; its MLM head was "
    "head-wra's re-fit, which the plan stage does not train (ITM only) and the re-fit below retrains")
p["mlm_head_refit"] = keep(json.load(open(f"{R}/head-{run}/final.json")))
p["mlm_head_refit"]["init"] = ".cache/shapes-train/plan-wra/final.pt"
for k in ("exported", "torch_version", "opset"):
    if k in new["provenance"]:
        p[k] = new["provenance"][k]
new["provenance"] = p
new["name"], new["description"] = old["name"], old["description"]
with open(f"{out}/manifest.json", "w") as f:
    json.dump(new, f, indent=2)
    f.write("\n")
print(json.dumps(p["plan_stage"])[:300])
