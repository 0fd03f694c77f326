"""ONNX graph helpers: loading (ONNX, Paddle), preparation passes, producer/consumer queries."""
