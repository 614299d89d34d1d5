"""Settings: the one place that reads the environment.

Everything else receives a `Settings` object, so a test can build one from a dict and a
bad value is caught once, at start-up, with the variable's name in the message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from imgburst import __version__
from imgburst.core.keys import ApiKey, digest, parse_keys

if TYPE_CHECKING:
    from imgburst.core.recipes import Recipe

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A variable of the environment holds a value imgburst can't use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class MySQLSettings:
    """The job store's MySQL binding, named as in the OSBA binding secret."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    ssl: bool
    ssl_ca: Path | None = None  # MYSQL_SSL_CA: a private CA; None: the system's (Azure's)

    def describe(self) -> str:
        """Where the store is, without the password."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}" + (
            " (TLS)" if self.ssl else ""
        )


@dataclass(frozen=True)
class ScalerSettings:
    """The burst scaler's policy and backend (`SCALER_*`)."""

    backend: str
    poll_s: float
    slots_per_worker: int
    target_per_slot: float
    max_burst: int
    max_step: int
    cooldown_s: float
    pending_timeout_s: float
    drain_timeout_s: float
    activation_s: float
    namespace: str
    pod_template: Path | None
    virtual_node_v2: bool
    install: str = "imgburst"  # names the Lease and labels the burst pods of this install
    owner: str = "imgburst-scaler"  # the Deployment that owns burst pods ("" = none)
    lease_s: int = 15  # leader election: a standby takes over within twice this
    backoff_s: float = 10.0  # after a burst failure; doubles per failure in a row
    backoff_max_s: float = 300.0
    burst_image: str = ""  # SCALER_BURST_IMAGE; empty: the base workers' Deployment's image
    worker_deployment: str = "imgburst-worker"  # the base workers, whose image bursts run
    pull_secret: str = ""  # SCALER_PULL_SECRET: the imagePullSecret burst pods carry (ACR)
    base_wait_s: float = 30.0  # at boot, no decision before a base worker registers (or this)


