"""Pre-training data: the on-disk split format, its loader and the padded-batch collate.

On-disk format of one split (a directory ``DIR``)
==================================================

Region features come from the Go detector pipeline (the same regions the service computes for an
image); captions are tokenised by the Go tokenizer. Every file except ``truth.npz`` and
``vocab.txt`` is required.

``DIR/regions.npz`` — a numpy ``.npz`` archive (``numpy.savez`` or ``numpy.savez_compressed``;
Go: ``github.com/sbinet/npyio/npz``) holding, for all images of the split, their regions
concatenated image after image:

=============== ========= ==================== ==================================================
key             dtype     shape                meaning
=============== ========= ==================== ==================================================
``features``    float16   ``[R_total, D]``     pooled region features (D = the model's img_dim)
``locations``   float32   ``[R_total, 7]``     UNITER 7-d locations
                                               ``[x1/W, y1/H, x2/W, y2/H, w/W, h/H, w*h/(W*H)]``
``soft_labels`` float16   ``[R_total, C]``     the detector's class distribution per region,
                                               background at index 0 (C = the model's
                                               img_label_dim); rows sum to 1
``boxes``       float32   ``[R_total, 4]``     ``[x1, y1, x2, y2]`` in original pixels (not used
                                               by training; kept for inspection)
``offsets``     int64     ``[N_images + 1]``   image ``i``'s regions are rows
                                               ``offsets[i]:offsets[i+1]``; ``offsets[0] = 0``,
                                               non-decreasing, ``offsets[-1] = R_total``
=============== ========= ==================== ==================================================

Every image must have at least one region. float32 features/labels and int32 offsets are also
accepted (they are converted); fp16 is what the service stores.

``DIR/captions.jsonl`` — one JSON object per line, one line per caption::

    {"image": 17, "text": "a red square left of a blue circle",
     "input_ids": [2, 7, 41, 60, 20, 9, 7, 43, 52, 3], "lf": {...}, "caption_id": "img17-c0"}

- ``image`` (int, required): index of the caption's image in ``offsets`` (0-based);
- ``input_ids`` (list of int, required): WordPiece ids from the Go tokenizer *including* the
  leading ``[CLS]`` and the trailing ``[SEP]``, no padding;
- ``text`` (string), ``caption_id`` (string), ``lf`` (any JSON: an opaque logical form) are
  optional and carried through untouched.

Line ``c`` (0-based, blank lines not counted) is caption ``c``.

``DIR/false_captions.jsonl`` (optional) — captions that are FALSE on their image, one per line:
``image`` and ``input_ids`` as above, ``source`` (int: the line of ``captions.jsonl`` this caption
is a minimal edit of — a colour, shape, size, count or relation changed — or -1), and optionally
``edit``, ``text``, ``caption_id``, ``lf``. They give text-side image-text matching negatives
(:meth:`PretrainDataset.text_negative`).

``DIR/truth.npz`` (optional) — one bool array (key ``truth``; a single array under any key is
accepted) of shape ``[N_captions, N_images]``: ``truth[c, i]`` is True when caption ``c`` is true
of image ``i``. ``truth[c, image(c)]`` must be True. When present, image-text matching negatives
are drawn only from images on which the caption is FALSE (true negatives); when absent, any
image other than the caption's own is a negative. An optional second bool array ``near`` of the
same shape marks near misses: ``near[c, i]`` is True when caption ``c`` is false on image ``i``
although ``i`` differs from it by about one minimal edit (``shapes.NearMiss``: the caption's
objects are there in another number or arrangement, or it holds with one attribute dropped);
never True where ``truth`` is. Fine-tuning can draw its negatives among them
(``TrainConfig.itm_near_negatives``).

``DIR/vocab.txt`` (optional) — the WordPiece vocabulary, one token per line (line number = id),
the same file the model bundle ships. When present it fixes the vocabulary size and the ids of
``[PAD] [UNK] [CLS] [SEP] [MASK]``; otherwise the project's defaults (0, 1, 2, 3, 4) are used.

Batches
=======

:func:`collate` pads a list of samples into the model's padded layout
``[text padded to T | regions padded to N]``:

``input_ids`` long ``[B, T]`` (0 = [PAD] beyond the text), ``text_mask`` long ``[B, T]``,
``img_feat`` float32 ``[B, N, D]``, ``img_loc`` float32 ``[B, N, 7]``, ``img_mask`` long
``[B, N]``, ``img_soft_labels`` float32 ``[B, N, C]``; masks are 1 on real positions. It also
carries ``caption_index``, ``image_index`` (long ``[B]``) and, for image-text matching,
``targets`` (long ``[B]``, 1 = matching pair).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SpecialIds", "Vocab", "RegionStore", "PretrainDataset", "collate", "write_split",
           "REGION_KEYS"]

REGION_KEYS = ("features", "locations", "soft_labels", "boxes", "offsets")
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens; the defaults are the project's vocabularies' (PAD UNK CLS SEP
    MASK on lines 0-4). bert-base-cased would be 0, 100, 101, 102, 103."""

    pad: int = 0
    unk: int = 1
    cls: int = 2
    sep: int = 3
    mask: int = 4

    def as_dict(self) -> Dict[str, int]:
        return {"pad": self.pad, "unk": self.unk, "cls": self.cls, "sep": self.sep,
                "mask": self.mask}


