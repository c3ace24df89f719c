"""The one systemd notify client the node, the hub and the registry share."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.notify import Notifier


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    yield sock
    sock.close()


def test_ready_status_pet_and_stopping_reach_systemd(systemd: socket.socket) -> None:
    notifier = Notifier()
    assert notifier.enabled and notifier.watchdog_interval_s == 2.0
    notifier.ready("serving at http://127.0.0.1:8080")
    assert systemd.recv(4096) == b"READY=1\nSTATUS=serving at http://127.0.0.1:8080"
    notifier.pet()
    notifier.pet()  # within the interval: not sent again
    notifier.status("busy")
    assert systemd.recv(4096) == b"WATCHDOG=1"
    assert systemd.recv(4096) == b"STATUS=busy"
    notifier.stopping()
    assert systemd.recv(4096) == b"STOPPING=1"


def test_outside_systemd_every_call_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = Notifier()
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    notifier.ready("x")
    notifier.pet()
    notifier.stopping()


def test_a_gone_socket_is_a_warning_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    Notifier().ready()
    assert "cannot notify systemd" in caplog.text
