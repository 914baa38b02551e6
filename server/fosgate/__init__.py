"""fosgate: train and run a lab's own U-Net to segment and count c-fos positive cells in whole slides.

Layout: ``fosgate.core`` is the library (numpy in, numpy out, no gRPC); ``fosgate.store`` keeps
slides, labels, models, jobs and artifacts (SQLite + a data directory); ``fosgate.jobs`` runs long
work in the background; ``fosgate.rpc`` is the thin gRPC layer; ``fosgate_client.cli`` (the light client) is the command line.
Importing this package is cheap: TensorFlow is imported only where a model is built or run.
"""

__version__ = "0.1.0"
