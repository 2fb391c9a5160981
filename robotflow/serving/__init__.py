"""The Protocol v1 inference server behind `robotflow serve` (docs/serving.md).

- `server`: the FastAPI/uvicorn server. The wire format and the client are `robotflow.wire`.
- `run`: `serve(ServeOptions)`, what `robotflow serve` runs (imports the server only when it starts).
"""
