"""Analyses of trained models, to check what the model card concludes about them. Each is a
module run as ``python3 -m uniter.diagnostics.NAME --help`` from ``models/`` (or with ``models/``
on ``PYTHONPATH``) on a checkpoint (``RUN/final.pt`` of uniter.pretrain, or one recovered from a
bundle by uniter.recover) and the work folder that ``scripts/train-shapes.sh`` fills.

Grounding, on validation captions (spans grounded as `uniter eval` counts them):

- ``readouts``: which tokens x regions read-out grounds words (OT plan, cosine, attention);
- ``plan_misses``: where the OT plan loses a noun that the cosine grounds;
- ``plan_sources``: grounding by candidate distillation targets, and their ideal plans;
- ``plan_targets``: the OT plan a perfect distillation of each target design would give;
- ``plan_capacity``: whether the plan has room for the objects a caption does not name;
- ``plan_anatomy``: where a missed noun's plan argmax lands, who takes its object's mass;
- ``plan_distractors``: whether the plan's misses land on objects of the noun's own shape.

Reading the image (locations, sizes, relations, colours, counts):

- ``location_probe``: the ITM head on minimal edits, with true, permuted and zeroed locations;
- ``mlm_probe``: masked colour, shape, size and relation words with the image, another image,
  zeroed features, permuted locations;
- ``location_study``: can MLM on size or relation words teach the encoder to read locations;
- ``masking``: which MLM masking teaches the encoder to read colours and shapes;
- ``count_failures``: where count captions lose image retrieval;
- ``aux_relation_ft``: ITM fine-tuning with relation MLM kept going beside it.

Training folders for negative-sampling studies: ``count_near_misses`` (near misses of count
captions only), ``relation_swaps`` (relation swaps as the only text negatives).
"""
