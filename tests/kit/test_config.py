"""cloudcore.yaml / edgecore.yaml: upstream's own files load, defaults round-trip, bad input names its key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.cli import cloudapp
from kubeedge.kit import config, limits
from kubeedge.kit.config import _schema

FIXTURES = Path(__file__).parent / "fixtures"
HOST = config.HostFacts("192.0.2.2", "vm")
"""What the machine that generated the upstream fixtures had."""

EXTENSIONS = {"embeddedAPIServer", "statusServer", "nodeAuthorization"}
"""Top-level keys kubeedge-py adds to upstream's files."""
ADDED_OPTIONAL = {"nodeIP", "nodeLabels", "clusterDNS"}
"""Upstream keys left out of upstream's generated files (omitempty) that kubeedge-py models and writes."""


def fixture(name: str) -> dict[str, Any]:
    data = yaml.safe_load((FIXTURES / name).read_text())
    assert isinstance(data, dict)
    return data


def assert_covers(upstream: Any, ours: Any, path: str = "") -> None:
    """Every key and value in ``upstream`` is present and equal in ``ours`` (null = upstream's empty list)."""
    if isinstance(upstream, dict):
        assert isinstance(ours, dict), path
        for key, value in upstream.items():
            assert key in ours, f"{path}.{key} missing"
            assert_covers(value, ours[key], f"{path}.{key}")
    elif upstream is None:
        assert ours in ([], None), path
    else:
        assert upstream == ours, path


def extra_keys(upstream: Any, ours: Any, path: str = "") -> set[str]:
    if not isinstance(ours, dict) or not isinstance(upstream, dict):
        return set()
    out = {key for key in ours if key not in upstream}
    for key in ours.keys() & upstream.keys():
        out |= extra_keys(upstream[key], ours[key], f"{path}.{key}")
    return out


def load_error(loader: Any, text: str) -> config.ConfigError:
    with pytest.raises(config.ConfigError) as info:
        loader(text)
    return info.value


# --- upstream's files ----------------------------------------------------------------------------------------


def test_upstream_cloudcore_default_loads_and_takes_effect() -> None:
    cfg = config.load_cloudcore(FIXTURES / "cloudcore-default.yaml")
    hub = cfg.modules.cloud_hub
    assert hub.node_limit == 500
    assert hub.advertise_address == ("192.0.2.2",)
    assert hub.websocket.port == 10000
    assert hub.authorization.modes[0].node.enable is True
    assert hub.authorization.enable is False  # upstream's default ...
    assert hub.node_authorization_enforced  # ... does not switch kubeedge-py's node identity check off
    assert cloudapp.hub_settings(cfg).authorize_nodes
    assert cfg.modules.edge_controller.load.create_pod_works == 4
    assert cfg.kube_api_config.qps == 2500.0
    assert cfg.embedded_api_server_enabled  # empty kubeConfig and master: a fresh install
    assert_covers(fixture("cloudcore-default.yaml"), config._schema.to_plain(cfg))


def test_upstream_cloudcore_min_loads_and_takes_effect() -> None:
    cfg = config.load_cloudcore(FIXTURES / "cloudcore-min.yaml")
    assert cfg.modules.cloud_hub.node_limit == 1000
    assert cfg.modules.cloud_hub.node_authorization_enforced
    assert cfg.modules.cloud_hub.enable is False  # what upstream's generator wrote, taken as written
    assert cfg.modules.edge_controller.buffer.create_lease == 1524  # absent key: default
    assert_covers(fixture("cloudcore-min.yaml"), _schema.to_plain(cfg))


