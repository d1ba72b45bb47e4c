#!/usr/bin/python
"""Ansible module kubeedge.edge.node_ready: wait until a node is Ready in the Kubernetes API."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_ready
short_description: Wait until a kubeedge node is Ready in the Kubernetes API
description:
  - Polls the node object through the Kubernetes API (the C(kubernetes) Python client with a kubeconfig) until its
    C(Ready) condition is C(True), and optionally until it reports a given version, or fails after O(timeout).
  - This is the health gate of the C(kubeedge.edge.edgecore) role and of the rolling upgrade.
  - Read-only; supports check mode. In check mode, when the kubeconfig does not exist yet (nothing installed),
    it returns C(ready=false) without failing.
version_added: "0.1.0"
author:
  - kubeedge-py maintainers
options:
  name:
    description: Node name.
    type: str
    required: true
  kubeconfig:
    description: Kubeconfig with read access to nodes (cloudcore's embedded control plane writes this one).
    type: path
    default: /etc/kubeedge/admin.kubeconfig
  context:
    description: Kubeconfig context; the current context when unset.
    type: str
  timeout:
    description: Seconds to wait; C(0) checks once.
    type: int
    default: 180
  interval:
    description: Seconds between polls.
    type: float
    default: 2.0
  version:
    description: When set, the node must also report this text in C(status.nodeInfo.kubeletVersion).
    type: str
  since:
    description:
      - Unix seconds. When set, the C(Ready) condition's C(lastHeartbeatTime) must be at or after it, so that a
        node object still saying Ready from before a restart does not pass for the restarted edgecore.
    type: float
requirements:
  - kubernetes (Python client) on the host the task runs on; the kubeedge-py release venv has it
    (C(ansible_python_interpreter=/opt/kubeedge-py/current/bin/python)).
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Wait until this edge node is Ready
  kubeedge.edge.node_ready:
    name: "{{ kubeedge_node_name }}"
    timeout: 300
  delegate_to: "{{ groups['cloud'][0] }}"
  vars:
    ansible_python_interpreter: /opt/kubeedge-py/current/bin/python
"""

RETURN = r"""
ready:
  description: Whether the node passed.
  returned: always
  type: bool
condition:
  description: The node's Ready condition as last seen.
  returned: when the node exists
  type: dict
node_info:
  description: The node's C(status.nodeInfo).
  returned: when the node exists
  type: dict
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

import os
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubeedge.edge.plugins.module_utils import nodes

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.rest import ApiException
except ImportError:
    K8S_IMPORT_ERROR = traceback.format_exc()
else:
    K8S_IMPORT_ERROR = None


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "kubeconfig": {"type": "path", "default": "/etc/kubeedge/admin.kubeconfig"},
            "context": {"type": "str"},
            "timeout": {"type": "int", "default": 180},
            "interval": {"type": "float", "default": 2.0},
            "version": {"type": "str"},
            "since": {"type": "float"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] < 0 or not 0.1 <= p["interval"] <= 60:
        module.fail_json(msg="timeout must be >= 0 and interval 0.1..60 seconds")
    if not os.path.exists(p["kubeconfig"]):
        if module.check_mode:
            module.exit_json(
                changed=False, ready=False, elapsed=0.0, msg="{} does not exist yet".format(p["kubeconfig"])
            )
        module.fail_json(msg="kubeconfig {} does not exist".format(p["kubeconfig"]), ready=False, elapsed=0.0)
    if K8S_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=K8S_IMPORT_ERROR)

    try:
        api_client = k8s_config.new_client_from_config(config_file=p["kubeconfig"], context=p["context"])
    except Exception as exc:  # the client raises several unrelated types for a bad kubeconfig
        module.fail_json(
            msg="cannot load kubeconfig {}: {}".format(p["kubeconfig"], exc), ready=False, elapsed=0.0
        )
    core = k8s_client.CoreV1Api(api_client)

    start = time.monotonic()
    deadline = start + p["timeout"]
    node = None
    reason = ""
    while True:
        try:
            node = api_client.sanitize_for_serialization(
                core.read_node(p["name"], _request_timeout=max(1.0, min(10.0, p["timeout"])))
            )
            ready, reason = nodes.verdict(node, p["version"], p["since"])
        except ApiException as exc:
            node, ready = None, False
            reason = "node not found" if exc.status == 404 else f"API error {exc.status}: {exc.reason}"
        except Exception as exc:  # connection refused/reset while the control plane restarts: keep polling
            node, ready = None, False
            reason = f"API unreachable: {exc}"
        elapsed = round(time.monotonic() - start, 1)
        if ready:
            break
        if time.monotonic() + p["interval"] > deadline:
            break
        time.sleep(p["interval"])

    result = {"changed": False, "ready": ready, "elapsed": elapsed}
    if node is not None:
        result["condition"] = nodes.ready_condition(node) or {}
        result["node_info"] = (node.get("status") or {}).get("nodeInfo") or {}
    if not ready:
        module.fail_json(msg="node {} not ready after {}s: {}".format(p["name"], elapsed, reason), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
