"""Reference UNITER in PyTorch: model, checkpoint loading, optimal transport, ONNX export,
pre-training, the region detector, and the command-line tools around them.

Every tool is a module run with ``python3 -m uniter.NAME --help`` from ``models/`` (or with
``models/`` on ``PYTHONPATH``): ``export``, ``recover``, ``pretrain``, ``train_detector``,
``make_vocab``, ``shapes_bundle``, ``bench``, ``adopt``, the test fixtures' generators under
``uniter.fixtures`` and the analyses of trained models under ``uniter.diagnostics``.
"""