@pytest.mark.parametrize("name", ["edgecore-default.yaml", "edgecore-min.yaml"])
def test_upstream_edgecore_files_load_and_take_effect(name: str) -> None:
    cfg = config.load_edgecore(FIXTURES / name)
    edged = cfg.modules.edged
    kubelet = edged.tailored_kubelet_config
    assert edged.hostname_override == "vm"
    assert cfg.modules.edge_hub.websocket.server == "192.0.2.2:10000"
    assert cfg.modules.edge_hub.http_server == "https://192.0.2.2:10002"
    assert kubelet.sync_frequency == 60.0
    assert kubelet.node_status_update_frequency == 10.0
    assert kubelet.node_status_report_frequency == 300.0
    assert kubelet.image_minimum_gc_age == 120.0
    assert kubelet.runtime_request_timeout == 120.0
    assert kubelet.max_pods == 110
    assert kubelet.read_only_port == 10350
    assert kubelet.extras["cpuCFSQuotaPeriod"] == "100ms"
    assert kubelet.extras["logging"]["flushFrequency"] == "5s"
    assert_covers(fixture(name), _schema.to_plain(cfg))


def test_upstream_edgecore_min_module_switches_take_effect() -> None:
    cfg = config.load_edgecore(FIXTURES / "edgecore-min.yaml")
    assert cfg.modules.edge_hub.enable is False
    assert cfg.modules.event_bus.enable is False
    assert cfg.modules.meta_manager.enable is True  # absent: default


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("cloudcore-default.yaml", config.default_cloudcore(HOST)),
        ("edgecore-default.yaml", config.default_edgecore(HOST)),
    ],
)
def test_our_defaults_are_upstreams_defaults(name: str, cfg: Any) -> None:
    ours = yaml.safe_load(config.dump_yaml(cfg, commented=False))
    upstream = fixture(name)
    assert_covers(upstream, ours)
    assert extra_keys(upstream, ours) <= EXTENSIONS | ADDED_OPTIONAL


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("cloudcore-min.yaml", config.minimal_cloudcore(HOST)),
        ("edgecore-min.yaml", config.minimal_edgecore(HOST)),
    ],
)
def test_minimal_config_has_upstreams_keys(name: str, cfg: Any) -> None:
    ours = yaml.safe_load(config.dump_yaml(cfg, minimal=True))
    upstream = fixture(name)
    # Upstream's minimal files switch their hub off (an unset field in its generator); ours keep it on.
    hub = upstream["modules"]["cloudHub" if "cloudHub" in upstream["modules"] else "edgeHub"]
    assert hub["enable"] is False
    hub["enable"] = True
    assert_covers(upstream, ours)
    assert extra_keys(upstream, ours) <= ADDED_OPTIONAL


# --- round trips ---------------------------------------------------------------------------------------------

CONFIGS = [
    (config.load_cloudcore, config.default_cloudcore()),
    (config.load_cloudcore, config.default_cloudcore(HOST)),
    (config.load_edgecore, config.default_edgecore()),
    (config.load_edgecore, config.default_edgecore(HOST)),
]


@pytest.mark.parametrize(("loader", "cfg"), CONFIGS)
@pytest.mark.parametrize("commented", [True, False])
def test_dump_then_load_gives_the_same_config(loader: Any, cfg: Any, commented: bool) -> None:
    assert loader(config.dump_yaml(cfg, commented=commented)) == cfg


@pytest.mark.parametrize(
    ("loader", "cfg"),
    [
        (config.load_cloudcore, config.minimal_cloudcore(HOST)),
        (config.load_edgecore, config.minimal_edgecore(HOST)),
    ],
)
def test_minimal_dump_loads_to_the_minimal_config(loader: Any, cfg: Any) -> None:
    assert loader(config.dump_yaml(cfg, minimal=True)) == cfg
    assert loader(config.dump_yaml(cfg, minimal=True, commented=False)) == cfg


def commented_keys(obj: Any, indent: str = "") -> list[tuple[str, str]]:
    out = []
    for key, _meta, value in _schema._items(obj):
        out.append((indent, key))
        if dataclasses.is_dataclass(value):
            out.extend(commented_keys(value, indent + "  "))
    return out


