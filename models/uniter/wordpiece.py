"""A minimal BERT WordPiece tokenizer (basic split + greedy longest-match-first).

Used only to produce golden token ids for ASCII fixture texts, as an implementation independent
of the Go tokenizer; the service tokenises in Go.
"""
from __future__ import annotations

import string
from typing import List


def load_vocab(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


def basic_split(text: str, lowercase: bool) -> List[str]:
    if lowercase:
        text = text.lower()
    words = []
    for chunk in text.split():
        cur = ""
        for ch in chunk:
            if ch in string.punctuation:
                if cur:
                    words.append(cur)
                    cur = ""
                words.append(ch)
            else:
                cur += ch
        if cur:
            words.append(cur)
    return words


def wordpiece(word: str, vocab: dict, unk: str = "[UNK]", max_chars: int = 100) -> List[str]:
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end, piece = len(word), None
        while start < end:
            cand = word[start:end] if start == 0 else "##" + word[start:end]
            if cand in vocab:
                piece = cand
                break
            end -= 1
        if piece is None:
            return [unk]
        pieces.append(piece)
        start = end
    return pieces


def encode(text: str, vocab: dict, lowercase: bool, max_length: int) -> List[int]:
    toks = [p for w in basic_split(text, lowercase) for p in wordpiece(w, vocab)]
    toks = ["[CLS]"] + toks[: max_length - 2] + ["[SEP]"]
    return [vocab[t] for t in toks]
