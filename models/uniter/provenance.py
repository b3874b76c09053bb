"""The bundle manifest's record of one training stage (train-shapes.sh's provenance)."""


def stage_record(final: dict) -> dict:
    """What a bundle's provenance keeps of a run's final.json (uniter.pretrain): steps, seed, task
    mix, init, the training settings that define the recipe, and the validation metrics."""
    t = final.get("train", {})
    return {"steps": final.get("step"), "seed": final.get("seed"), "mix": final.get("tasks"),
            "init": final.get("init"), "lr": t.get("lr"), "warmup": t.get("warmup"),
            "batch_size": t.get("batch_size"), "ot_weight": t.get("ot_weight"),
            "itm_hard_negatives": t.get("itm_hard_negatives", 0),
            "itm_text_negatives": t.get("itm_text_negatives", 0),
            "itm_near_negatives": t.get("itm_near_negatives", 0),
            "plan_distill": t.get("plan_distill", 0), "plan_absorb": t.get("plan_absorb", False),
            "plan_argmax": t.get("plan_argmax"), "plan_columns": t.get("plan_columns", False),
            "plan_naming_words": bool(t.get("plan_naming_ids")),
            "plan_rows": t.get("plan_rows", 0.0),
            "plan_rows_target": t.get("plan_rows_target") if t.get("plan_rows") else None,
            "grounded_mlm_steps": t.get("grounded_mlm_steps", 0),
            "train_only": t.get("train_only") or None, "val_metrics": final.get("val")}


# The headline metrics of `uniter eval` a bundle's provenance keeps.
EVALUATION_KEYS = ("itm_accuracy", "ir_r1", "ir_r5", "ir_r10", "tr_r1", "tr_r5", "tr_r10",
                   "grounding_noun", "grounding_color", "grounding_noun_attention",
                   "grounding_color_attention", "mlm_color_with_image", "mlm_color_without_image",
                   "minimal_edit_rejection", "pairs_per_second")


def evaluation_summary(reports: dict) -> dict:
    """{split: report} → {split: headline metrics rounded to 4 places}; a report from before a
    metric existed leaves it out."""
    return {s: {k: round(r[k], 4) for k in EVALUATION_KEYS if k in r} for s, r in reports.items()}