@pytest.mark.parametrize("cfg", [config.default_cloudcore(HOST), config.default_edgecore(HOST)])
def test_commented_dump_has_a_comment_above_every_key(cfg: Any) -> None:
    lines = config.dump_yaml(cfg).splitlines()
    expected = commented_keys(cfg)
    assert len(expected) > 100
    position = 0
    for indent, key in expected:
        while not lines[position].startswith(f"{indent}{key}:"):
            position += 1
        comment = lines[position - 1]
        assert comment.startswith(f"{indent}# "), key
        assert len(comment) > len(indent) + 4, key


def test_tailored_kubelet_values_are_kept_and_merged_with_defaults() -> None:
    text = """
apiVersion: edgecore.config.kubeedge.io/v1alpha2
kind: EdgeCore
modules:
  edged:
    tailoredKubeletConfig:
      maxPods: 20
      syncFrequency: 1m30s
      kubeReserved: {cpu: 200m}
      eventBurst: 7
"""
    kubelet = config.load_edgecore(text).modules.edged.tailored_kubelet_config
    assert kubelet.max_pods == 20
    assert kubelet.sync_frequency == 90.0
    assert kubelet.extras["kubeReserved"] == {"cpu": "200m"}
    assert kubelet.extras["eventBurst"] == 7
    assert kubelet.extras["hairpinMode"] == "promiscuous-bridge"  # untouched default kept


# --- the embedded API server extension -----------------------------------------------------------------------

CLOUD_HEAD = "apiVersion: cloudcore.config.kubeedge.io/v1alpha1\nkind: CloudCore\n"


@pytest.mark.parametrize(
    ("body", "enabled"),
    [
        ("", True),
        ("kubeAPIConfig: {kubeConfig: /root/.kube/config}\n", False),
        ("kubeAPIConfig: {master: 'https://10.0.0.1:6443'}\n", False),
        ("embeddedAPIServer: {enable: false}\n", False),
        ("embeddedAPIServer: {enable: true}\n", True),
        ("embeddedAPIServer: {enable: null}\n", True),
        ("embeddedAPIServer: {enable: false}\nkubeAPIConfig: {master: 'https://10.0.0.1:6443'}\n", False),
    ],
)
def test_embedded_api_server_resolution(body: str, enabled: bool) -> None:
    assert config.load_cloudcore(CLOUD_HEAD + body).embedded_api_server_enabled is enabled


def test_embedded_api_server_defaults() -> None:
    section = config.default_cloudcore().embedded_api_server
    assert (section.enable, section.address, section.port) == (None, "127.0.0.1", 6443)
    assert section.data_dir == "/var/lib/kubeedge/apiserver"
    assert section.kube_config_output == "/etc/kubeedge/admin.kubeconfig"
    assert section.max_request_body_bytes == 3 * 1024 * 1024


def test_embedded_api_server_forced_on_with_an_external_cluster_is_an_error() -> None:
    error = load_error(
        config.load_cloudcore,
        CLOUD_HEAD + "embeddedAPIServer: {enable: true}\nkubeAPIConfig: {kubeConfig: /k}\n",
    )
    assert error.path == ["embeddedAPIServer", "enable"]
    assert "kubeAPIConfig.kubeConfig" in str(error)
    assert "kubeAPIConfig.master" in str(error)


# --- errors --------------------------------------------------------------------------------------------------

