"""Qt-free inference: model cards and the ONNX Runtime engine."""
