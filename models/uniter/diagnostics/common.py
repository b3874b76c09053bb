"""What the analyses share: a checkpoint loaded with its run's config, a split's features and
annotations (train-shapes.sh's work folder layout), caption spans mapped to WordPiece tokens, box
IoU, forward passes in batches with the WRA cost, grounding of spans, and the masked-word probe.

The work folder (``--work``, default ``.cache/shapes-train``) is what ``scripts/train-shapes.sh``
leaves: ``SPLIT/annotations.jsonl`` from ``uniter synth`` and ``feat-SPLIT/`` from ``uniter
extract`` (regions.npz, captions.jsonl, false_captions.jsonl, truth.npz, vocab.txt).
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from ..data import PretrainDataset, collate
from ..model import UniterForPretraining, load_checkpoint
from ..ot import cost_matrix_cosine
from ..pretrain import build_model, resolve_config

DEFAULT_WORK = ".cache/shapes-train"
# The default model's size (train-shapes.sh's CONFIG), for the studies that train one.
STUDY_CONFIG = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512}
DEFAULT_BUNDLE = "bundles/shapes-uniter"
IOU_HIT = 0.5  # a region grounds a span when it overlaps one of the span's objects this much

# The Shapes World grammar's word groups (shapes/vocab.go).
WORD_GROUPS = {
    "colour": "red green blue yellow orange purple white black".split(),
    "shape": "circle square triangle star diamond cross heart hexagon".split(),
    "size": "small large".split(),
    "relation": "left right above below".split(),
    "count": "two three four".split(),
}


def study_parser(prog: str, description: str, captions: Optional[int] = 1000,
                 bundle: bool = False) -> argparse.ArgumentParser:
    """The arguments of an analysis of a checkpoint on the validation split."""
    ap = argparse.ArgumentParser(prog=f"python3 -m uniter.diagnostics.{prog}", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", metavar="CKPT",
                    help="RUN/final.pt or RUN/ckpt/model_step_N.pt (RUN/config.json is its config)")
    if captions is not None:
        ap.add_argument("--captions", type=int, default=captions, metavar="N",
                        help="the first N validation captions (default %(default)s)")
    ap.add_argument("--work", default=DEFAULT_WORK, metavar="DIR",
                    help="train-shapes.sh's work folder: val/ and feat-val/ (default %(default)s)")
    if bundle:
        ap.add_argument("--bundle", default=DEFAULT_BUNDLE, metavar="DIR",
                        help="the bundle whose attribute_labels.txt and region_labels.txt name the "
                             "objects (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default %(default)s)")
    return ap


def run_dir(ckpt: str) -> str:
    """RUN for RUN/final.pt and for RUN/ckpt/model_step_N.pt."""
    d = os.path.dirname(os.path.abspath(ckpt))
    return os.path.dirname(d) if os.path.basename(d) == "ckpt" else d


def load_model(ckpt: str, ds: PretrainDataset, config: Optional[str] = None) -> UniterForPretraining:
    """The checkpoint in eval mode, with its run's config.json (or ``config``) completed from ``ds``."""
    with open(config or os.path.join(run_dir(ckpt), "config.json")) as f:
        cfg = resolve_config(json.load(f), ds, ds.vocab)
    model = build_model(cfg, 0)
    load_checkpoint(model, ckpt)
    return model.eval()


def group_ids(tokens: Sequence[str], words: Sequence[str]) -> torch.Tensor:
    """The vocabulary ids of ``words``."""
    missing = [w for w in words if w not in tokens]
    if missing:
        raise ValueError(f"not in the vocabulary: {missing}")
    return torch.tensor([list(tokens).index(w) for w in words])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def matches(spec: dict, obj: dict) -> bool:
    """Whether an annotated object fits a logical form's description (shape, colour, size; an
    attribute the description leaves out fits anything)."""
    return all(spec.get(k) in (None, "", obj[k]) for k in ("shape", "color", "size"))


def token_spans(text: str, vocab: Set[str]) -> List[Tuple[int, int]]:
    """Character spans of the lower-cased text's WordPiece tokens (greedy longest match, as the
    tokenizer), without [CLS] and [SEP]. The captions are lower-case words separated by spaces."""
    out, pos, low = [], 0, text.lower()
    for w in low.split():
        s = low.index(w, pos)
        pos = s + len(w)
        i = 0
        while i < len(w):
            j = len(w)
            while j > i and (w[i:j] if i == 0 else "##" + w[i:j]) not in vocab:
                j -= 1
            if j == i:
                raise ValueError(f"{w!r} does not tokenize with this vocabulary")
            out.append((s + i, s + j))
            i = j
    return out


def span_positions(tokens: Sequence[Tuple[int, int]], span: dict) -> List[int]:
    """The positions (after [CLS]) of the tokens inside an annotation span."""
    return [i + 1 for i, (s, e) in enumerate(tokens) if s >= span["start"] and e <= span["end"]]


