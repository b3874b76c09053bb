"""Writes the featimport test fixtures with numpy (Debian: python3-numpy):

  dtypes.npz      arrays of every dtype and layout ParseNPY reads, np.savez (stored)
  dtypes.json     their shapes and values (C order, as float64)
  uniter.npz      one region record the way UNITER's scripts/convert_imgdir.py writes an
                  img_db value: float32 arrays cast to float16, np.savez_compressed(writer,
                  **dump, allow_pickle=True) (which stores a stray "allow_pickle" array)
  uniter.json     the regions UNITER's loader keeps of it at conf_th 0.2, min_bb 3, max_bb 8
                  (data/data.py: compute_num_bb, then _get_img_feat appends w·h to norm_bb)

    /usr/bin/python3 gallery/featimport/testdata/make_fixtures.py
"""
import io
import json
import os

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)

arrays = {
    "f2": rng.normal(size=(3, 4)).astype("<f2"),
    "f4": rng.normal(size=(2, 5)).astype("<f4"),
    "f8": rng.normal(size=(4,)).astype("<f8"),
    "f4_big": rng.normal(size=(2, 3)).astype(">f4"),
    "i8": np.arange(-3, 3, dtype="<i8").reshape(2, 3),
    "u1": np.arange(250, 256, dtype="u1"),
    "b1": np.array([True, False, True]),
    "fortran": np.asfortranarray(rng.normal(size=(3, 4)).astype("<f4")),
    "rank3": rng.normal(size=(2, 3, 2)).astype("<f4"),
    "scalar": np.array(640.0, dtype="<f4"),
}
np.savez(os.path.join(here, "dtypes.npz"), **arrays)
with open(os.path.join(here, "dtypes.json"), "w") as f:
    json.dump({k: {"shape": list(v.shape), "values": np.ravel(v, order="C").astype(np.float64).tolist()} for k, v in arrays.items()}, f)

# One record: 12 regions by confidence, 5 above 0.2.
n, dim, classes = 12, 8, 5
conf = np.sort(np.concatenate([rng.uniform(0.25, 0.99, 5), rng.uniform(0.0, 0.2, 7)]))[::-1].astype(np.float32)
x1 = rng.uniform(0, 0.5, n); y1 = rng.uniform(0, 0.5, n)
x2 = x1 + rng.uniform(0.05, 0.5, n); y2 = y1 + rng.uniform(0.05, 0.5, n)
norm_bb = np.stack([x1, y1, x2, y2, x2 - x1, y2 - y1], axis=1).astype(np.float32)
soft = rng.dirichlet(np.ones(classes), n).astype(np.float32)
feat = rng.normal(size=(n, dim)).astype(np.float32)
dump = {}
for key, arr in {"features": feat, "norm_bb": norm_bb, "conf": conf, "soft_labels": soft}.items():
    dump[key] = arr.astype(np.float16) if arr.dtype == np.float32 else arr
with io.BytesIO() as w:
    np.savez_compressed(w, **dump, allow_pickle=True)
    raw = w.getvalue()
with open(os.path.join(here, "uniter.npz"), "wb") as f:
    f.write(raw)

conf_th, min_bb, max_bb = 0.2, 3, 8
loaded = np.load(io.BytesIO(raw), allow_pickle=True)
nbb = int(min(max_bb, max(min_bb, (loaded["conf"] > conf_th).sum())))
bb = loaded["norm_bb"][:nbb].astype(np.float32)
loc = np.concatenate([bb, bb[:, 4:5] * bb[:, 5:]], axis=1)
with open(os.path.join(here, "uniter.json"), "w") as f:
    json.dump({"nbb": nbb, "selection": [conf_th, min_bb, max_bb],
               "features": loaded["features"][:nbb].astype(np.float64).tolist(),
               "locations": loc.astype(np.float64).tolist(),
               "conf": loaded["conf"][:nbb].astype(np.float64).tolist(),
               "soft_labels": loaded["soft_labels"][:nbb].astype(np.float64).tolist()}, f)
print("nbb", nbb, "members", sorted(loaded.files))