class Vocab:
    """What training needs to know about the vocabulary: its size, the special ids and which ids a
    random MLM replacement may take (every id except bracketed tokens like ``[CLS]``/``[unused3]``
    when the tokens are known, else every id except the five specials)."""

    def __init__(self, size: int, special: SpecialIds = SpecialIds(),
                 tokens: Optional[List[str]] = None):
        self.size = int(size)
        self.special = special
        self.tokens = tokens
        excluded = set(special.as_dict().values())
        if tokens is not None:
            excluded |= {i for i, t in enumerate(tokens) if t.startswith("[") and t.endswith("]")}
        self.random_ids = torch.tensor([i for i in range(self.size) if i not in excluded],
                                       dtype=torch.long)
        if len(self.random_ids) == 0:
            raise ValueError("vocabulary has no ordinary tokens")
        for name, i in special.as_dict().items():
            if not 0 <= i < self.size:
                raise ValueError(f"special token {name} id {i} outside the vocabulary (size {size})")

    @classmethod
    def from_file(cls, path: str) -> "Vocab":
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
        while tokens and tokens[-1] == "":
            tokens.pop()
        index = {}
        for i, t in enumerate(tokens):
            index.setdefault(t, i)
        ids = {}
        for name, tok in SPECIAL_TOKENS.items():
            if tok not in index:
                raise ValueError(f"{path}: special token {tok} is not in the vocabulary")
            ids[name] = index[tok]
        return cls(len(tokens), SpecialIds(**ids), tokens)

    def __repr__(self) -> str:
        return f"Vocab(size={self.size}, special={self.special.as_dict()})"


