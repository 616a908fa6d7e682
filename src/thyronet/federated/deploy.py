"""Flower's Deployment Engine with thyronet's apps: the command lines of a SuperLink (the
coordinating site), a SuperNode (one per hospital, pointing at its own data), the submission of
a federation, and the keys that authenticate a SuperNode.

TLS is on unless ``insecure`` is asked for: the SuperLink presents a certificate signed by a CA
that every site trusts (``--root-certificates``). With node authentication on, the SuperLink
admits only SuperNodes whose public key the coordinating site registered
(``flwr supernode register``), and each SuperNode signs its requests with its private key."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from thyronet.errors import DataError, ThyronetError
from thyronet.runs.config import RunConfig, dump_config

FLEET_PORT, SERVERAPPIO_PORT, CONTROL_PORT, CLIENTAPPIO_PORT = 9092, 9091, 9093, 9094
CONNECTION = "thyronet"  # the name of the SuperLink connection in the Flower CLI's config

# The Flower App a federation runs: thyronet's ServerApp and ClientApp, from the installed package
APP = {
    "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
    "project": {"name": "thyronet-federated", "version": "1.0.0", "dependencies": []},
    "tool": {"flwr": {"app": {
        "publisher": "thyronet",
        "components": {"serverapp": "thyronet.federated.server:app", "clientapp": "thyronet.federated.client:app"},
        "config": {"run-config": "", "out": ""},
    }}},
}


def flower(tool: str) -> str:
    """A Flower executable of this environment (installed beside its Python)."""
    path = Path(sys.executable).parent / tool
    if not path.exists():
        raise ThyronetError(f"{path}: Flower's {tool} is not installed beside this Python (pip install flwr)")
    return str(path)


def environment() -> dict[str, str]:
    """The environment Flower's processes run in: this one, with its executables first on PATH (a
    SuperLink and a SuperNode start ``flwr-serverapp`` and ``flwr-clientapp`` by name)."""
    import os

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _existing(path: str | Path, what: str) -> str:
    if not Path(path).is_file():
        raise DataError(path, f"{what} not found")
    return str(Path(path).resolve())


@dataclass(frozen=True)
class Tls:
    """The SuperLink's certificate, its key and the CA that signed it (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_folder(cls, folder: str | Path) -> Tls:
        """``ca.crt``, ``server.crt`` and ``server.key`` in one folder."""
        folder = Path(folder)
        tls = cls(folder / "ca.crt", folder / "server.crt", folder / "server.key")
        for path, what in ((tls.ca, "CA certificate"), (tls.cert, "server certificate"), (tls.key, "server key")):
            _existing(path, what)
        return tls


def superlink_command(tls: Tls | None, host: str = "0.0.0.0", fleet_port: int = FLEET_PORT, control_port: int = CONTROL_PORT,
                      serverappio_port: int = SERVERAPPIO_PORT, database: Path | None = None, node_auth: bool = True) -> list[str]:
    """A SuperLink: the Fleet API (SuperNodes connect) and the Control API (a federation is
    submitted) on ``host``; the ServerAppIo API on this machine only."""
    command = [flower("flower-superlink"), "--fleet-api-address", f"{host}:{fleet_port}",
               "--control-api-address", f"{host}:{control_port}", "--serverappio-api-address", f"127.0.0.1:{serverappio_port}"]
    if tls is None:
        command.append("--insecure")
    else:
        command += ["--ssl-ca-certfile", _existing(tls.ca, "CA certificate"), "--ssl-certfile", _existing(tls.cert, "server certificate"),
                    "--ssl-keyfile", _existing(tls.key, "server key")]
    if node_auth:
        command.append("--enable-supernode-auth")
    if database is not None:  # the SuperLink's state (runs, registered nodes) survives a restart
        command += ["--database", str(database)]
    return command


def supernode_command(superlink: str, data: Path, site: str, root_certificates: Path | None, key: Path | None,
                      clientappio_port: int = CLIENTAPPIO_PORT) -> list[str]:
    """A SuperNode: connects out to the SuperLink's Fleet API, runs thyronet's ClientApp on ``data``."""
    if not Path(data).exists():
        raise DataError(data, "no such data folder or file")
    node_config = f'data-path="{Path(data).resolve()}" site-name="{site}"'
    command = [flower("flower-supernode"), "--superlink", superlink, "--clientappio-api-address", f"127.0.0.1:{clientappio_port}",
               "--node-config", node_config]
    command += ["--insecure"] if root_certificates is None else ["--root-certificates", _existing(root_certificates, "CA certificate")]
    if key is not None:
        command += ["--auth-supernode-private-key", _existing(key, "SuperNode private key")]
    return command


def write_site_keys(folder: Path, site: str) -> tuple[Path, Path]:
    """A SuperNode's key pair (NIST P-384, OpenSSH format): ``SITE.key`` stays at the site (0600),
    ``SITE.pub`` goes to the coordinating site to be registered."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / f"{site}.key", folder / f"{site}.pub"
    if private.exists():
        raise ThyronetError(f"{private}: exists already; a site keeps its key (remove it to make a new one)")
    private.touch(0o600)
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public


class FlowerCli:
    """The Flower CLI (``flwr``) pointed at one SuperLink's Control API, in a folder of its own
    (its config, and the Flower App a federation submits)."""

    def __init__(self, address: str, root_certificates: Path | None) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="thyronet-flwr-")
        self.folder = Path(self._scratch.name)
        connection: dict[str, object] = {"address": address}
        if root_certificates is None:
            connection["insecure"] = True
        else:
            connection["root-certificates"] = _existing(root_certificates, "CA certificate")
        home = self.folder / "home"
        home.mkdir()
        (home / "config.toml").write_text(tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: connection}}))
        self.app = self.folder / "app"
        self.app.mkdir()
        (self.app / "pyproject.toml").write_text(tomli_w.dumps(APP))
        self.env = {**environment(), "FLWR_HOME": str(home)}

    def __enter__(self) -> FlowerCli:
        return self

    def __exit__(self, *exc: object) -> None:
        self._scratch.cleanup()

    def run(self, *args: str) -> int:
        return subprocess.call([flower("flwr"), *args], env=self.env)

    def answer(self, *args: str) -> dict[str, Any]:
        """What a ``flwr ... --format json`` command answers; its failure, in one line."""
        done = subprocess.run([flower("flwr"), *args, "--format", "json"], env=self.env, capture_output=True, text=True)
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            answer = {"success": False, "error-message": (done.stderr or done.stdout).strip().splitlines()[-1:]}
        if not answer.get("success"):
            raise ThyronetError(f"flwr {args[0]}: {answer.get('error-message', answer)}")
        return answer

    def register(self, public_key: Path) -> int:
        """Admit the SuperNode whose public key this is."""
        return self.run("supernode", "register", _existing(public_key, "SuperNode public key"), CONNECTION)

    def submit(self, config: RunConfig, out: Path) -> str:
        """Run a federation of ``config`` whose global model the SuperLink's machine writes to ``out``
        (an absolute path there), follow its log to its end, and answer its final status."""
        run_config = self.folder / "run.toml"
        run_config.write_text(tomli_w.dumps({"run-config": dump_config(config), "out": str(out)}))
        run_id = str(self.answer("run", str(self.app), CONNECTION, "--run-config", str(run_config))["run-id"])
        self.run("log", run_id, CONNECTION, "--stream")
        status = self.answer("list", CONNECTION, "--run-id", run_id)["runs"][0]
        if status["status"] != "finished:completed":
            raise ThyronetError(f"run {run_id} {status['status']}: {status.get('status-details') or 'see the log above'}")
        return run_id