EDGE_HEAD = "apiVersion: edgecore.config.kubeedge.io/v1alpha2\nkind: EdgeCore\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            CLOUD_HEAD + "modules: {cloudHub: {nodeLimt: 3}}",
            "modules.cloudHub.nodeLimt: unknown key (did you mean nodeLimit?)",
        ),
        (
            CLOUD_HEAD + "modules: {cloudHub: {websocket: {port: abc}}}",
            "modules.cloudHub.websocket.port: expected an integer, got 'abc'",
        ),
        (
            CLOUD_HEAD + "modules: {cloudHub: {websocket: {port: 70000}}}",
            "modules.cloudHub.websocket.port: must be between 1 and 65535, got 70000",
        ),
        (
            CLOUD_HEAD + "modules: {router: {port: 0}}",
            "modules.router.port: must be between 1 and 65535, got 0",
        ),
        (CLOUD_HEAD + "modules: {cloudHub: {nodeLimit: true}}", "expected an integer, got true"),
        (
            CLOUD_HEAD + "modules: {cloudHub: {enable: 'yes'}}",
            "modules.cloudHub.enable: expected true or false",
        ),
        (
            CLOUD_HEAD + "modules: {cloudHub: {authorization: {modes: [{node: {enable: 1}}]}}}",
            "modules.cloudHub.authorization.modes[0].node.enable: expected true or false, got 1",
        ),
        (
            CLOUD_HEAD + "modules: {cloudHub: {nodeAuthorization: {enable: 'false'}}}",
            "modules.cloudHub.nodeAuthorization.enable: expected true or false",
        ),
        (
            CLOUD_HEAD + "modules: {cloudHub: {advertiseAddress: [10.0.0.1, cloud.example]}}",
            "modules.cloudHub.advertiseAddress[1]: expected an IP address, got 'cloud.example'",
        ),
        (
            CLOUD_HEAD + "modules: {cloudHub: {dnsNames: x}}",
            "modules.cloudHub.dnsNames: expected a list, got 'x'",
        ),
        (
            CLOUD_HEAD + "modules: {iptablesManager: {mode: both}}",
            "mode: must be one of 'internal', 'external'",
        ),
        (CLOUD_HEAD + "modules: 3", "modules: expected a mapping, got 3"),
        (CLOUD_HEAD + "kubeAPIConfig: {qps: .nan}", "kubeAPIConfig.qps: expected a finite number"),
        (CLOUD_HEAD + "kubeAPIConfig: {qps: -1}", "kubeAPIConfig.qps: must be > 0, got -1"),
        (CLOUD_HEAD + "commonConfig: {monitorServer: {bindAddress: localhost}}", "expected host:port"),
        (CLOUD_HEAD + "embeddedAPIServer: {maxRequestBodyBytes: 0}", "maxRequestBodyBytes: must be > 0"),
        (CLOUD_HEAD + "1: 2", "keys must be strings, got 1"),
        (CLOUD_HEAD + "extra: 1", "extra: unknown key"),
        ("apiVersion: cloudcore.config.kubeedge.io/v1beta9\nkind: CloudCore\n", "apiVersion: must be one of"),
        (
            "apiVersion: cloudcore.config.kubeedge.io/v1alpha1\nkind: EdgeCore\n",
            "kind: must be one of 'CloudCore'",
        ),
    ],
)
def test_cloudcore_errors_name_the_key(text: str, message: str) -> None:
    assert message in str(load_error(config.load_cloudcore, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (EDGE_HEAD + "modules: {edgeHub: {heartbeat: 0}}", "modules.edgeHub.heartbeat: must be > 0, got 0"),
        (
            EDGE_HEAD + "modules: {edgeHub: {websocket: {server: 'cloud'}}}",
            "websocket.server: expected host:port",
        ),
        (
            EDGE_HEAD + "modules: {eventBus: {mqttMode: 5}}",
            "modules.eventBus.mqttMode: must be one of 0, 1, 2, got 5",
        ),
        (
            EDGE_HEAD + "modules: {edged: {tailoredKubeletConfig: {syncFrequency: 60}}}",
            "modules.edged.tailoredKubeletConfig.syncFrequency: expected a Go duration",
        ),
        (EDGE_HEAD + "modules: {edged: {tailoredKubeletConfig: {syncFrequency: 1x}}}", "not a Go duration"),
        (EDGE_HEAD + "modules: {edged: {tailoredKubeletConfig: {syncFrequency: 0s}}}", "must be > 0, got 0s"),
        (
            EDGE_HEAD + "modules: {edged: {tailoredKubeletConfig: {syncFrequency: 999999999h}}}",
            "out of range",
        ),
        (
            EDGE_HEAD + "modules: {edged: {tailoredKubeletConfig: {imageGCLowThresholdPercent: 90}}}",
            "imageGCLowThresholdPercent: must not exceed imageGCHighThresholdPercent (85), got 90",
        ),
        (
            EDGE_HEAD + "modules: {edged: {tailoredKubeletConfig: {maxPod: 3}}}",
            "modules.edged.tailoredKubeletConfig.maxPod: unknown key (did you mean maxPods?)",
        ),
        (
            EDGE_HEAD + "modules: {edged: {nodeLabels: {a: 1}}}",
            "modules.edged.nodeLabels.a: expected a string, got 1",
        ),
        (EDGE_HEAD + "database: {driverName: mysql}", "database.driverName: must be one of 'sqlite3'"),
        ("apiVersion: cloudcore.config.kubeedge.io/v1alpha1\nkind: EdgeCore\n", "apiVersion: must be one of"),
    ],
)
def test_edgecore_errors_name_the_key(text: str, message: str) -> None:
    assert message in str(load_error(config.load_edgecore, text))


