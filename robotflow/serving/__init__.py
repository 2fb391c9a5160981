"""Serving policies over the network: Positronic's Protocol v1 (wire format, server; see docs/serving.md).

- `protocol`: msgpack + numpy wire format, observation keys, action (de)coding. No torch import.
- `server`: the FastAPI/uvicorn server behind `robotflow serve`.
- `run`: `serve(ServeOptions)`, what `robotflow serve` runs (imports the server only when it starts).
- `client`: a synchronous Protocol v1 client (what `policy.remote` uses).
"""
