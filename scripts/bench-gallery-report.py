"""Collects the scale part of scripts/bench-gallery.sh into one report.

    bench-gallery-report.py SCALE_DIR OUT.json OUT.md POSTGRES_VERSION BUNDLE

SCALE_DIR holds search-<backend>-<size>.json (uniter eval-gallery reports), fill-<backend>-
<size>.json and ingest.json. The JSON is what docs/benchmarks.md is rendered from (copy it to
docs/reports/bench-gallery-scale.json and run `make docs`); the Markdown is for the console.
"""
import datetime
import glob
import json
import os
import subprocess
import sys

scale, out_json, out_md, pg_version, bundle = sys.argv[1:]
runs, first = [], None
for path in glob.glob(os.path.join(scale, "search-*.json")):
    backend, size = os.path.basename(path)[len("search-"):-len(".json")].rsplit("-", 1)
    rep = json.load(open(path))
    first = first or rep
    fill = json.load(open(os.path.join(scale, f"fill-{backend}-{size}.json")))
    modes = {m["mode"]: m for m in rep["modes"]}
    two = modes["two_stage"]
    run = {
        "backend": backend, "images": rep["gallery_size"],
        "first_stage_p50_ms": two["first_stage_median_ms"], "first_stage_p90_ms": two["first_stage_p90_ms"],
        "two_stage_p50_ms": two["median_ms"], "two_stage_p90_ms": two["p90_ms"], "two_stage_r10": two["r10"],
        "fill_images_per_second": rep["gallery_size"] / fill["fill_seconds"],
    }
    if "exact" in modes:
        run["exact_p50_ms"] = modes["exact"]["median_ms"]
        # Candidates hold exact's top 10 exactly when two-stage returns it (same scores).
        run["first_stage_recall_of_exact_top10"] = rep["comparison"]["top10_kept"]
    runs.append(run)
if not runs:
    sys.exit("bench-gallery-report: no search reports in " + scale)
runs.sort(key=lambda r: (r["backend"], r["images"]))
ing = json.load(open(os.path.join(scale, "ingest.json")))
commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
report = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "git_describe": commit, "machine": first["machine"], "postgres": pg_version, "model": first["model"],
    "bundle": bundle, "queries": first["queries"], "query_pool": first["query_pool"],
    "candidates": next(m["candidates"] for m in first["modes"] if m["mode"] == "two_stage"),
    "runs": runs,
    "ingest": {
        "images": 1000,
        "bbolt_one_process_images_per_second": 1000 / ing["bbolt_1"],
        "postgres_one_process_images_per_second": 1000 / ing["postgres_1"],
        "postgres_two_processes_images_per_second": 1000 / ing["postgres_2"],
        "postgres_stored": [ing["stored_postgres_1"], ing["stored_postgres_2"]],
    },
}
json.dump(report, open(out_json, "w"), indent=2)
lines = [f"Gallery at scale: {report['model']}, {report['queries']} queries, k = {report['candidates']}, "
         f"{report['machine']}, {pg_version}", "",
         "| backend | images | first stage p50 ms | p90 | two-stage p50 ms | p90 | R@10 | fill images/s |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
for r in runs:
    lines.append(f"| {r['backend']} | {r['images']:,} | {r['first_stage_p50_ms']:.2f} | {r['first_stage_p90_ms']:.2f} | "
                 f"{r['two_stage_p50_ms']:.1f} | {r['two_stage_p90_ms']:.1f} | {100 * r['two_stage_r10']:.1f}% | "
                 f"{r['fill_images_per_second']:.0f} |")
i = report["ingest"]
lines += ["", f"Ingest of 1,000 image files: bbolt {i['bbolt_one_process_images_per_second']:.1f} images/s; PostgreSQL "
          f"{i['postgres_one_process_images_per_second']:.1f} (one process), {i['postgres_two_processes_images_per_second']:.1f} "
          f"(two at once); stored {i['postgres_stored']}."]
text = "\n".join(lines) + "\n"
open(out_md, "w").write(text)
print(text)
