"""The control socket's messages: one encode/decode pair, the JSON each end has always sent."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from podvisor.init import seqpacket
from podvisor.supervisor.control import wire
from podvisor.supervisor.control.client import Client
from podvisor.supervisor.errors import ControlError, ControlMessageError

SUMMARY = wire.PodSummary(
    name="web", uid="0f7c", phase="Running", status="Running", ready=1, containers=2,
    restarts=3, start_time=1_700_000_000.5, pod_ip="10.88.0.2", metrics="127.0.0.1:9464",
    supervisor_pid=42, owner_uid=0,
)  # fmt: skip
ROW = wire.ContainerRow(
    name="app", kind="main", state="running", reason=None, message="", ready=True,
    started=True, restarts=1, started_at=1_700_000_001.0, pid=7, paused=False,
    last_termination=wire.Termination(reason="Error", exit_code=3, signal=None, message="",
                                      started_at=1_700_000_000.0, finished_at=1_700_000_000.9),
    cpu_cores=0.25, cpu_seconds=1.5, cpu_limit_cores=None, memory_bytes=45 << 20,
    memory_limit_bytes=None, pids=3, pids_max=100,
)  # fmt: skip

REQUESTS = [
    wire.Ps(),
    wire.Status(),
    wire.Logs("app", previous=True, tail=20, since=1_700_000_000.0, follow=False),
    wire.Logs(),
    wire.Exec("app", ("sh", "-c", "echo hi"), {"TERM": "xterm"}, tty=True, size=(24, 80)),
    wire.Exec(None, ("true",)),
    wire.Signal(2),
    wire.Restart("app"),
    wire.Kill("app", 15),
    wire.Pause("app"),
    wire.Resume("app"),
    wire.Stop(immediate=True),
]
REPLIES: list[wire.Reply] = [
    wire.PsReply(SUMMARY),
    wire.StatusReply(SUMMARY, (ROW,)),
    wire.StatusReply(SUMMARY, ()),
    wire.LogsReply(("app", "shipper")),
    wire.ExecStarted(5),
    wire.Done(),
    wire.Killed(paused=True),
    wire.Paused(("liveness",)),
    wire.Resumed(was_paused=False),
]
STREAMED: list[wire.Message] = [
    wire.LogLines((wire.LogRecord(1.5, "app", "stdout", "hello", partial=False),)),
    wire.LogEnd(),
    wire.ExecExited(code=None, signal=9),
    wire.Finished("Failed", 137),
    wire.Error("container 'app' is not running (Waiting)"),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=repr)
def test_each_request_comes_back_as_it_went(request_: wire.Request) -> None:
    assert wire.decode_request(wire.encode(request_)) == request_


@pytest.mark.parametrize("reply", REPLIES, ids=repr)
def test_each_reply_comes_back_as_it_went(reply: wire.Reply) -> None:
    assert wire.decode_reply(wire.encode(reply), type(reply)) == reply


@pytest.mark.parametrize("message", STREAMED, ids=repr)
def test_what_follows_a_reply_comes_back_as_it_went(message: wire.Message) -> None:
    assert wire.decode_streamed(wire.encode(message)) == message


def test_the_json_on_the_wire_is_what_it_was() -> None:
    def on_wire(message: wire.Message) -> object:
        return json.loads(wire.encode(message))

    assert on_wire(wire.Kill("app", 15)) == {"op": "kill", "container": "app", "signal": 15}
    assert on_wire(wire.Stop()) == {"op": "stop", "immediate": False}
    assert on_wire(wire.Resumed(was_paused=True)) == {"ok": True, "was_paused": True}
    assert on_wire(wire.LogEnd()) == {"end": True}
    assert on_wire(wire.ExecExited(0, None)) == {"ev": "exited", "code": 0, "signal": None}
    assert on_wire(wire.Finished("Succeeded", 0)) == {
        "ev": "finished",
        "phase": "Succeeded",
        "exit_status": 0,
    }
    status = on_wire(wire.StatusReply(SUMMARY, (ROW,)))
    assert isinstance(status, dict)
    assert list(status) == ["ok", "pod", "containers"]
    assert status["containers"][0]["last_termination"]["exit_code"] == 3


def test_an_error_answers_in_place_of_any_reply() -> None:
    error = wire.Error("cannot run nope in container 'app': not found", exit_code=127)
    assert wire.decode_reply(wire.encode(error), wire.ExecStarted) == error


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b'{"op": "frobnicate"}', "unknown request 'frobnicate': the pod's podvisor is another"),
        (b'{"op": "kill", "container": "app", "signal": "TERM"}',
         "kill: 'signal' must be a whole number, not 'TERM'"),
        (b'{"op": "kill", "container": "app"}', "kill: no 'signal'"),
        (b'{"op": "logs", "previous": 1, "follow": false}', "logs: 'previous' must be true or false"),
        (b'{"op": "exec", "argv": ["sh"], "env": {}, "tty": true, "size": [24]}',
         "exec: 'size' must be [rows, columns]"),
        (b'{"container": "app"}', "not a request"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not a JSON message"),
    ],
)  # fmt: skip
def test_a_request_that_cannot_be_read_is_named(data: bytes, said: str) -> None:
    with pytest.raises(ControlMessageError) as caught:
        wire.decode_request(data)
    assert said in str(caught.value)
    assert isinstance(caught.value, ControlError)  # the client prints it and exits 1


def test_a_reply_that_cannot_be_read_names_the_field_deep_inside() -> None:
    status = json.loads(wire.encode(wire.StatusReply(SUMMARY, (ROW,))))
    status["containers"][0]["last_termination"]["exit_code"] = "3"
    data = json.dumps(status).encode()
    with pytest.raises(
        ControlMessageError, match=r"status reply\.containers\[0\]\.last_termination"
    ):
        wire.decode_reply(data, wire.StatusReply)
    with pytest.raises(ControlMessageError, match="not a message this podvisor knows"):
        wire.decode_streamed(b'{"ev": "exploded"}')
    with pytest.raises(ControlMessageError, match="not a kill reply"):
        wire.decode_reply(b'{"paused": true}', wire.Killed)


def test_the_client_names_a_reply_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "ctl-odd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
        server.bind(str(path))
        server.listen(1)
        with Client("ctl-odd", path, timeout=5) as client:
            client.send(wire.Status())
            conn, _ = server.accept()
            with conn:
                packet = seqpacket.receive(conn, wire.MAX_MESSAGE)
                assert packet is not None
                assert wire.decode_request(packet[0]) == wire.Status()
                seqpacket.send(conn, b'{"ok": true, "pod": {"name": "ctl-odd"}}')
                with pytest.raises(ControlMessageError) as caught:
                    client.reply(wire.StatusReply)
    said = str(caught.value)
    assert "pod 'ctl-odd' sent what this podvisor cannot read" in said
    assert "status reply.pod: no 'uid'" in said