def naming_words(bundle: str = DEFAULT_BUNDLE) -> Set[str]:
    """The words that name objects: the bundle's colour and shape labels, the size words, and
    their plurals (+s, +es), as uniter.pretrain --plan-naming-words reads them."""
    words = {"small", "large"}
    for name in ("attribute_labels.txt", "region_labels.txt"):
        with open(os.path.join(bundle, name), encoding="utf-8") as f:
            words |= set(f.read().split())
    return words | {w + "s" for w in words} | {w + "es" for w in words}


@dataclass
class Batch:
    """One forward pass over captions with their own images (see :meth:`Study.batches`)."""
    captions: List[int]
    x: Dict[str, torch.Tensor]           # the collated batch
    hidden: torch.Tensor                 # [B, T + N, H]
    attn: Tuple[torch.Tensor, ...]       # per layer [B, heads, T + N, T + N]
    T: int                               # padded text length
    tpad: torch.Tensor                   # [B, T] True on text padding
    ipad: torch.Tensor                   # [B, N] True on region padding
    jpad: torch.Tensor                   # [B, T, N] either padded
    cost: torch.Tensor                   # [B, T, N] the WRA cost 1 - cos, 0 on padding
    text_len: torch.Tensor               # [B] float
    regions: torch.Tensor                # [B] float: real regions


@dataclass
class Span:
    """One annotated span of a caption, with what grounding it needs."""
    caption: dict        # captions.jsonl entry
    image: dict          # the image's annotation
    annotation: dict     # the caption's annotation (text, spans)
    tokens: List[Tuple[int, int]]   # character spans of the caption's tokens
    boxes: np.ndarray    # [n, 4] the image's real regions
    span: dict
    positions: List[int]            # token positions of the span ([CLS] is 0)
    good: List[bool]                # per region: overlaps one of the span's objects

    @property
    def kind(self) -> str:
        return self.span["kind"]


class Study:
    """A checkpoint in eval mode with the work folder's split (default: validation): ``ds``
    (features), ``anns`` (annotations), ``caps`` (captions.jsonl), ``boxes``/``offs`` (the
    extracted regions)."""

    def __init__(self, ckpt: str, work: str = DEFAULT_WORK, split: str = "val"):
        feat = os.path.join(work, f"feat-{split}")
        self.ds = PretrainDataset(feat, max_text_len=128)
        self.model = load_model(ckpt, self.ds)
        self.vocab = self.ds.vocab.tokens
        self._vocab_set = set(self.vocab)
        with open(os.path.join(work, split, "annotations.jsonl"), encoding="utf-8") as f:
            self.anns = [json.loads(line) for line in f if line.strip()]
        self.caps = self.ds.captions
        with np.load(os.path.join(feat, "regions.npz")) as z:
            self.boxes, self.offs = z["boxes"], z["offsets"]

    def wordpiece(self, text: str) -> List[Tuple[int, int]]:
        return token_spans(text, self._vocab_set)

    def caption(self, c: int) -> Tuple[dict, dict, dict]:
        """(captions.jsonl entry, the image's annotation, the caption's annotation) of caption c."""
        cap = self.caps[c]
        ann = self.anns[cap["image"]]
        acap = ann["captions"][int(cap["caption_id"].split("-")[1])]
        if acap["text"] != cap["text"]:
            raise ValueError(f"caption {c}: {cap['text']!r} is not the annotation's {acap['text']!r}")
        return cap, ann, acap

    def image_boxes(self, image: int, n: int) -> np.ndarray:
        return self.boxes[self.offs[image]:self.offs[image] + n]

    def spans(self, c: int, n: int, kinds: Sequence[str] = ("shape", "color")) -> Iterator[Span]:
        """Caption c's spans of ``kinds`` that refer to objects, its image having ``n`` regions."""
        cap, ann, acap = self.caption(c)
        tok = self.wordpiece(cap["text"])
        rb = self.image_boxes(cap["image"], n)
        for sp in acap["spans"]:
            if sp["kind"] not in kinds or not sp["objects"]:
                continue
            good = [any(iou(rb[r], ann["objects"][o]["box"]) >= IOU_HIT for o in sp["objects"])
                    for r in range(n)]
            yield Span(cap, ann, acap, tok, rb, sp, span_positions(tok, sp), good)

    @torch.no_grad()
    def batches(self, ncap: int, size: int = 50) -> Iterator[Batch]:
        """Forward passes over the first ``ncap`` captions, each with its own image."""
        ncap = min(ncap, len(self.caps))
        for b0 in range(0, ncap, size):
            cs = list(range(b0, min(b0 + size, ncap)))
            x = collate([self.ds[c] for c in cs], 0)
            h, _, attn = self.model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"],
                                           x["img_mask"])
            T = x["input_ids"].shape[1]
            tpad, ipad = x["text_mask"] == 0, x["img_mask"] == 0
            jp = tpad.unsqueeze(-1) | ipad.unsqueeze(-2)
            C = cost_matrix_cosine(h[:, :T], h[:, T:]).masked_fill(jp, 0)
            yield Batch(cs, x, h, attn, T, tpad, ipad, jp, C, (~tpad).sum(1).float(), (~ipad).sum(1).float())


