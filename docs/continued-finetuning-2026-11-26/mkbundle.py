"""CKPT OUT: a bundle of CKPT's encoder and heads with the committed bundle's detector (detector.pt
is not on this machine; its ONNX graph and manifest section are copied as they are)."""
import json, os, shutil, sys
import torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../models"))
from uniter.model import UniterConfig, UniterForPretraining, load_checkpoint
from uniter.export import write_bundle
ck, out = sys.argv[1], sys.argv[2]
src = "bundles/shapes-uniter"
cfg = UniterConfig.from_json(os.path.join(os.path.dirname(ck), "config.json"))
model = UniterForPretraining(cfg)
print(load_checkpoint(model, ck, strict=True), file=sys.stderr)
labels = open(f"{src}/region_labels.txt").read().split()
write_bundle(model.eval(), out, name="shapes-uniter", vocab_path=f"{src}/vocab.txt", region_labels=labels,
             lowercase=True, max_text_length=40, random_weights=False, provenance={"checkpoint": os.path.abspath(ck)})
old = json.load(open(f"{src}/manifest.json"))
m = json.load(open(f"{out}/manifest.json"))
m["graphs"]["detector"] = old["graphs"]["detector"]
m["detector"] = old["detector"]
for f in ("detector.onnx", "attribute_labels.txt"):
    shutil.copyfile(f"{src}/{f}", f"{out}/{f}")
json.dump(m, open(f"{out}/manifest.json", "w"), indent=2)
