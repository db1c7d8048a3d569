from pathlib import Path


def summarise(count: int | None, folder: Path | None) -> dict:
    return {"report": {"n": [count]}, "summary": "ok"}
