"""The world model as a service: msgpack over length-prefixed TCP frames.

    codec     the wire format (protocol in its docstring), shared by both sides
    server    ``crcm serve CKPT``: asyncio server around a :class:`crcm_robotics.runtime.WorldModel`
    client    :class:`WorldModelClient` (sync sockets; imports neither torch nor the model)
    loadtest  ``python -m crcm_robotics.serve.loadtest``: C clients x R requests, one JSON line

Importing this package imports nothing heavy; import the submodule you need.
"""
