"""Flower's Deployment Engine end to end on loopback: a SuperLink with TLS and SuperNode
authentication, two hospitals' SuperNodes on their own data, a third SuperNode whose key was never
registered, and `thyronet federated run` for two rounds; the global model loads with `predict`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import synthetic
from certificates import make_certificates
from thyronet.apps.cli import main

TINY = ["--model", "resnet18", "--set", "model.descriptor_heads=false", "--set", "data.preprocess.size=32",
        "--set", "train.batch_size=8", "--set", "trainer.threads=1", "--set", "train.mixup=0"]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, "the SuperLink ended early"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"nothing listens on port {port} after {seconds} s")


@pytest.mark.slow
def test_a_superlink_and_two_supernodes_with_tls_federate_two_rounds(tmp_path, capsys):
    certs = tmp_path / "certs"
    make_certificates(certs)
    sites = {"hospital-a": synthetic.make_ddti(tmp_path / "hospital-a", benign=5, malignant=5, unlabelled=0),
             "hospital-b": synthetic.make_ddti(tmp_path / "hospital-b", benign=6, malignant=5, unlabelled=0)}
    for site in [*sites, "stranger"]:
        assert main(["federated", "keys", site, "--out", str(tmp_path / "keys")]) == 0
    assert oct((tmp_path / "keys" / "hospital-a.key").stat().st_mode & 0o777) == "0o600"
    fleet, control, serverappio, *clientappio = free_ports(6)
    thyronet = [sys.executable, "-m", "thyronet", "federated"]
    ca = ["--root-certificates", str(certs / "ca.crt")]
    processes: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> subprocess.Popen:
        process = subprocess.Popen([*thyronet, *args], stdout=(tmp_path / log).open("w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own group: Flower's children end with it
        processes.append(process)
        return process

    try:
        link = start(["superlink", "--certificates", str(certs), "--host", "127.0.0.1", "--fleet-port", str(fleet),
                      "--control-port", str(control), "--serverappio-port", str(serverappio)], "superlink.log")
        wait_for_port(control, link)
        for site in sites:
            assert main(["federated", "register", str(tmp_path / "keys" / f"{site}.pub"), "--superlink", f"127.0.0.1:{control}", *ca]) == 0
        for port, site in zip(clientappio, [*sites, "stranger"], strict=False):
            data = sites.get(site, sites["hospital-a"])
            start(["supernode", "--superlink", f"127.0.0.1:{fleet}", "--data", str(data), "--site", site, *ca,
                   "--key", str(tmp_path / "keys" / f"{site}.key"), "--clientappio-port", str(port)], f"{site}.log")
        out = tmp_path / "global"
        started = time.time()
        assert main(["federated", "run", "--superlink", f"127.0.0.1:{control}", *ca, "--out", str(out), "--rounds", "2", *TINY]) == 0
        print(f"two rounds on the Deployment Engine: {time.time() - started:.0f} s")
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    history = json.loads((out / "federation.json").read_text())
    assert [r["round"] for r in history["rounds"]] == [1, 2]
    assert all(sorted(r["sites"]) == ["hospital-a", "hospital-b"] for r in history["rounds"])  # never the stranger
    provenance = json.loads((out / "provenance.json").read_text())
    assert {name: s["cases"] for name, s in provenance["sites"].items()} == {"hospital-a": 10, "hospital-b": 11}
    capsys.readouterr()
    assert main(["predict", str(out), str(sites["hospital-b"] / "3_1.jpg")]) == 0
    assert "a federated model" in capsys.readouterr().out
