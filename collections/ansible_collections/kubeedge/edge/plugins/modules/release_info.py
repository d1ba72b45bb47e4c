#!/usr/bin/python
"""Ansible module kubeedge.edge.release_info: the kubeedge-py releases installed on a host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_info
short_description: Read the kubeedge-py release installed on a host
description:
  - Reports the release the C(current) symlink points at, the C(previous) one that rollback returns to, every
    release directory and whether its venv is complete, and the config/database snapshots kept for rollback.
  - With O(query=true) also runs C(current/bin/keadm --version) and returns what the installed code says it is,
    which catches a C(current) link that points at a damaged release.
  - Read-only; supports check mode.
version_added: "0.1.0"
author:
  - kubeedge-py maintainers
options:
  root:
    description: Install root of kubeedge-py.
    type: path
    default: /opt/kubeedge-py
  backup_root:
    description: Where the release role keeps config and database snapshots, one folder per release.
    type: path
    default: /var/backups/kubeedge-py
  query:
    description: Also ask the installed C(keadm) for its version.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Which release runs here?
  kubeedge.edge.release_info:
    query: true
  register: kubeedge_release

- name: Show it
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} runs {{ kubeedge_release.current }} (previous {{ kubeedge_release.previous }})"
"""

RETURN = r"""
current:
  description: Version C(current) points at; null when nothing is installed.
  returned: always
  type: str
  sample: 0.1.0
previous:
  description: Version C(previous) points at; null when there is none.
  returned: always
  type: str
releases:
  description: Every release directory, sorted by name.
  returned: always
  type: list
  elements: str
complete:
  description: Per release, whether its venv has python, cloudcore, edgecore and keadm.
  returned: always
  type: dict
snapshots:
  description: Versions that have a config/database snapshot under O(backup_root).
  returned: always
  type: list
  elements: str
reported_version:
  description: What C(current/bin/keadm --version) says; null when not queried or not runnable.
  returned: always
  type: str
root:
  description: The install root.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeedge.edge.plugins.module_utils import releases


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "default": "/opt/kubeedge-py"},
            "backup_root": {"type": "path", "default": "/var/backups/kubeedge-py"},
            "query": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    result = releases.describe(p["root"], p["backup_root"])
    result["reported_version"] = None
    if p["query"] and result["current"]:
        keadm = os.path.join(p["root"], "current", "bin", "keadm")
        if os.access(keadm, os.X_OK):
            rc, out, err = module.run_command([keadm, "--version"])
            if rc != 0:
                module.fail_json(
                    msg=f"{keadm} --version failed ({rc}): {(err or out).strip()[-300:]}", **result
                )
            result["reported_version"] = releases.parse_version_output(out)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