def test_error_carries_the_path_list() -> None:
    error = load_error(config.load_cloudcore, CLOUD_HEAD + "modules: {cloudHub: {websocket: {port: abc}}}")
    assert error.path == ["modules", "cloudHub", "websocket", "port"]
    assert error.problem == "expected an integer, got 'abc'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "top level must be a mapping, got an empty document"),
        ("- a\n- b\n", "top level must be a mapping, got a list"),
        ("/etc/kubeedge/config/cloudcore.yaml", "pass a pathlib.Path"),
        ("a: [1, 2\n", "invalid YAML"),
        ("a: 1\n---\nb: 2\n", "invalid YAML"),
        ("a: !!python/object:os.system x\n", "invalid YAML"),
        ("a: 2024-02-30\n", "invalid YAML value"),
        ("[" * 800, "nested too deeply"),
        ("a: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than"),
    ],
)
def test_malformed_documents_are_config_errors(text: str, message: str) -> None:
    error = load_error(config.load_cloudcore, text)
    assert message in str(error)
    assert error.path == []


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    error = load_error(config.load_cloudcore, "\n".join(lines) + "\n")
    assert "more than" in str(error)


def test_oversized_text_and_file_are_refused(tmp_path: Path) -> None:
    big = CLOUD_HEAD + "#" * limits.MAX_CONFIG_BYTES + "\n"
    assert "more than the" in str(load_error(config.load_cloudcore, big))
    path = tmp_path / "cloudcore.yaml"
    path.write_text(big)
    error = load_error(config.load_cloudcore, path)
    assert "larger than" in str(error)
    assert error.source == str(path)


def test_unreadable_file_and_bad_encoding(tmp_path: Path) -> None:
    error = load_error(config.load_edgecore, tmp_path / "missing.yaml")
    assert "cannot read" in str(error)
    assert error.source == str(tmp_path / "missing.yaml")
    path = tmp_path / "edgecore.yaml"
    path.write_bytes(b"kind: \xff\xfe\n")
    assert "not UTF-8" in str(load_error(config.load_edgecore, path))


def test_file_errors_carry_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "edgecore.yaml"
    path.write_text(EDGE_HEAD + "modules: {edgeHub: {heartbeat: -1}}\n")
    error = load_error(config.load_edgecore, path)
    assert error.source == str(path)
    assert error.path == ["modules", "edgeHub", "heartbeat"]


