"""A stand-in for Microsoft Entra ID's token endpoint, over TLS on loopback, and nothing else.

azure-identity refuses an authority that is not ``https://`` (``normalize_authority``), so
this serves HTTPS with a freshly made self-signed certificate for ``127.0.0.1``; a
gateway process pointed at it gets ``AZURE_AUTHORITY_HOST=<url>`` and
``SSL_CERT_FILE=<cert_path>`` (the only certificate it then trusts).

``POST /{tenant}/oauth2/v2.0/token`` takes the client-credentials grant
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow)
and answers ``{"access_token", "expires_in", "token_type"}`` when the tenant, client id,
secret and scope are the expected ones; anything else is a 400/404 counted in
:attr:`rejected`.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.threaded_server import ThreadedServer


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate (and its key) for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "entra-cert.pem", directory / "entra-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class EntraStandIn(ThreadedServer):
    scheme = "https"

    def __init__(self, directory: Path, tenant: str, client_id: str, client_secret: str) -> None:
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.cert_path, self._key_path = self_signed(directory)
        self.tokens_issued: list[str] = []
        super().__init__()

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self._key_path)
        return context

    def _reject(self, status: int, why: str) -> web.Response:
        self.rejected.append(why)
        return web.json_response({"error": "invalid_request", "error_description": why}, status=status)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method != "POST" or request.path != f"/{self.tenant}/oauth2/v2.0/token":
            return self._reject(404, f"{request.method} {request.path}")
        form = await request.post()
        expected = {"grant_type": "client_credentials", "client_id": self.client_id,
                    "client_secret": self.client_secret, "scope": "https://cognitiveservices.azure.com/.default"}
        for field, value in expected.items():
            if form.get(field) != value:
                return self._reject(400, field)
        token = f"entra-token-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                  "access_token": token})
