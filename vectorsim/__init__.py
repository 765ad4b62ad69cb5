"""A virtual Anki Vector: a gRPC server speaking the SDK's own protocol, plus a synthetic scene generator."""
