#!/usr/bin/env bash
# stage.sh NAME STEPS [FLAGS...]: the default's ITM fine-tuning recipe (train-shapes.sh: 8 hard-negative
# candidates, plan distillation 2 with absorbers, lr 3e-4, warm-up 200, linear decay) run for STEPS more
# steps from the default's model (.cache/rel/head-C21: the continued fine-tuning with its MLM head re-fit;
# recovered from bundles/shapes-uniter when missing), FLAGS added (--plan-argmax D ...).
exec env FROM=head-C21 "$(dirname "$0")/../continued-finetuning-2026-11-26/cont.sh" "$@" --ckpt-every 500
