"""No secret in any log line or answer.

A live stack (API, worker, scaler: real processes at INFO, on MariaDB and Azurite) runs
the service's flows with known secrets: the MySQL password, the storage account key, a
user key, an admin key and the URL-signing secret. The flows include the failing ones
(a wrong key, bad input, a poison image, the job store refusing the password, a broker
that is not there). Then every captured log and every answer body is searched for each
secret, as it is and in the encodings it could leak in; the logs for a dashboard login
code too (its redemption is the one answer that carries a key, to the browser)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import requests
from conftest import AZURITE_KEY, free_port, http_ok, wait_until

from imgburst.core.keys import digest, generate_key
from imgburst.core.synthetic import photo_bytes

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

USER_KEY, ADMIN_KEY = generate_key(), generate_key()
URL_SECRET = "url-secret-" + generate_key()


def forms(secret: str) -> set[str]:
    """The secret and the ways it might be written down (quoted, base64)."""
    return {secret, urllib.parse.quote(secret), urllib.parse.quote_plus(secret),
            base64.b64encode(secret.encode()).decode()} - {""}


def test_no_secret_in_any_log_or_answer(base_env, mysql_env, azurite, tmp_path,
                                        start_service, start_worker):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env | mysql_env | {
        "AZURE_STORAGE_CONNECTION_STRING": azurite, "IMGBURST_BLOB_CONTAINER": "secrets-test",
        "IMGBURST_PORT": str(port), "IMGBURST_AUTH": "on",
        "IMGBURST_API_KEYS": f"alice=sha256:{digest(USER_KEY)}",
        "IMGBURST_ADMIN_KEYS": f"ops={ADMIN_KEY}", "IMGBURST_URL_SECRET": URL_SECRET,
        "IMGBURST_SUBMIT_RATE": "3/minute"}
    secrets = {"MYSQL_PASSWORD": mysql_env["MYSQL_PASSWORD"], "account key": AZURITE_KEY,
               "user key": USER_KEY, "admin key": ADMIN_KEY, "URL secret": URL_SECRET}
    answers: list[str] = []

    def call(method: str, path: str, key: str | None = USER_KEY, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {}) | ({"Authorization": f"Bearer {key}"} if key else {})
        response = requests.request(method, url + path, headers=headers, timeout=60, **kwargs)
        answers.append(f"{method} {path} -> {response.status_code} {response.headers} "
                       + (response.text if "json" in response.headers.get("Content-Type", "")
                          or "text" in response.headers.get("Content-Type", "") else ""))
        return response

    start_service(env, "api", "--host", "127.0.0.1")
    start_service(env, "scaler")
    worker = start_worker(env, concurrency=1)
    wait_until(lambda: http_ok(f"{url}/readyz"), 60, "the API")

    photo = photo_bytes(1, 800, 600)
    batch = call("POST", "/api/v1/batches", files=[("files", ("a.jpg", photo)),
                                                   ("files", ("bad.jpg", b"\xff\xd8\xffnot"))])
    assert batch.status_code == 202
    call("POST", "/api/v1/batches", key=None, files=[("files", ("a.jpg", photo))])  # 401
    call("GET", "/api/v1/batches", key="ib_" + "x" * 40)  # a wrong key: 401
    call("GET", "/api/v1/batches", headers={"Authorization": f"Basic {ADMIN_KEY}"}, key=None)
    call("POST", "/api/v1/batches", data={"recipe": "{"}, files=[("files", ("a.jpg", photo))])
    call("POST", "/api/v1/batches", json={"source": {"container": "missing-container"}})
    call("POST", "/api/v1/batches", files=[("files", ("a.jpg", photo))])
    call("POST", "/api/v1/batches", files=[("files", ("a.jpg", photo))])  # 429: over the rate
    call("PUT", "/api/v1/assets/logo.png", data=photo_bytes(2, 40, 40, "PNG"))  # 403
    call("PUT", "/api/v1/assets/logo.png", key=ADMIN_KEY, data=photo_bytes(2, 40, 40, "PNG"))
    call("POST", "/api/v1/preview", files=[("file", ("a.jpg", photo))],
         data={"recipe": json.dumps({"outputs": [{"name": "w", "format": "webp", "ops": [
             {"op": "watermark", "image": "logo.png"}]}]})})
    call("POST", "/api/v1/demo/spike", key=ADMIN_KEY, json={"images": 3, "size": "1MP"})
    batch_id = batch.json()["id"]
    wait_until(lambda: call("GET", f"/api/v1/batches/{batch_id}").json()["status"]
               in ("succeeded", "partial", "failed"), 90, "the batch to finish")
    jobs = call("GET", f"/api/v1/batches/{batch_id}/jobs").json()["items"]
    for job in jobs:
        call("GET", f"/api/v1/jobs/{job['id']}", key=ADMIN_KEY)
        for output in job["outputs"]:
            assert requests.get(output["url"], timeout=10).status_code == 200
    call("GET", "/api/v1/stats")
    call("GET", "/api/v1/stats", key=ADMIN_KEY)
    call("GET", "/metrics", key=None)
    call("GET", "/", key=None)
    code = call("POST", "/api/v1/login-links").json()["code"]  # a dashboard link
    redeemed = requests.post(f"{url}/api/v1/login", json={"code": code}, timeout=10)
    assert redeemed.json() == {"key": USER_KEY}  # the one answer meant to carry a key
    assert call("POST", "/api/v1/login", key=None, json={"code": code}).status_code == 404

    wrong_password = env | {"MYSQL_PASSWORD": "not-" + mysql_env["MYSQL_PASSWORD"]}
    refused = subprocess.run([sys.executable, "-m", "imgburst.cli", "mysql-check"],
                             env=wrong_password, capture_output=True, text=True, timeout=60)
    bad_store = subprocess.run([sys.executable, "-m", "imgburst.cli", "api", "--port",
                                str(free_port())], env=wrong_password, capture_output=True,
                               text=True, timeout=60)  # refused by MySQL at start
    check = subprocess.run([sys.executable, "-m", "imgburst.cli", "mysql-check"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr

    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    logs |= {"worker (captured)": worker.output(), "answers": "\n".join(answers),
             "mysql-check (wrong password)": refused.stdout + refused.stderr,
             "api (bad store)": bad_store.stdout + bad_store.stderr,
             "mysql-check": check.stdout + check.stderr}
    assert len(logs) >= 7 and "job " in logs["worker (captured)"]  # the flows did run
    assert bad_store.returncode == 2 and "Access denied" in logs["api (bad store)"]
    assert "Traceback" not in logs["api (bad store)"]  # a clear message, not a stack
    assert "Invalid API key" in logs["answers"] and "Rate limit" in logs["answers"]
    leaks = [(what, where) for what, secret in secrets.items() for where, text in logs.items()
             if any(form in text for form in forms(secret))]
    assert not leaks, f"secrets found in logs or answers: {leaks}"
    assert not [where for where, text in logs.items() if where != "answers" and code in text]
    Path(tmp_path / "answers.txt").write_text(io.StringIO(logs["answers"]).getvalue())
