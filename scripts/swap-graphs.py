"""Puts the UNITER graphs of an export (python3 -m uniter.export --out EXPORT) into BUNDLE, a copy
of a bundle whose detector, labels and vocabulary stay, and updates the manifest's sha256s: how
the studies measure a checkpoint as the default model is measured.

    python3 scripts/swap-graphs.py BUNDLE EXPORT
"""
import hashlib
import json
import os
import shutil
import sys

out, exp = sys.argv[1:]
m = json.load(open(f"{out}/manifest.json"))
for g in m["graphs"].values():
    if os.path.exists(f"{exp}/{g['file']}"):
        shutil.copy(f"{exp}/{g['file']}", f"{out}/{g['file']}")
        g["sha256"] = hashlib.sha256(open(f"{out}/{g['file']}", "rb").read()).hexdigest()
json.dump(m, open(f"{out}/manifest.json", "w"), indent=2)
