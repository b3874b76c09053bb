"""Writes the words a bundle's manifest holds for people — what the model is and what it knows
(docs/bundle-format.md, "What the model knows") — into an exported bundle:

    python3 -m uniter.describe BUNDLE [--description S] [--detector-description S]
        [--detector-domain S] [--text-domain S] [--closed-vocabulary | --open-vocabulary]

(from models/, or with models/ on PYTHONPATH). They are the manifest's description,
detector.description, detector.domain, text.domain and text.closed_vocabulary; GET /v1/models,
the page and `uniter regions` report them. They change no graph and no checksum. Each string
must be what the service accepts: one line (no control characters), not blank, at most 1,000
bytes; the detector's need a bundle with a detector section. Options not given leave the
manifest's value as it is; the manifest keeps its key order.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

MAX_BYTES = 1000  # the service's limit on each of these strings (pipeline/manifest.go)


def check_line(what: str, s: str) -> str:
    """s if the service accepts it as `what`, else ValueError naming the rule broken."""
    if not s.strip():
        raise ValueError(f"{what} is blank")
    bad = next((c for c in s if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        raise ValueError(f"{what} must be one line: it has the control character {bad!r}")
    if len(s.encode("utf-8")) > MAX_BYTES:
        raise ValueError(f"{what} has {len(s.encode('utf-8'))} bytes, at most {MAX_BYTES}")
    return s


def describe(bundle: str, *, description: Optional[str] = None,
             detector_description: Optional[str] = None, detector_domain: Optional[str] = None,
             text_domain: Optional[str] = None,
             closed_vocabulary: Optional[bool] = None) -> dict:
    """Sets the given keys in BUNDLE/manifest.json; returns the manifest written."""
    path = os.path.join(bundle, "manifest.json")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if description is not None:
        manifest["description"] = check_line("the description", description)
    for key, value in (("description", detector_description), ("domain", detector_domain)):
        if value is None:
            continue
        if not isinstance(manifest.get("detector"), dict):
            raise ValueError(f"{bundle} has no detector: detector.{key} has nothing to describe "
                             "(add one first: python3 -m uniter.butd_export convert-butd … --into)")
        manifest["detector"][key] = check_line(f"detector.{key}", value)
    if text_domain is not None:
        manifest["text"]["domain"] = check_line("text.domain", text_domain)
    if closed_vocabulary is not None:
        manifest["text"]["closed_vocabulary"] = closed_vocabulary
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.describe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", help="the bundle folder (its manifest.json is rewritten)")
    ap.add_argument("--description", help="the bundle's description: what the model is")
    ap.add_argument("--detector-description", help="detector.description: what the detector is")
    ap.add_argument("--detector-domain",
                    help="detector.domain: the images it was trained for, and what lies outside")
    ap.add_argument("--text-domain", help="text.domain: the texts the vocabulary was made for")
    vocab = ap.add_mutually_exclusive_group()
    vocab.add_argument("--closed-vocabulary", dest="closed", action="store_const", const=True,
                       help="text.closed_vocabulary true: a closed domain vocabulary")
    vocab.add_argument("--open-vocabulary", dest="closed", action="store_const", const=False,
                       help="text.closed_vocabulary false: an open one such as BERT's")
    args = ap.parse_args(argv)
    try:
        describe(args.bundle, description=args.description,
                 detector_description=args.detector_description,
                 detector_domain=args.detector_domain, text_domain=args.text_domain,
                 closed_vocabulary=args.closed)
    except (ValueError, OSError) as e:
        sys.exit(f"uniter.describe: {e}")
    print(f"described {args.bundle}", file=sys.stderr)


if __name__ == "__main__":
    main()
