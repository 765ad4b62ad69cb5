"""A virtual Anki Vector: a gRPC server speaking the SDK's own protocol, plus a synthetic scene generator."""


def __getattr__(name):
    # Lazy, so `vectorsim.scenes` stays importable without grpc and the SDK.
    if name == "VirtualVector":
        from vectorsim.server import VirtualVector

        return VirtualVector
    raise AttributeError(name)
