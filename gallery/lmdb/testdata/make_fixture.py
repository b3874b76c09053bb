"""Writes gallery/lmdb/testdata/fixture.lmdb with py-lmdb (Debian: python3-lmdb) and the
expected contents as fixture.json, for the pure-Go reader's tests.

The database has 400 small entries (enough for a two-level tree: branch pages over leaves),
three values large enough for overflow pages, an empty value and a binary key, written in
several transactions as UNITER's convert_imgdir.py does (a commit every 100 puts).

    /usr/bin/python3 gallery/lmdb/testdata/make_fixture.py
"""
import base64
import hashlib
import json
import os
import shutil

import lmdb

here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "fixture.lmdb")
shutil.rmtree(path, ignore_errors=True)
env = lmdb.open(path, map_size=1 << 24)
entries = {}
for i in range(400):
    entries[f"key-{i:04d}".encode()] = hashlib.sha256(str(i).encode()).digest() * (1 + i % 3)
for i, size in enumerate([5000, 9001, 20000]):
    entries[f"big-{i}".encode()] = bytes((j * 7 + i) % 251 for j in range(size))
entries[b"empty"] = b""
entries[b"\x00\xffbinary"] = b"v"
txn = env.begin(write=True)
for n, (k, v) in enumerate(sorted(entries.items(), key=lambda kv: hashlib.md5(kv[0]).digest())):
    txn.put(k, v)
    if n % 100 == 99:
        txn.commit()
        txn = env.begin(write=True)
txn.commit()
stat = env.stat()
env.close()
os.remove(os.path.join(path, "lock.mdb"))
with open(os.path.join(here, "fixture.json"), "w") as f:
    json.dump({"depth": stat["depth"], "branch_pages": stat["branch_pages"], "overflow_pages": stat["overflow_pages"],
               "entries": [[base64.b64encode(k).decode(), hashlib.sha256(v).hexdigest(), len(v)] for k, v in sorted(entries.items())]},
              f, indent=0)
print(stat)
