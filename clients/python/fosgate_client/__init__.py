"""Python client for the fosgate gRPC service (speaks only the protocol in protos/fosgate/v1)."""