def span_hit(readout: torch.Tensor, positions: Sequence[int], good: Sequence[bool]) -> bool:
    """Whether the region with most of the span's tokens' summed weight in ``readout``
    (tokens x regions of one caption) grounds it."""
    n = len(good)
    return bool(good[int(readout[list(positions)][:, :n].sum(0).argmax())])


def score_spans(st: Study, b: Batch, readouts: Dict[str, torch.Tensor], hits: dict) -> None:
    """Appends to ``hits[name][kind]`` whether each shape or colour span of the batch's captions
    is grounded by ``readouts[name]`` (``[B, tokens, regions]``, [CLS] first), as `uniter eval`
    counts grounding (the argmax region of the span's summed rows, IoU >= 0.5)."""
    for k, c in enumerate(b.captions):
        for s in st.spans(c, int(b.regions[k])):
            for name, R in readouts.items():
                hits[name][s.kind].append(span_hit(R[k], s.positions, s.good))


# ------------------------------------------------------------------------ the masked-word probe

def mask_first(ids: torch.Tensor, group: torch.Tensor, mask_id: int):
    """The first word of ``group`` in every caption replaced by [MASK]: (ids, rows, positions,
    labels, keep) where ``keep`` marks the captions that have such a word."""
    hit = torch.isin(ids, group)
    first, keep = hit.float().argmax(1), hit.any(1)
    rows = torch.arange(len(ids))
    labels = ids[rows, first]
    ids = ids.clone()
    ids[rows, first] = torch.where(keep, torch.full_like(labels, mask_id), labels)
    return ids, rows, first, labels, keep


def other_image_rows(image_index: torch.Tensor, shift: int = 37) -> torch.Tensor:
    """For each row, a row at least ``shift`` places before it (cyclically) whose image is another
    one (the row ``shift`` before when every row has the same image)."""
    B = len(image_index)
    out = []
    for i in range(B):
        pick = (i - shift) % B
        for d in range(shift, shift + B):
            j = (i - d) % B
            if image_index[j] != image_index[i]:
                pick = j
                break
        out.append(pick)
    return torch.tensor(out, dtype=torch.long)


def permute_locations(loc: torch.Tensor, img_mask: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
    """The locations permuted among each image's real regions (each feature keeps a wrong box);
    ``gen`` None: torch's global generator."""
    loc = loc.clone()
    for i in range(len(loc)):
        n = int(img_mask[i].sum())
        loc[i, :n] = loc[i, torch.randperm(n, generator=gen)]
    return loc


def mask_one_of(ids: torch.Tensor, can: torch.Tensor, mask_id: int, gen: torch.Generator):
    """One position per caption drawn among ``can`` (``[B, T]`` bool) replaced by [MASK], for the
    captions that have one: (ids, rows, positions, labels)."""
    rows = can.any(1).nonzero().squeeze(1)
    pick = torch.multinomial(can[rows].float(), 1, generator=gen).squeeze(1)
    labels = ids[rows, pick]
    ids = ids.clone()
    ids[rows, pick] = mask_id
    return ids, rows, pick, labels


PROBES = ("image", "other", "zeroed", "permuted")


@torch.no_grad()
def masked_word_accuracy(model: UniterForPretraining, x: Dict[str, torch.Tensor], group: torch.Tensor,
                         mask_id: int, how: str = "image", gen: Optional[torch.Generator] = None) -> float:
    """Accuracy of the MLM head at the first word of ``group`` of each caption, masked, with the
    caption's image (``image``), another image's regions (``other``: a caption 37 places before
    with another image), the region features zeroed
    (``zeroed``, locations kept) or the locations permuted among the regions (``permuted``)."""
    ids, rows, first, labels, keep = mask_first(x["input_ids"], group, mask_id)
    feat, loc, mask = x["img_feat"], x["img_loc"], x["img_mask"]
    if how == "other":
        p = other_image_rows(x["image_index"])
        feat, loc, mask = feat[p], loc[p], mask[p]
    elif how == "zeroed":
        feat = torch.zeros_like(feat)
    elif how == "permuted":
        loc = permute_locations(loc, mask, gen if gen is not None else torch.Generator().manual_seed(1))
    elif how != "image":
        raise ValueError(f"probe {how!r}: want one of {PROBES}")
    h, _, _ = model.uniter(ids, x["text_mask"], feat, loc, mask)
    pred = model.cls(h[rows, first]).argmax(1)
    return (pred[keep] == labels[keep]).float().mean().item()


def spread(n: int, count: int = 1000, stride: int = 5) -> np.ndarray:
    """``count`` indices below ``n``, ``stride`` apart (fewer when ``n`` is small)."""
    return np.arange(0, min(n, count * stride), stride)
