"""Constants the serve tests share with their fixtures (conftest.py)."""

MODEL_NAME = "tiny-coder"
CONTEXT = 256  # tokens per sequence: small, so context-length errors are cheap to provoke
BATCH = 4  # cache rows: concurrent requests beyond this wait for a free row
