"""Writes region features in UNITER's formats, for the import-features end-to-end test.

    /usr/bin/python3 tests/testdata/make_img_db.py OUT [--dim 64] [--classes 11]

Writes, the way UNITER's scripts/convert_imgdir.py does (np.savez_compressed(writer, **dump,
allow_pickle=True) of float16 arrays; LMDB values keyed by the .npz file name, "__keys__"
holding the JSON list of names, as in the `all_compressed` databases data/data.py reads):

  OUT/npz/NAME.npz                       one record per image: features, norm_bb, conf, soft_labels
  OUT/img_db/all_compressed/data.mdb     the same records in an LMDB (python3-lmdb)
  OUT/npz_bad/                           the same, plus bad_dim.npz whose features are 32-d
  OUT/expected.json                      per name, what UNITER's loader keeps at conf_th 0.2,
                                         min_bb 10, max_bb 100 (compute_num_bb, then
                                         _get_img_feat appends w·h to norm_bb)
"""
import argparse
import io
import json
import os

import lmdb
import numpy as np


def record(rng, n, above, dim, classes):
    conf = np.sort(np.concatenate([rng.uniform(0.21, 0.99, above), rng.uniform(0.0, 0.19, n - above)]))[::-1]
    x1 = rng.uniform(0, 0.6, n)
    y1 = rng.uniform(0, 0.6, n)
    x2 = np.minimum(1.0, x1 + rng.uniform(0.05, 0.4, n))
    y2 = np.minimum(1.0, y1 + rng.uniform(0.05, 0.4, n))
    norm_bb = np.stack([x1, y1, x2, y2, x2 - x1, y2 - y1], axis=1)
    dump = {"features": rng.normal(size=(n, dim)), "norm_bb": norm_bb, "conf": conf,
            "soft_labels": rng.dirichlet(np.ones(classes), n)}
    # convert_imgdir.load_npz: float32 arrays become float16.
    return {k: v.astype(np.float32).astype(np.float16) for k, v in dump.items()}


def dumps_npz(dump):
    with io.BytesIO() as writer:
        np.savez_compressed(writer, **dump, allow_pickle=True)
        return writer.getvalue()


def expected(raw, conf_th=0.2, min_bb=10, max_bb=100):
    img = np.load(io.BytesIO(raw), allow_pickle=True)
    nbb = int(min(max_bb, max(min_bb, (img["conf"] > conf_th).sum())))
    bb = img["norm_bb"][:nbb].astype(np.float32)
    return {"nbb": nbb, "regions": int(len(img["conf"])),
            "features": img["features"][:nbb].astype(np.float64).tolist(),
            "locations": np.concatenate([bb, bb[:, 4:5] * bb[:, 5:]], axis=1).astype(np.float64).tolist(),
            "conf": img["conf"][:nbb].astype(np.float64).tolist(),
            "soft_labels": img["soft_labels"][:nbb].astype(np.float64).tolist()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--classes", type=int, default=11)
    args = ap.parse_args()
    rng = np.random.default_rng(11)
    # (regions, how many above conf_th): the selection keeps 25, 10 (min_bb), 12, 100 (max_bb), 10.
    shapes = {"flickr_0001": (40, 25), "flickr_0002": (40, 3), "flickr_0003": (12, 12),
              "flickr_0004": (120, 110), "coco_val2014_000000000042": (36, 0)}
    records = {name + ".npz": dumps_npz(record(rng, n, above, args.dim, args.classes)) for name, (n, above) in shapes.items()}
    for sub in ["npz", "npz_bad", "img_db/all_compressed"]:
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    for name, raw in records.items():
        for sub in ["npz", "npz_bad"]:
            with open(os.path.join(args.out, sub, name), "wb") as f:
                f.write(raw)
    with open(os.path.join(args.out, "npz_bad", "bad_dim.npz"), "wb") as f:
        f.write(dumps_npz(record(rng, 20, 15, 32, args.classes)))
    env = lmdb.open(os.path.join(args.out, "img_db", "all_compressed"), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for name, raw in records.items():
            txn.put(name.encode("utf-8"), raw)
        txn.put(b"__keys__", json.dumps(sorted(records)).encode("utf-8"))
    env.close()
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump({name: expected(raw) for name, raw in records.items()}, f)


if __name__ == "__main__":
    main()
