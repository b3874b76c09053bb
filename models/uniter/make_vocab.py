"""Builds a BERT-format WordPiece vocab.txt for the Shapes World language.

Order (deterministic):
  1. [PAD] [UNK] [CLS] [SEP] [MASK]                       ids 0..4 (the Go tokenizer and the
                                                          trainer assume exactly these ids)
  2. every word of the split's captions and false captions (lower-cased and split into words
     and punctuation like BERT's basic tokenizer), plus the words of --words FILE, sorted
  3. single characters a–z, 0–9 and ASCII punctuation not already listed
  4. their continuation forms ##a … ##9, ##! …
so any lower-cased ASCII text tokenizes without [UNK] (unknown words fall back to characters).

    python3 -m uniter.make_vocab --split .cache/shapes-train/train --out vocab.txt

(from models/, or with models/ on PYTHONPATH)
"""
from __future__ import annotations

import argparse
import json
import os
import string
import sys
from typing import Iterable, List

from .wordpiece import basic_split

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list(string.ascii_lowercase) + list(string.digits) + list(string.punctuation)


def split_texts(split_dir: str) -> Iterable[str]:
    with open(os.path.join(split_dir, "annotations.jsonl"), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            for key in ("captions", "false_captions"):
                for cap in rec.get(key) or []:
                    yield cap["text"]


def build_vocab(texts: Iterable[str] = (), extra_words: Iterable[str] = ()) -> List[str]:
    words = set()
    for t in list(texts) + list(extra_words):
        words.update(basic_split(t, lowercase=True))
    vocab, seen = list(SPECIALS), set(SPECIALS)
    for tok in sorted(words) + CHARS + ["##" + c for c in CHARS]:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.make_vocab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", action="append", default=[], metavar="DIR",
                    help="Shapes World split folder with annotations.jsonl (repeatable)")
    ap.add_argument("--words", metavar="FILE", help="extra words or texts, one per line")
    ap.add_argument("--out", required=True, metavar="FILE", help="vocab.txt to write")
    args = ap.parse_args(argv)
    if not args.split and not args.words:
        ap.error("give --split and/or --words")
    texts: List[str] = []
    for d in args.split:
        texts.extend(split_texts(d))
    extra: List[str] = []
    if args.words:
        with open(args.words, encoding="utf-8") as f:
            extra = [line.strip() for line in f if line.strip()]
    vocab = build_vocab(texts, extra)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    print(f"{args.out}: {len(vocab)} tokens ({len(texts)} texts)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
