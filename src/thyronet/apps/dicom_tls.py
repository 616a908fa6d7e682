"""TLS for the DICOM node's associations (DICOM PS3.15's TLS profiles; BCP 195: TLS 1.2 or newer).

pynetdicom takes an :class:`ssl.SSLContext` for the associations it accepts and for those it
requests; this module builds both from the PEM files an administrator names. With a CA file, the
node is mutual TLS: a sender must present a certificate that CA signed, and a destination's
certificate is checked against it (else against the system's CAs).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from thyronet.errors import ThyronetError


@dataclass(frozen=True)
class TlsFiles:
    """The node's certificate and key, and the CA its peers' certificates must come from."""

    certificate: Path
    key: Path
    ca: Path | None = None

    def __post_init__(self) -> None:
        for path in (self.certificate, self.key, self.ca):
            if path is not None and not Path(path).is_file():
                raise ThyronetError(f"{path}: no such file (TLS certificate, key or CA)")

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(purpose, cafile=str(self.ca) if self.ca else None)
        except (ssl.SSLError, OSError) as error:
            raise ThyronetError(f"{self.ca}: not a readable PEM CA certificate ({error})") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.certificate), str(self.key))
        except (ssl.SSLError, OSError) as error:
            raise ThyronetError(f"{self.certificate}: the certificate and {self.key} do not load as a PEM pair "
                                f"({error})") from None
        return context

    def server(self) -> ssl.SSLContext:
        """For associations the node accepts; with a CA, a sender without a certificate it signed is refused."""
        context = self._context(ssl.Purpose.CLIENT_AUTH)
        if self.ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client(self) -> ssl.SSLContext:
        """For associations the node requests (its results to a destination): the destination's
        certificate is checked, and the node shows its own."""
        return self._context(ssl.Purpose.SERVER_AUTH)


def client_context(files: TlsFiles | None) -> ssl.SSLContext:
    """For the node's associations to a TLS destination: its own files when it has them, else the
    system's CAs and no client certificate."""
    if files is not None:
        return files.client()
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
