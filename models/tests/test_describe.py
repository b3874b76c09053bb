"""uniter.describe: the manifest's words for people (description, detector.description,
detector.domain, text.domain, text.closed_vocabulary), set in an exported bundle under the
rules the service loads them by (pipeline/manifest.go checkDescribe). The whole path, on a
UNITER-base-sized bundle served and read back through GET /v1/models, is
tests/real_uniter_test.go running docs/serve-real-uniter.md."""
import json
import os
import shutil

import pytest

from uniter import describe

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "testdata", "bundles", "tiny-random")


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "manifest.json"
    shutil.copyfile(os.path.join(FIXTURE, "manifest.json"), path)
    return path


def test_sets_the_keys_and_keeps_the_rest(manifest, tmp_path):
    before = json.loads(manifest.read_text())
    m = describe.describe(str(tmp_path), description="a model", text_domain="English captions",
                          closed_vocabulary=False)
    after = json.loads(manifest.read_text())
    assert after == m
    assert after["description"] == "a model"
    assert after["text"]["domain"] == "English captions"
    assert after["text"]["closed_vocabulary"] is False
    assert list(after) == list(before)          # the key order stays
    for k in before:
        if k not in ("description", "text"):
            assert after[k] == before[k]
    describe.main([str(tmp_path), "--closed-vocabulary"])   # options not given stay as they are
    again = json.loads(manifest.read_text())
    assert again["text"]["domain"] == "English captions" and again["text"]["closed_vocabulary"] is True


def test_detector_keys_need_a_detector(manifest, tmp_path):
    m = json.loads(manifest.read_text())
    m.pop("detector", None)
    manifest.write_text(json.dumps(m))
    with pytest.raises(ValueError, match="no detector"):
        describe.describe(str(tmp_path), detector_domain="photographs")
    m["detector"] = {"graph": "detector"}
    manifest.write_text(json.dumps(m))
    out = describe.describe(str(tmp_path), detector_description="a Faster R-CNN",
                            detector_domain="Visual Genome photographs")
    assert out["detector"] == {"graph": "detector", "description": "a Faster R-CNN",
                               "domain": "Visual Genome photographs"}


@pytest.mark.parametrize("value,why", [
    ("", "blank"), ("  ", "blank"), ("two\nlines", "control character"),
    ("a\ttab", "control character"), ("c1 \x85", "control character"),
    ("é" * 501, "1002 bytes"),
])
def test_refuses_what_the_service_would(manifest, tmp_path, value, why):
    with pytest.raises(ValueError, match=why):
        describe.describe(str(tmp_path), text_domain=value)
    with pytest.raises(SystemExit, match=why):
        describe.main([str(tmp_path), "--text-domain", value])
    assert "domain" not in json.loads(manifest.read_text())["text"]


def test_limit_is_in_bytes(manifest, tmp_path):
    describe.describe(str(tmp_path), text_domain="é" * 500)   # 1,000 bytes: the most allowed
    assert json.loads(manifest.read_text())["text"]["domain"] == "é" * 500
