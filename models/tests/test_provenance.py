"""The bundle provenance's stage record (models/uniter/provenance.py) of a real run's final.json."""
import json

from uniter.provenance import evaluation_summary, stage_record


def test_stage_record_of_a_plan_stage():
    final = {"step": 3000, "seed": 42, "tasks": {"itm": 1.0}, "init": "RUN/final.pt",
             "train": {"lr": 3e-5, "warmup": 200, "batch_size": 32, "ot_weight": 0.1,
                       "itm_hard_negatives": 8, "plan_distill": 2.0, "plan_absorb": True,
                       "plan_argmax": 0.3, "plan_columns": True, "plan_naming_ids": [7, 9],
                       "plan_rows": 0.5, "plan_rows_target": "attention"},
             "val": {"itm_acc": 0.97}}
    r = stage_record(json.loads(json.dumps(final)))
    assert r["steps"] == 3000 and r["seed"] == 42 and r["mix"] == {"itm": 1.0} and r["init"] == "RUN/final.pt"
    assert (r["lr"], r["warmup"], r["batch_size"], r["ot_weight"]) == (3e-5, 200, 32, 0.1)
    assert r["plan_argmax"] == 0.3 and r["plan_columns"] and r["plan_naming_words"] and r["plan_absorb"]
    assert r["plan_rows"] == 0.5 and r["plan_rows_target"] == "attention"
    assert r["itm_near_negatives"] == 0 and r["grounded_mlm_steps"] == 0 and r["train_only"] is None
    assert r["val_metrics"] == {"itm_acc": 0.97}


def test_stage_record_of_a_run_without_the_newer_settings():
    r = stage_record({"step": 10, "train": {"lr": 1e-3}})
    assert r["plan_argmax"] is None and r["plan_columns"] is False and r["plan_naming_words"] is False
    assert r["plan_distill"] == 0 and r["itm_hard_negatives"] == 0 and r["val_metrics"] is None
    assert r["plan_rows"] == 0.0 and r["plan_rows_target"] is None


def test_evaluation_summary_rounds_and_leaves_out_missing_metrics():
    out = evaluation_summary({"test-1k": {"ir_r1": 0.806812, "itm_accuracy": 0.98, "seconds": 12.0},
                              "test-100": {"grounding_noun": 0.71189}})
    assert out == {"test-1k": {"ir_r1": 0.8068, "itm_accuracy": 0.98}, "test-100": {"grounding_noun": 0.7119}}