@dataclass(frozen=True)
class Settings:
    home: Path
    port: int
    api_url: str
    app_version: str
    redis_url: str | None
    mysql: MySQLSettings | None
    azure_connection_string: str | None = field(repr=False)
    azure_account_url: str | None
    azure_credential: str | None = field(repr=False)
    blob_container: str
    auth: bool
    api_keys: tuple[ApiKey, ...] = field(repr=False)
    url_secret: bytes | None = field(repr=False)
    url_ttl_s: int
    direct_output_urls: bool
    submit_rate: str | None
    max_upload_mb: int
    max_files: int
    max_file_mb: int
    max_waiting: int
    max_megapixels: float
    max_frames: int
    presets: Mapping[str, Recipe] = field(repr=False)
    worker_max_memory_mb: int
    worker_image_blocks: int
    keep_inputs: bool
    task_time_limit_s: int
    visibility_timeout_s: int
    task_max_retries: int
    max_attempts: int
    in_kubernetes: bool
    hostname: str
    scaler: ScalerSettings
    orphan_after_s: float = 600.0  # a burst worker with no scaler this long leaves when idle
    worker_stall_s: float = 30.0  # a consumer taking nothing this long while jobs wait restarts
    reconcile_grace_s: float = 60.0  # a batch not all sent this long after it was recorded
    input_grace_s: float = 3600.0  # an uploaded input with no job this long is removed
    quota_jobs: str | None = "50000/day"  # jobs a (non-admin) key may queue per window
    quota_mb: str | None = "50000/day"  # MB of inputs a key may store per window
    quota_in_flight: int = 2000  # streamed images a (non-admin) key may have unfinished; 0: off
    receive_idle_s: float = 600.0  # a streamed batch with no image this long is closed (cut)
    preview_rate: str | None = "60/minute"  # previews per (non-admin) key
    preview_timeout_s: int = 15  # a preview not rendered by then is a 504, and abandoned
    job_cpu_s: float = 60.0  # CPU seconds one job may use; past it, the job fails
    source_containers: tuple[str, ...] = ()  # containers a non-admin key's source batch may read
    fail_point: str | None = None  # tests only: SIGKILL the process there (FAIL_POINTS)

    @property
    def sqlite_path(self) -> Path:
        return self.home / "imgburst.sqlite3"

    @property
    def local_blob_root(self) -> Path:
        return self.home / "blobs"

    @property
    def uses_azure(self) -> bool:
        return bool(self.azure_connection_string or self.azure_account_url)

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the job store (contains the password: never log it)."""
        if self.mysql is None:
            return f"sqlite:///{self.sqlite_path}"
        from sqlalchemy.engine import URL

        return URL.create(
            "mysql+pymysql",
            username=self.mysql.user,
            password=self.mysql.password,
            host=self.mysql.host,
            port=self.mysql.port,
            database=self.mysql.database,
            query={"charset": "utf8mb4"},
        ).render_as_string(hide_password=False)

    def describe_store(self) -> str:
        return self.mysql.describe() if self.mysql else f"sqlite at {self.sqlite_path}"

    def describe_blobs(self) -> str:
        if self.azure_connection_string:
            return f"azure blob (connection string), container {self.blob_container}"
        if self.azure_account_url:
            return f"azure blob at {self.azure_account_url}, container {self.blob_container}"
        return f"local directory {self.local_blob_root}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; raise `SettingsError` naming the first bad one."""
        env = os.environ if environ is None else environ
        home = Path(env.get("IMGBURST_HOME", "./var")).expanduser().resolve()
        redis_url = env.get("REDIS_URL") or None
        if redis_url is not None:
            _url(env, "REDIS_URL", {"redis", "rediss", "unix"})
        account_url = env.get("AZURE_STORAGE_ACCOUNT_URL") or None
        if account_url is not None:
            _url(env, "AZURE_STORAGE_ACCOUNT_URL", {"http", "https"})
        connection_string = env.get("AZURE_STORAGE_CONNECTION_STRING") or None
        if connection_string is not None and "=" not in connection_string:
            raise SettingsError(
                "AZURE_STORAGE_CONNECTION_STRING",
                "is not a connection string (expected Key=Value;... pairs)",
            )
        visibility = _int(env, "IMGBURST_VISIBILITY_TIMEOUT_S", 3600, 1, 7 * 86400)
        time_limit = _int(env, "IMGBURST_TASK_TIME_LIMIT_S", 300, 1, 86400)
        if visibility <= time_limit:
            raise SettingsError(
                "IMGBURST_VISIBILITY_TIMEOUT_S",
                f"must be above IMGBURST_TASK_TIME_LIMIT_S ({time_limit}), or a running "
                "job would be handed to a second worker",
            )
        retries = _int(env, "IMGBURST_TASK_MAX_RETRIES", 5, 0, 100)
        attempts = _int(env, "IMGBURST_MAX_ATTEMPTS", retries + 3, 1, 1000)
        if attempts <= retries:
            raise SettingsError("IMGBURST_MAX_ATTEMPTS", f"must be above "
                                f"IMGBURST_TASK_MAX_RETRIES ({retries}): each retry is an attempt")
        port = _int(env, "IMGBURST_PORT", 8000, 1, 65535)
        api_url = env.get("IMGBURST_URL") or f"http://127.0.0.1:{port}"
        _url({"IMGBURST_URL": api_url}, "IMGBURST_URL", {"http", "https"})
        return cls(
            home=home,
            port=port,
            api_url=api_url.rstrip("/"),
            app_version=env.get("APP_VERSION") or __version__,
            redis_url=redis_url,
            mysql=_mysql(env),
            azure_connection_string=connection_string,
            azure_account_url=account_url,
            azure_credential=env.get("AZURE_STORAGE_CREDENTIAL") or None,
            blob_container=_container(env),
            auth=_bool(env, "IMGBURST_AUTH", True),
            api_keys=_keys(env),
            url_secret=_url_secret(env),
            url_ttl_s=_int(env, "IMGBURST_URL_TTL_S", 3600, 60, 7 * 86400),
            direct_output_urls=_choice(env, "IMGBURST_OUTPUT_URLS", ("direct", "api")) == "direct",
            submit_rate=_rate(env),
            max_upload_mb=_int(env, "IMGBURST_MAX_UPLOAD_MB", 512, 1, 1 << 20),
            max_files=_int(env, "IMGBURST_MAX_FILES", 1000, 1, 1_000_000),
            max_file_mb=_int(env, "IMGBURST_MAX_FILE_MB", 50, 1, 4096),
            max_waiting=_int(env, "IMGBURST_MAX_WAITING", 100_000, 0, 100_000_000),
            max_megapixels=_float(env, "IMGBURST_MAX_MEGAPIXELS", 50, 0.01, 1000),
            max_frames=_int(env, "IMGBURST_MAX_FRAMES", 100, 1, 100_000),
            presets=_presets(env),
            worker_max_memory_mb=_int(env, "IMGBURST_WORKER_MAX_MEMORY_MB", 800, 0, 1 << 20),
            worker_image_blocks=_int(env, "IMGBURST_WORKER_IMAGE_BLOCKS", 4, 0, 1024),
            keep_inputs=_bool(env, "IMGBURST_KEEP_INPUTS", False),
            task_time_limit_s=time_limit,
            visibility_timeout_s=visibility,
            task_max_retries=retries,
            max_attempts=attempts,
            in_kubernetes=bool(env.get("KUBERNETES_SERVICE_HOST")),
            hostname=env.get("HOSTNAME", ""),
            scaler=_scaler(env),
            orphan_after_s=_float(env, "IMGBURST_ORPHAN_AFTER_S", 600.0, 0, 7 * 86400),
            worker_stall_s=_float(env, "IMGBURST_WORKER_STALL_S", 30.0, 0, 86400),
            reconcile_grace_s=_float(env, "IMGBURST_RECONCILE_GRACE_S", 60.0, 1, 86400),
            input_grace_s=_float(env, "IMGBURST_INPUT_GRACE_S", 3600.0, 1, 30 * 86400),
            quota_jobs=_rate(env, "IMGBURST_QUOTA_JOBS", "50000/day"),
            quota_mb=_rate(env, "IMGBURST_QUOTA_MB", "50000/day"),
            quota_in_flight=_int(env, "IMGBURST_QUOTA_IN_FLIGHT", 2000, 0, 10_000_000),
            receive_idle_s=_float(env, "IMGBURST_RECEIVE_IDLE_S", 600.0, 1, 7 * 86400),
            preview_rate=_rate(env, "IMGBURST_PREVIEW_RATE", "60/minute"),
            preview_timeout_s=_int(env, "IMGBURST_PREVIEW_TIMEOUT_S", 15, 1, 120),
            job_cpu_s=_float(env, "IMGBURST_JOB_CPU_S", 60.0, 0, 86400),
            source_containers=_source_containers(env),
            fail_point=_fail_point(env),
        )


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float,
            kind: type = float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(name, f"must be {what}, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(name, f"must be {low:g}..{high:g}, got {value:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return int(_number(env, name, default, low, high, int))


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _number(env, name, default, low, high)


def _keys(env: Mapping[str, str]) -> tuple[ApiKey, ...]:
    keys: list[ApiKey] = []
    for name, admin in (("IMGBURST_API_KEYS", False), ("IMGBURST_ADMIN_KEYS", True)):
        try:
            keys += parse_keys(env.get(name, ""), admin=admin)
        except ValueError as exc:
            raise SettingsError(name, str(exc)) from None
    key_file = env.get("IMGBURST_ADMIN_KEY_FILE") or None
    if key_file is not None:  # a first-run key (docker compose's `keys` service makes it)
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip()
            keys += parse_keys(f"local=sha256:{digest(key)}", admin=True)
        except (OSError, ValueError) as exc:
            raise SettingsError("IMGBURST_ADMIN_KEY_FILE", f"can't read an admin key from "
                                f"{key_file} ({type(exc).__name__}): make one with "
                                f"`imgburst keygen --file {key_file}`") from None
    return tuple(keys)


def _url_secret(env: Mapping[str, str]) -> bytes | None:
    raw = env.get("IMGBURST_URL_SECRET") or None
    if raw is not None and len(raw) < 32:
        raise SettingsError("IMGBURST_URL_SECRET", "must have at least 32 characters "
                            "(`imgburst keygen` makes one)")
    return raw.encode() if raw else None


CONTAINER_RE = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")  # Azure's rule
RATE_RE = re.compile(r"^\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day)s?$")


def _rate(env: Mapping[str, str], name: str = "IMGBURST_SUBMIT_RATE",
          default: str = "10/second") -> str | None:
    """A count per window, e.g. `10/second`, `300/minute`, `50000/day`; off = none.
    Checked here by pattern: the `limits` library (which enforces it) is imported only by
    the API, not by every worker at start."""
    raw = env.get(name, default).strip()
    if raw.lower() in FALSE_WORDS:
        return None
    if not RATE_RE.match(raw.lower()):
        raise SettingsError(name, f"must look like 10/second, 300/minute or 50000/day (or "
                            f"off), got {raw!r}")
    return raw


class BuiltinPresets(Mapping[str, "Recipe"]):
    """The built-in presets, parsed on first use: a command that never reads a recipe
    (`imgburst submit`, which the workers wait on) starts without the recipe code."""

    @cached_property
    def _loaded(self) -> Mapping[str, Recipe]:
        from imgburst.core.recipes import load_presets

        return load_presets(None)

    def __getitem__(self, name: str) -> Recipe:
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded)

    def __len__(self) -> int:
        return len(self._loaded)


def _presets(env: Mapping[str, str]) -> Mapping[str, Recipe]:
    """A presets file is read and checked now (a bad one stops the start); the built-in
    ones, which are always good, when first used."""
    path = env.get("IMGBURST_PRESETS_FILE") or None
    if path is None:
        return BuiltinPresets()
    from imgburst.core.recipes import PresetError, load_presets

    try:
        return load_presets(Path(path))
    except PresetError as exc:
        raise SettingsError("IMGBURST_PRESETS_FILE", str(exc)) from None


def _dns_name(env: Mapping[str, str], name: str, default: str, empty: bool = False) -> str:
    """A Kubernetes object's name (a DNS subdomain), or empty where that means none."""
    value = env.get(name, default).strip()
    if (value or not empty) and not DNS_SUBDOMAIN.fullmatch(value):
        raise SettingsError(name, f"must name a Kubernetes object (a DNS subdomain: a-z, 0-9, "
                            f"'-', '.'), got {value!r}")
    return value


def _scaler(env: Mapping[str, str]) -> ScalerSettings:
    backend = env.get("SCALER_BACKEND", "local")
    if backend not in ("local", "kubernetes"):
        raise SettingsError("SCALER_BACKEND", f"must be local or kubernetes, got {backend!r}")
    template = env.get("SCALER_POD_TEMPLATE")
    install = env.get("SCALER_INSTALL", "imgburst")
    if not DNS_LABEL.fullmatch(install) or len(install) > 40:
        raise SettingsError("SCALER_INSTALL", "must be a DNS label of at most 40 characters "
                            f"(a-z, 0-9, '-'; it names the Lease and a pod label), got {install!r}")
    owner = env.get("SCALER_OWNER", "imgburst-scaler")
    if owner and not DNS_SUBDOMAIN.fullmatch(owner):
        raise SettingsError("SCALER_OWNER", "must name the scaler's Deployment (a DNS "
                            f"subdomain), or be empty for no owner, got {owner!r}")
    backoff = _float(env, "SCALER_BACKOFF_S", 10.0, 0.1, 3600)
    backoff_max = _float(env, "SCALER_BACKOFF_MAX_S", 300.0, 0.1, 86400)
    if backoff_max < backoff:
        raise SettingsError("SCALER_BACKOFF_MAX_S", f"must be at least SCALER_BACKOFF_S "
                            f"({backoff:g}), got {backoff_max:g}")
    return ScalerSettings(
        backend=backend,
        poll_s=_float(env, "SCALER_POLL_S", 1.0, 0.05, 60),
        slots_per_worker=_int(env, "SCALER_SLOTS_PER_WORKER", 1, 1, 64),
        target_per_slot=_float(env, "SCALER_TARGET_PER_WORKER", 1.0, 0.1, 1000),
        max_burst=_int(env, "SCALER_MAX_BURST", 4, 0, 1000),
        max_step=_int(env, "SCALER_MAX_STEP", 4, 1, 1000),
        cooldown_s=_float(env, "SCALER_COOLDOWN_S", 60.0, 0, 86400),
        pending_timeout_s=_float(env, "SCALER_PENDING_TIMEOUT_S", 180.0, 1, 86400),
        drain_timeout_s=_float(env, "SCALER_DRAIN_TIMEOUT_S", 330.0, 1, 86400),
        activation_s=_float(env, "SCALER_ACTIVATION_S", 2.0, 0, 3600),
        namespace=env.get("SCALER_NAMESPACE", "imgburst"),
        pod_template=Path(template) if template else None,
        virtual_node_v2=_bool(env, "SCALER_VIRTUAL_NODE_V2", False),
        burst_image=env.get("SCALER_BURST_IMAGE", "").strip(),
        worker_deployment=_dns_name(env, "SCALER_WORKER_DEPLOYMENT", "imgburst-worker"),
        pull_secret=_dns_name(env, "SCALER_PULL_SECRET", "", empty=True),
        install=install,
        owner=owner,
        lease_s=_int(env, "SCALER_LEASE_S", 15, 2, 300),  # a Lease counts whole seconds
        backoff_s=backoff,
        backoff_max_s=backoff_max,
        base_wait_s=_float(env, "SCALER_BASE_WAIT_S", 30.0, 0, 3600),
    )


# Where a test may have the API die as an OOM kill would (SIGKILL: no cleanup runs).
FAIL_POINTS = ("after-inputs", "after-record", "mid-enqueue", "after-enqueue",
               "image-after-record")


def _fail_point(env: Mapping[str, str]) -> str | None:
    raw = env.get("IMGBURST_FAIL_POINT") or None
    if raw is not None and raw not in FAIL_POINTS:
        raise SettingsError("IMGBURST_FAIL_POINT", f"must be one of {', '.join(FAIL_POINTS)} "
                            f"(for tests only), got {raw!r}")
    return raw


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first is the default)."""
    value = env.get(name, choices[0]).strip().lower() or choices[0]
    if value not in choices:
        raise SettingsError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(name, f"must be true or false, got {raw!r}")


def _url(env: Mapping[str, str], name: str, schemes: set[str]) -> None:
    scheme = urlsplit(env[name]).scheme
    if scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in sorted(schemes))
        raise SettingsError(name, f"unknown scheme {scheme + '://' if scheme else '(none)'}; "
                                  f"use one of {allowed}")


def _source_containers(env: Mapping[str, str]) -> tuple[str, ...]:
    """IMGBURST_SOURCE_CONTAINERS: containers a non-admin key's source batch may read,
    comma-separated (empty: none). Never the service's own: it holds every key's uploads."""
    name = "IMGBURST_SOURCE_CONTAINERS"
    names = tuple(n.strip() for n in env.get(name, "").split(",") if n.strip())
    for container in names:
        if not CONTAINER_RE.match(container):
            raise SettingsError(name, f"{container!r} is not a container name (3-63 lowercase "
                                "letters, digits, single dashes)")
        if container == _container(env):
            raise SettingsError(name, f"must not list the service's own container "
                                f"({container}): it holds every key's uploads and outputs")
    return names


def _container(env: Mapping[str, str]) -> str:
    name = env.get("IMGBURST_BLOB_CONTAINER", "imgburst")
    if not (3 <= len(name) <= 63 and name.replace("-", "").isalnum() and name.islower()):
        raise SettingsError(
            "IMGBURST_BLOB_CONTAINER",
            "must be 3-63 lowercase letters, digits or dashes (an Azure container name)",
        )
    return name


def _mysql(env: Mapping[str, str]) -> MySQLSettings | None:
    host = env.get("MYSQL_HOST")
    if not host:
        return None
    missing = [n for n in ("MYSQL_USER", "MYSQL_DATABASE") if not env.get(n)]
    if missing:
        raise SettingsError(missing[0], "must be set when MYSQL_HOST is set")
    return MySQLSettings(
        host=host,
        port=_int(env, "MYSQL_PORT", 3306, 1, 65535),
        user=env["MYSQL_USER"],
        password=env.get("MYSQL_PASSWORD", ""),
        database=env["MYSQL_DATABASE"],
        ssl=_bool(env, "MYSQL_SSL", False),
        ssl_ca=_existing_file(env, "MYSQL_SSL_CA"),
    )


def _existing_file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name) or None
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise SettingsError(name, f"names no file: {raw!r}")
    return path
