"""Reference UNITER in PyTorch: model, checkpoint loading, optimal transport, ONNX export."""
