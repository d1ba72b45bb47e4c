"""Pure API machinery: names, defaulting, update carry-over, printing helpers, settings, the CLI entry."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kubeedge.apiserver import machinery, server, tables
from kubeedge.apiserver.resources import BUILTIN, Registry, from_crd
from kubeedge.cli import cloudcore

PODS = next(r for r in BUILTIN if r.plural == "pods")
NAMESPACES = next(r for r in BUILTIN if r.plural == "namespaces")


@pytest.mark.parametrize(
    ("kind", "name", "ok"),
    [("ConfigMap", "a.b-c", True), ("ConfigMap", "A", False), ("ConfigMap", "-a", False),
     ("Namespace", "a.b", False), ("Namespace", "a" * 63, True), ("Namespace", "a" * 64, False),
     ("ConfigMap", "a" * 254, False)],
)  # fmt: skip
def test_name_rules(kind: str, name: str, ok: bool) -> None:
    assert (machinery.name_problem(kind, name) is None) is ok


def test_pod_defaults_and_create_metadata() -> None:
    pod = {
        "metadata": {"name": "p", "resourceVersion": "9"},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    machinery.prepare_create(PODS, pod, "ns", now=0, rng=random.Random(1), allocate_ip=lambda: "10.96.0.1")
    assert pod["metadata"]["namespace"] == "ns"
    assert "resourceVersion" not in pod["metadata"]
    assert pod["metadata"]["creationTimestamp"] == "1970-01-01T00:00:00Z"
    c = pod["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "Always"
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert len(pod["spec"]["tolerations"]) == 2


def test_carry_over_keeps_server_fields_and_status() -> None:
    old = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u", "generation": 1,
           "resourceVersion": "5"}, "spec": {"a": 1}, "status": {"phase": "Running"}}  # fmt: skip
    new = machinery.carry_over(PODS, {"metadata": {"name": "p", "uid": "x"}, "spec": {"a": 2},
                                      "status": {"phase": "Failed"}}, old, subresource="")  # fmt: skip
    assert new["metadata"]["uid"] == "u"
    assert new["status"] == {"phase": "Running"}
    assert new["metadata"]["generation"] == 2
    status = machinery.carry_over(PODS, {"metadata": {}, "spec": {"a": 3}, "status": {"phase": "Failed"}}, old,
                                  subresource="status")  # fmt: skip
    assert status["spec"] == {"a": 1}
    assert status["status"] == {"phase": "Failed"}


def test_namespace_defaults() -> None:
    ns = {"metadata": {"name": "x"}}
    machinery.prepare_create(NAMESPACES, ns, "", now=0, rng=random.Random(1), allocate_ip=lambda: "")
    assert ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "x"}


def test_human_age() -> None:
    assert [tables.human_age(s) for s in (5, 150, 700, 3 * 3600, 30 * 3600, 3 * 86400, 400 * 86400)] == [
        "5s", "2m30s", "11m", "3h", "30h", "3d", "400d"
    ]  # fmt: skip


def test_bundled_crds_register() -> None:
    crds = server.bundled_crds()
    assert {c["metadata"]["name"] for c in crds} == {
        "devices.devices.kubeedge.io", "devicemodels.devices.kubeedge.io",
        "objectsyncs.reliablesyncs.kubeedge.io", "clusterobjectsyncs.reliablesyncs.kubeedge.io",
        "rules.rules.kubeedge.io", "ruleendpoints.rules.kubeedge.io",
    }  # fmt: skip
    for crd in crds:
        machinery.validate_crd(crd)
        assert from_crd(crd)
    reg = Registry.build(crds)
    cos = reg.lookup("reliablesyncs.kubeedge.io", "v1alpha1", "clusterobjectsyncs")
    assert cos is not None
    assert not cos.namespaced
    assert cos.subresources == ("status",)
    rules = reg.lookup("rules.kubeedge.io", "v1", "rules")
    assert rules is not None
    assert rules.namespaced


def test_settings_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="port"):
        server.Settings(data_dir=tmp_path, port=70000).validate()
    with pytest.raises(ValueError, match="maxRequestBodyBytes"):
        server.Settings(data_dir=tmp_path, max_body_bytes=1).validate()


def test_cli_rejects_bad_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cloudcore.main(["apiserver", "--data-dir", str(tmp_path), "--port", "99999"])
    assert exc.value.code == 2
    assert "port must be 0..65535" in capsys.readouterr().err
