"""Builds the default bundle with the plan stage of run RUN (.cache/rel/ft-RUN, its head re-fit
.cache/rel/head-RUN; the default is RA60, docs/plan-rows-2026-11-27) into OUT (default .cache/rel/adopt):
the provenance of the default before the plan stage (7f9df75) plus the stages train-shapes.sh now adds after the continued
fine-tuning (its MLM head re-fit, the plan stage, the MLM head re-fit of that), and the
evaluation reports of REPORT_1K and REPORT_100 (as train-shapes.sh fills them).

    /usr/bin/python3 docs/plan-targets-2026-11-27/adopt.py RUN REPORT_1K REPORT_100 [OUT]

The plan stage ran from the weights of the default before the plan stage (commit 7f9df75),
recovered from its bundle by models/recover_checkpoint.py (.cache/rel/head-C21): its encoder and ITM head are cont-wra's bit
for bit and its MLM head is that model's re-fit, i.e. train-shapes.sh's head-cont-wra."""
import json, os, shutil, subprocess, sys

sys.path.insert(0, "models")
from uniter.provenance import evaluation_summary, stage_record as keep  # noqa: E402  (as train-shapes.sh)

here = os.path.dirname(os.path.abspath(__file__))
run, r1k, r100 = sys.argv[1], sys.argv[2], sys.argv[3]
out = sys.argv[4] if len(sys.argv) > 4 else ".cache/rel/adopt"
W = ".cache/shapes-train"  # train-shapes.sh's WORK, for the stage names recorded below
shutil.rmtree(out, ignore_errors=True)
subprocess.run([sys.executable, f"{here}/../continued-finetuning-2026-11-26/mkbundle.py",
                f".cache/rel/head-{run}/final.pt", out], check=True, stderr=subprocess.DEVNULL)


# The previous default's manifest, as committed before this adoption (7f9df75: its graphs
# re-exported without shape nodes).
old = json.loads(subprocess.run(["git", "show", "7f9df75:bundles/shapes-uniter/manifest.json"],
                                check=True, capture_output=True, text=True).stdout)
new = json.load(open(f"{out}/manifest.json"))
p = dict(old["provenance"])
for k in ("evaluation", "encoder_graphs_reexported"):
    p.pop(k, None)
p["mlm_head_refit_before_plan"] = p.pop("mlm_head_refit")
p["plan_stage"] = keep(json.load(open(f".cache/rel/ft-{run}/final.json")))
p["plan_stage"]["init"] = f"{W}/head-cont-wra/final.pt"
p["plan_stage"]["started_from"] = (
    "the default bundle before the plan stage (commit 7f9df75, encoder.onnx sha256 " + old["graphs"]["encoder"]["sha256"] +
    "), recovered by models/recover_checkpoint.py: cont-wra's encoder and ITM head bit for bit, "
    "with the MLM head of its re-fit (head-cont-wra)")
p["mlm_head_refit"] = keep(json.load(open(f".cache/rel/head-{run}/final.json")))
p["mlm_head_refit"]["init"] = f"{W}/plan-wra/final.pt"
p["checkpoint"] = os.path.abspath(f"{W}/head-wra/final.pt")
for k in ("exported", "torch_version", "opset"):
    if k in new["provenance"]:
        p[k] = new["provenance"][k]
new["provenance"] = p
new["name"], new["description"] = old["name"], old["description"]
shutil.copyfile(r1k, f"{out}/eval-wra-test-1k.json")
shutil.copyfile(r100, f"{out}/eval-wra-test-100.json")
reports = {s: json.load(open(f"{out}/eval-wra-{s}.json")) for s in ("test-1k", "test-100")}
p["evaluation"] = evaluation_summary(reports)
with open(f"{out}/manifest.json", "w") as f:
    json.dump(new, f, indent=2)
    f.write("\n")
print(json.dumps(p["plan_stage"])[:400])
