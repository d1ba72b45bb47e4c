"""The real services the suite relies on are really there: Docker runs a container, mosquitto relays."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import TEST_LABEL, Broker


@pytest.mark.docker
def test_docker_runs_and_removes_a_container(docker_client: Any, busybox_image: str) -> None:
    name = f"kubeedge-py-test-{uuid.uuid4().hex[:8]}"
    output = docker_client.containers.run(
        busybox_image, ["echo", "hello from busybox"], name=name, labels={TEST_LABEL: "1"}, remove=False
    )
    assert output.strip() == b"hello from busybox"
    container = docker_client.containers.get(name)
    assert container.attrs["State"]["ExitCode"] == 0
    container.remove()
    assert not docker_client.containers.list(all=True, filters={"name": name})


@pytest.mark.mqtt
def test_message_through_mosquitto(mosquitto: Broker) -> None:
    topic = f"$hw/events/device/default/probe-{uuid.uuid4().hex[:6]}/twin/update"
    sub = subprocess.Popen(
        [
            shutil.which("mosquitto_sub") or "mosquitto_sub",
            "-h",
            mosquitto.host,
            "-p",
            str(mosquitto.port),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "20",
        ],
        stdout=subprocess.PIPE,
    )
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kubeedge-py-probe")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        # Publish until the subscriber (started asynchronously) has received one copy.
        payload = b'{"event_id":"probe","timestamp":1}'
        for _ in range(200):
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
            try:
                out, _ = sub.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            pytest.fail("mosquitto_sub never received the message")
    finally:
        client.loop_stop()
        client.disconnect()
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert out.strip() == payload