# --- durations -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("5m0s", 300.0, "5m0s"),
        ("100ms", 0.1, "100ms"),
        ("4h0m0s", 14400.0, "4h0m0s"),
        ("0s", 0.0, "0s"),
        ("0", 0.0, "0s"),
        ("1.5s", 1.5, "1.5s"),
        ("90s", 90.0, "1m30s"),
        ("1h30m", 5400.0, "1h30m0s"),
        ("-2s", -2.0, "-2s"),
        ("250us", 0.00025, "250µs"),
        ("3ns", 3e-9, "3ns"),
    ],
)
def test_go_durations(text: str, seconds: float, canonical: str) -> None:
    assert config.parse_duration(text) == pytest.approx(seconds)
    assert config.format_duration(seconds) == canonical


@pytest.mark.parametrize("text", ["", "s", "10", "1.2.3s", "5 m", "1d", ".s", "+"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages are covered by the config error tests
        config.parse_duration(text)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_duration_format_parse_round_trip(ns: int) -> None:
    seconds = ns / 1e9
    assert round(config.parse_duration(config.format_duration(seconds)) * 1e9) == round(seconds * 1e9)


# --- fuzzing -------------------------------------------------------------------------------------------------

YAML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["10s", "1m0s", "0", "-1s", "abc", "1.2.3.4", "host:0", "::1", "0.0.0.0:99999"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def key_paths(plain: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    if isinstance(plain, dict):
        for key, value in plain.items():
            out.append((*prefix, key))
            out.extend(key_paths(value, (*prefix, key)))
    return out


CLOUD_PATHS = key_paths(_schema.to_plain(config.default_cloudcore(HOST)))
EDGE_PATHS = key_paths(_schema.to_plain(config.default_edgecore(HOST)))


def set_path(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = document
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


@st.composite
def mutated(draw: st.DrawFn, base: Any, paths: list[tuple[str, ...]]) -> str:
    document: dict[str, Any] = {"apiVersion": base.api_version, "kind": base.kind}
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        if draw(st.booleans()):
            path = (*path[:-1], draw(st.text(min_size=1, max_size=10)))
        set_path(document, path, draw(YAML_VALUES))
    return yaml.safe_dump(document)


def outcome(loader: Any, text: str | bytes) -> Any:
    """The loaded config, or the ConfigError; any other exception fails the test."""
    try:
        return loader(text)
    except config.ConfigError as exc:
        return exc


def assert_sane(loader: Any, result: Any) -> None:
    if isinstance(result, config.ConfigError):
        assert re.match(r"\S", str(result))
    else:
        assert loader(config.dump_yaml(result)) == result


@given(mutated(config.default_cloudcore(HOST), CLOUD_PATHS))
def test_cloudcore_never_fails_with_anything_but_config_error(text: str) -> None:
    assert_sane(config.load_cloudcore, outcome(config.load_cloudcore, text))


@given(mutated(config.default_edgecore(HOST), EDGE_PATHS))
def test_edgecore_never_fails_with_anything_but_config_error(text: str) -> None:
    assert_sane(config.load_edgecore, outcome(config.load_edgecore, text))


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_arbitrary_text_never_fails_with_anything_but_config_error(text: str | bytes) -> None:
    assert_sane(config.load_edgecore, outcome(config.load_edgecore, text))


def test_line_break_characters_in_keys_survive_a_dump_and_load() -> None:
    text = (
        "apiVersion: edgecore.config.kubeedge.io/v1alpha2\nkind: EdgeCore\nmodules:\n  edged:\n"
        '    tailoredKubeletConfig:\n      logging:\n        ? "\\N"\n        : null\n'
    )
    loaded = config.load_edgecore(text)
    assert loaded.modules.edged.tailored_kubelet_config.extras["logging"] == {"\x85": None}
    assert config.load_edgecore(config.dump_yaml(loaded)) == loaded
    assert config.load_edgecore(config.dump_yaml(loaded, commented=False)) == loaded


def test_error_paths_quote_keys_that_are_not_plain_words() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load_edgecore(
            'apiVersion: edgecore.config.kubeedge.io/v1alpha2\nkind: EdgeCore\n? "\\N"\n: null\n'
        )
    assert str(info.value).startswith('"\\u0085": unknown key')
