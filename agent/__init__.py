"""The robot-side agent: runs next to a Vector (e.g. on a Raspberry Pi beside wire-pod), talks to the robot
through the SDK (``anki_vector``) and to the VectorMLOps server through its REST API.

Deliberately light: httpx, onnxruntime, numpy, pillow and the SDK only (no torch, no Django).
"""

__version__ = "0.1.0"
