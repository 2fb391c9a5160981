"""Positronic's Protocol v1 on the wire (docs/serving.md): what a client and a server of it share.

- `protocol`: msgpack + numpy wire format, observation keys, action (de)coding. No torch import.
- `client`: a synchronous Protocol v1 client (what `policy.remote` uses).

The server (`robotflow serve`) is `robotflow.serving`.
"""