def _npz(path: str) -> Dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class RegionStore:
    """``regions.npz`` in memory (features kept as stored, fp16, converted per image)."""

    def __init__(self, path: str):
        arrays = _npz(path)
        missing = [k for k in REGION_KEYS if k not in arrays]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing} (has {sorted(arrays)})")
        self.path = path
        self.features = arrays["features"]
        self.locations = arrays["locations"].astype(np.float32, copy=False)
        self.soft_labels = arrays["soft_labels"]
        self.boxes = arrays["boxes"].astype(np.float32, copy=False)
        self.offsets = arrays["offsets"].astype(np.int64, copy=False)
        self._check()

    def _check(self):
        p, f, o = self.path, self.features, self.offsets
        if f.ndim != 2:
            raise ValueError(f"{p}: features must be [R, D], got {f.shape}")
        R = f.shape[0]
        for name, arr, width in (("locations", self.locations, 7), ("boxes", self.boxes, 4),
                                 ("soft_labels", self.soft_labels, None)):
            if arr.ndim != 2 or arr.shape[0] != R or (width is not None and arr.shape[1] != width):
                want = f"[{R}, {width if width else 'C'}]"
                raise ValueError(f"{p}: {name} must be {want}, got {arr.shape}")
        if o.ndim != 1 or len(o) < 2 or o[0] != 0 or o[-1] != R:
            raise ValueError(f"{p}: offsets must be [N_images+1] from 0 to R_total={R}, "
                             f"got shape {o.shape}, first {o[:1]}, last {o[-1:]}")
        counts = np.diff(o)
        if (counts < 1).any():
            bad = np.flatnonzero(counts < 1)[:5].tolist()
            raise ValueError(f"{p}: every image needs at least one region (images {bad} have none "
                             "or offsets decrease)")
        for name in ("features", "soft_labels", "locations"):
            arr = getattr(self, name)
            if not np.isfinite(arr).all():
                raise ValueError(f"{p}: {name} holds NaN or Inf")

    @property
    def num_images(self) -> int:
        return len(self.offsets) - 1

    @property
    def feat_dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def label_dim(self) -> int:
        return int(self.soft_labels.shape[1])

    def num_regions(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def image(self, i: int) -> Dict[str, torch.Tensor]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return {"img_feat": torch.from_numpy(self.features[a:b].astype(np.float32)),
                "img_loc": torch.from_numpy(np.ascontiguousarray(self.locations[a:b])),
                "img_soft_labels": torch.from_numpy(self.soft_labels[a:b].astype(np.float32))}


def _caption_lines(path: str, num_images: int, vocab: Optional[Vocab]):
    """Yields ``(line number, record)`` of a captions file (captions.jsonl, false_captions.jsonl),
    each checked: ``image`` an image index, ``input_ids`` [CLS] … [SEP] within the vocabulary."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            for k in ("image", "input_ids"):
                if k not in rec:
                    raise ValueError(f"{path}:{lineno}: missing {k!r}")
            img, ids = rec["image"], rec["input_ids"]
            if not isinstance(img, int) or not 0 <= img < num_images:
                raise ValueError(f"{path}:{lineno}: image {img!r} outside 0..{num_images - 1}")
            if not isinstance(ids, list) or len(ids) < 2 or not all(isinstance(t, int) and t >= 0 for t in ids):
                raise ValueError(f"{path}:{lineno}: input_ids must be a list of >= 2 non-negative ints")
            if vocab is not None:
                sp = vocab.special
                if ids[0] != sp.cls or ids[-1] != sp.sep:
                    raise ValueError(f"{path}:{lineno}: input_ids must start with [CLS]={sp.cls} "
                                     f"and end with [SEP]={sp.sep}")
                if max(ids) >= vocab.size:
                    raise ValueError(f"{path}:{lineno}: token id {max(ids)} >= vocab size {vocab.size}")
            yield lineno, rec


class PretrainDataset(Dataset):
    """A split directory (see the module docstring). ``ds[c]`` is caption ``c`` with its own image;
    :meth:`pair` gives caption ``c`` with any image (for image-text matching negatives).

    ``max_text_len`` truncates longer captions, keeping the final [SEP] (None: no limit; the
    trainer passes the model's max_position_embeddings)."""

    def __init__(self, root: str, max_text_len: Optional[int] = None,
                 vocab: Optional[Vocab] = None):
        self.root = root
        self.regions = RegionStore(os.path.join(root, "regions.npz"))
        vocab_path = os.path.join(root, "vocab.txt")
        if vocab is None and os.path.exists(vocab_path):
            vocab = Vocab.from_file(vocab_path)
        self.vocab = vocab
        path = os.path.join(root, "captions.jsonl")
        self.captions: List[dict] = [rec for _, rec in _caption_lines(path, self.regions.num_images, vocab)]
        if not self.captions:
            raise ValueError(f"{path}: no captions")
        self.image_of = np.array([c["image"] for c in self.captions], dtype=np.int64)
        self.false_captions: List[dict] = []
        self._edits_of: Dict[int, List[int]] = {}      # caption -> its false edits
        self._false_of_image: Dict[int, List[int]] = {}
        false_path = os.path.join(root, "false_captions.jsonl")
        if os.path.exists(false_path):
            for lineno, rec in _caption_lines(false_path, self.regions.num_images, vocab):
                img, src = rec["image"], rec.get("source", -1)
                if not isinstance(src, int) or src >= len(self.captions) or \
                        (src >= 0 and self.captions[src]["image"] != img):
                    raise ValueError(f"{false_path}:{lineno}: source {src!r} is not a caption of image {img}")
                k = len(self.false_captions)
                self.false_captions.append(rec)
                self._false_of_image.setdefault(img, []).append(k)
                if src >= 0:
                    self._edits_of.setdefault(src, []).append(k)
        self.max_text_len = max_text_len
        self.truth: Optional[np.ndarray] = None
        self.near: Optional[np.ndarray] = None  # near[c, i]: image i is a near miss of caption c
        truth_path = os.path.join(root, "truth.npz")
        if os.path.exists(truth_path):
            arrays = _npz(truth_path)
            arr = arrays.get("truth", next(iter(arrays.values())) if len(arrays) == 1 else None)
            if arr is None:
                raise ValueError(f"{truth_path}: expected an array 'truth', got {sorted(arrays)}")
            want = (len(self.captions), self.regions.num_images)
            if arr.shape != want:
                raise ValueError(f"{truth_path}: shape {arr.shape}, want [N_captions, N_images] = {want}")
            arr = arr.astype(bool, copy=False)
            own = arr[np.arange(len(self.captions)), self.image_of]
            if not own.all():
                bad = np.flatnonzero(~own)[:5].tolist()
                raise ValueError(f"{truth_path}: captions {bad} are false on their own image")
            self.truth = arr
            near = arrays.get("near")
            if near is not None:
                if near.shape != want:
                    raise ValueError(f"{truth_path}: near has shape {near.shape}, want {want}")
                near = near.astype(bool, copy=False)
                if (near & arr).any():
                    raise ValueError(f"{truth_path}: near marks pairs that truth says are true")
                self.near = near

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def num_images(self) -> int:
        return self.regions.num_images

    def max_token_id(self) -> int:
        return max(max(c["input_ids"]) for c in self.captions)

    def input_ids(self, c: int) -> torch.Tensor:
        return self._ids(self.captions[c]["input_ids"])

    def _ids(self, ids: List[int]) -> torch.Tensor:
        if self.max_text_len is not None and len(ids) > self.max_text_len:
            ids = ids[: self.max_text_len - 1] + ids[-1:]
        return torch.tensor(ids, dtype=torch.long)

    def pair(self, c: int, image: int, target: Optional[int] = None) -> dict:
        s = {"input_ids": self.input_ids(c), "caption_index": c, "image_index": int(image)}
        s.update(self.regions.image(int(image)))
        if target is not None:
            s["target"] = int(target)
        return s

    def false_pair(self, f: int) -> dict:
        """False caption ``f`` (false_captions.jsonl) with its own image: target 0;
        ``caption_index`` is -1 - f."""
        rec = self.false_captions[f]
        s = {"input_ids": self._ids(rec["input_ids"]), "caption_index": -1 - f,
             "image_index": int(rec["image"]), "target": 0}
        s.update(self.regions.image(int(rec["image"])))
        return s

    def text_negative(self, c: int, rng: np.random.Generator) -> Optional[int]:
        """A false caption of caption ``c``'s image: one made by a minimal edit of ``c`` when there
        is one, else any false caption of that image; None without false_captions.jsonl."""
        cands = self._edits_of.get(c) or self._false_of_image.get(int(self.image_of[c]))
        return None if not cands else cands[int(rng.integers(len(cands)))]

    def __getitem__(self, c: int) -> dict:
        return self.pair(c, int(self.image_of[c]))

    def negative_image(self, c: int, rng: np.random.Generator, near_prob: float = 0.0) -> Optional[int]:
        """A random image caption ``c`` is false on (any other image without truth.npz); None if
        there is none. With probability ``near_prob`` (no draw at 0: runs without it keep their
        random sequence) it is drawn among the caption's near misses (truth.npz's near: images
        that differ from the caption by about one minimal edit) when it has any."""
        if near_prob > 0 and rng.random() < near_prob and self.near is not None:
            pool = np.flatnonzero(self.near[c])
            if len(pool):
                return int(pool[rng.integers(len(pool))])
        n = self.num_images
        own = int(self.image_of[c])
        for _ in range(64):  # rejection sampling: cheap when negatives are common
            j = int(rng.integers(n))
            if j != own and (self.truth is None or not self.truth[c, j]):
                return j
        cands = np.flatnonzero(~self.truth[c]) if self.truth is not None \
            else np.array([j for j in range(n) if j != own])
        return int(cands[rng.integers(len(cands))]) if len(cands) else None


def collate(samples: Sequence[dict], pad_id: int = 0) -> Dict[str, torch.Tensor]:
    """Pads samples into the model's padded layout (see the module docstring)."""
    B = len(samples)
    if B == 0:
        raise ValueError("empty batch")
    T = max(len(s["input_ids"]) for s in samples)
    N = max(len(s["img_feat"]) for s in samples)
    D = samples[0]["img_feat"].shape[1]
    C = samples[0]["img_soft_labels"].shape[1]
    out = {
        "input_ids": torch.full((B, T), pad_id, dtype=torch.long),
        "text_mask": torch.zeros(B, T, dtype=torch.long),
        "img_feat": torch.zeros(B, N, D),
        "img_loc": torch.zeros(B, N, 7),
        "img_mask": torch.zeros(B, N, dtype=torch.long),
        "img_soft_labels": torch.zeros(B, N, C),
        "caption_index": torch.tensor([s["caption_index"] for s in samples], dtype=torch.long),
        "image_index": torch.tensor([s["image_index"] for s in samples], dtype=torch.long),
    }
    for b, s in enumerate(samples):
        t, n = len(s["input_ids"]), len(s["img_feat"])
        out["input_ids"][b, :t] = s["input_ids"]
        out["text_mask"][b, :t] = 1
        out["img_feat"][b, :n] = s["img_feat"]
        out["img_loc"][b, :n] = s["img_loc"]
        out["img_mask"][b, :n] = 1
        out["img_soft_labels"][b, :n] = s["img_soft_labels"]
    if all("target" in s for s in samples):
        out["targets"] = torch.tensor([s["target"] for s in samples], dtype=torch.long)
    return out


def write_split(root: str, features, locations, soft_labels, boxes, offsets,
                captions: Sequence[dict], truth=None, vocab_tokens: Optional[Sequence[str]] = None,
                compressed: bool = False, near=None) -> None:
    """Writes a split in the format above (used by the tests; a reference for other writers)."""
    os.makedirs(root, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    save(os.path.join(root, "regions.npz"),
         features=np.asarray(features, dtype=np.float16),
         locations=np.asarray(locations, dtype=np.float32),
         soft_labels=np.asarray(soft_labels, dtype=np.float16),
         boxes=np.asarray(boxes, dtype=np.float32),
         offsets=np.asarray(offsets, dtype=np.int64))
    with open(os.path.join(root, "captions.jsonl"), "w", encoding="utf-8") as f:
        for c in captions:
            f.write(json.dumps(c) + "\n")
    if truth is not None:
        arrays = {"truth": np.asarray(truth, dtype=bool)}
        if near is not None:
            arrays["near"] = np.asarray(near, dtype=bool)
        save(os.path.join(root, "truth.npz"), **arrays)
    if vocab_tokens is not None:
        with open(os.path.join(root, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(vocab_tokens) + "\n")
