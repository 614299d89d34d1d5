"""Small helpers shared by the tests (submitting through the Flask test client, waiting)."""

from __future__ import annotations

import io
import json
import time
from typing import Any

from flask.testing import FlaskClient

FINAL = {"succeeded", "failed", "partial", "cancelled"}


def submit(client: FlaskClient, files: list[tuple[str, bytes]],
           recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"files": [(io.BytesIO(body), name) for name, body in files]}
    if recipe is not None:
        data["recipe"] = json.dumps(recipe)
    response = client.post("/api/v1/batches", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    assert response.headers["Location"] == f"/api/v1/batches/{response.get_json()['id']}"
    return response.get_json()


def download(client: FlaskClient, url: str) -> bytes:
    """An output's bytes by its signed URL: this API's route, or a SAS URL on Azure."""
    if url.startswith(("http://", "https://")):
        import requests

        response = requests.get(url, timeout=30)
        assert response.status_code == 200, response.text
        return response.content
    answer = client.get(url)
    assert answer.status_code == 200, answer.get_json()
    return answer.data


def wait_batch(client: FlaskClient, batch_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.get(f"/api/v1/batches/{batch_id}").get_json()
        if batch["status"] in FINAL:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} not done after {timeout} s: {batch}")


def jobs_of(client: FlaskClient, batch_id: str) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/batches/{batch_id}/jobs?limit=1000").get_json()["items"]


def fit(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """What `resize mode=fit` (no enlarge) must produce."""
    scale = min(box_w / width, box_h / height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))
