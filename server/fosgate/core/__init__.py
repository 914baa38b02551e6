"""The fosgate library core: slides, tiling, the U-Net, training, prediction, instances, exports,
metrics. Pure Python + numpy; knows nothing of gRPC or of the store."""
