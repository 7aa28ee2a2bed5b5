"""Export to ONNX with a Loupe card and the post-export ONNX Runtime check."""
