"""Generated gRPC stubs of protos/fosgate/v1 (scripts/gen_protos.py); shared by the server and every client."""
