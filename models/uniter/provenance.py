"""The bundle manifest's record of one training stage (train-shapes.sh's provenance)."""


def stage_record(final: dict) -> dict:
    """What a bundle's provenance keeps of a run's final.json (pretrain.py): steps, seed, task
    mix, init, the training settings that define the recipe, and the validation metrics."""
    t = final.get("train", {})
    return {"steps": final.get("step"), "seed": final.get("seed"), "mix": final.get("tasks"),
            "init": final.get("init"), "lr": t.get("lr"), "warmup": t.get("warmup"),
            "batch_size": t.get("batch_size"), "ot_weight": t.get("ot_weight"),
            "itm_hard_negatives": t.get("itm_hard_negatives", 0),
            "itm_near_negatives": t.get("itm_near_negatives", 0),
            "plan_distill": t.get("plan_distill", 0), "plan_absorb": t.get("plan_absorb", False),
            "plan_argmax": t.get("plan_argmax"), "plan_columns": t.get("plan_columns", False),
            "plan_naming_words": bool(t.get("plan_naming_ids")),
            "grounded_mlm_steps": t.get("grounded_mlm_steps", 0),
            "train_only": t.get("train_only") or None, "val_metrics": final.get("val")}
