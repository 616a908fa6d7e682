"""Who may associate with the DICOM node, and where its results go: the peers file.

An administrator lists the scanners and PACS that may send images (each calling AE title with the
addresses it may come from) and the destinations every result is sent to::

    peers:                          # an association from any other AE title or address is rejected
      - ae_title: US-ROOM-3
        hosts: [10.1.2.30]          # IP addresses or networks (10.1.2.0/24); no hosts: any address
      - ae_title: PACS
        hosts: [10.1.0.5]
    destinations:                   # each receives every SR, SEG (and Secondary Capture)
      - {host: 10.1.0.5, port: 104, ae_title: PACS}
      - {host: 10.1.0.9, port: 2762, ae_title: ARCHIVE, tls: true}

A calling AE title is only a name the sender chooses; the addresses (or mutual TLS, where only a
certificate from the node's CA is admitted) are what makes the list hold. Host names are not
accepted in ``hosts``: the node compares the address the connection comes from, and a name would be
resolved once and go stale. Every problem in the file is one line naming the file and the entry.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thyronet.errors import ThyronetError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_ae_title(value: Any, where: str) -> str:
    """An AE title as DICOM allows it (1-16 characters of the default repertoire, no backslash, not
    only spaces; pydicom's AE validator), stripped."""
    from pydicom.valuerep import VALIDATORS

    if not isinstance(value, str) or not value.strip() or "\\" in value:
        raise ThyronetError(f"{where}: AE title {value!r} is not valid (1 to 16 characters, no backslash)")
    valid, reason = VALIDATORS["AE"]("AE", value)
    if not valid:
        raise ThyronetError(f"{where}: AE title {value!r} is not valid ({reason.split('. Please see')[0]})")
    return value.strip()


@dataclass(frozen=True)
class Destination:
    """A Storage SCP that receives the node's results, over TLS when ``tls``."""

    host: str
    port: int
    ae_title: str
    tls: bool = False

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``HOST:PORT:AET`` (the ``--send-to`` option)."""
        host, port, title = (text.rsplit(":", 2) + ["", ""])[:3]
        if not host or not port.isdigit() or not title:
            raise ThyronetError(f"--send-to {text!r}: expected HOST:PORT:AET, e.g. 127.0.0.1:4242:ORTHANC")
        return cls(host, int(port), check_ae_title(title, "--send-to"))

    @property
    def folder_name(self) -> str:
        """The outbox subfolder of the results waiting for this destination (from the node's own
        configuration, never from the wire; characters a file name should not hold become '_')."""
        return re.sub(r"[^A-Za-z0-9@._-]", "_", f"{self.ae_title}@{self.host}_{self.port}")

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}{' (TLS)' if self.tls else ''}"


@dataclass(frozen=True)
class Peer:
    """A calling AE title allowed to associate, from these networks (any address when empty)."""

    ae_title: str
    hosts: tuple[Network, ...] = ()

    def admits(self, address: str) -> bool:
        if not self.hosts:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.hosts)


@dataclass(frozen=True)
class Peers:
    """The allow-list and the destinations of one peers file."""

    peers: tuple[Peer, ...]
    destinations: tuple[Destination, ...] = ()

    def refusal(self, ae_title: str, address: str) -> str | None:
        """Why an association from ``ae_title`` at ``address`` is rejected, or None to accept it."""
        listed = [peer for peer in self.peers if peer.ae_title == ae_title.strip()]
        if not listed:
            return f"calling AE title {ae_title.strip()!r} is not in the peers file"
        if not any(peer.admits(address) for peer in listed):
            return f"calling AE title {ae_title.strip()!r} is not allowed from {address}"
        return None


def _entries(data: dict, key: str, path: Path) -> list[dict]:
    entries = data.get(key) or []
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ThyronetError(f"{path}: '{key}' must be a list of entries (mappings)")
    return entries


def _unknown_keys(entry: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ThyronetError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (expected {', '.join(sorted(allowed))})")


def _peer(entry: dict, where: str) -> Peer:
    _unknown_keys(entry, {"ae_title", "hosts"}, where)
    hosts = entry.get("hosts") or []
    if not isinstance(hosts, list):
        raise ThyronetError(f"{where}: 'hosts' must be a list of IP addresses or networks")
    networks = []
    for host in hosts:
        try:
            networks.append(ipaddress.ip_network(str(host), strict=False))
        except ValueError:
            raise ThyronetError(f"{where}: {host!r} is not an IP address or network (host names are not accepted: "
                                "the node checks the address a connection comes from)") from None
    return Peer(check_ae_title(entry.get("ae_title"), where), tuple(networks))


def _destination(entry: dict, where: str) -> Destination:
    _unknown_keys(entry, {"host", "port", "ae_title", "tls"}, where)
    host, port, tls = entry.get("host"), entry.get("port"), entry.get("tls", False)
    if not isinstance(host, str) or not host:
        raise ThyronetError(f"{where}: 'host' is missing")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ThyronetError(f"{where}: 'port' must be a number from 1 to 65535 (got {port!r})")
    if not isinstance(tls, bool):
        raise ThyronetError(f"{where}: 'tls' must be true or false (got {tls!r})")
    return Destination(host, port, check_ae_title(entry.get("ae_title"), where), tls)


def load_peers(path: str | Path) -> Peers:
    """Read a peers file (YAML; the module's docstring shows one)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ThyronetError(f"{path}: cannot read the peers file ({error.strerror or error})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ThyronetError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ThyronetError(f"{path}: expected a mapping with 'peers' and 'destinations'")
    _unknown_keys(data, {"peers", "destinations"}, str(path))
    peers = tuple(_peer(entry, f"{path}: peers[{index}]") for index, entry in enumerate(_entries(data, "peers", path)))
    if not peers:
        raise ThyronetError(f"{path}: 'peers' lists nobody: the node would reject every association")
    destinations = tuple(_destination(entry, f"{path}: destinations[{index}]")
                         for index, entry in enumerate(_entries(data, "destinations", path)))
    return Peers(peers, destinations)
