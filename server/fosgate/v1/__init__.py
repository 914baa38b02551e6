"""The generated gRPC stubs live in the client distribution, ``fosgate_client.v1`` (one copy for the
server and every client). ``fosgate.v1.fosgate_pb2`` and ``fosgate.v1.fosgate_pb2_grpc`` are the same
module objects under their older names, so server code may import either."""

import sys

from fosgate_client.v1 import fosgate_pb2, fosgate_pb2_grpc

sys.modules[__name__ + ".fosgate_pb2"] = fosgate_pb2
sys.modules[__name__ + ".fosgate_pb2_grpc"] = fosgate_pb2_grpc

__all__ = ["fosgate_pb2", "fosgate_pb2_grpc"]
