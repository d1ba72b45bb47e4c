#!/usr/bin/python
"""Ansible module kubeedge.edge.join_token: read the current join token on the cloud host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: join_token
short_description: Read the current kubeedge join token on the cloud host
description:
  - Runs C(keadm gettoken) on the host running cloudcore and returns the token that edge hosts pass to
    C(keadm join --token).
  - Waits (bounded by O(wait_timeout)) for cloudcore to publish the token file after a fresh start.
  - Checks the token's shape (CA hash, HS256 JWT) and expiry before returning it, so that a stale or mangled
    token fails here rather than on every edge host.
  - "The token is a secret: always set C(no_log: true) on the task."
  - Never changes anything, so it supports check mode. In check mode, on a host where kubeedge-py is not
    installed yet, it returns C(token=null) instead of failing.
version_added: "0.1.0"
author:
  - kubeedge-py maintainers
options:
  keadm:
    description: Path of the C(keadm) executable.
    type: path
    default: /opt/kubeedge-py/current/bin/keadm
  token_file:
    description: Token file cloudcore maintains (C(keadm gettoken --token-file)).
    type: path
    default: /etc/kubeedge/tokens/tokendata
  ca_dir:
    description:
      - When the token file does not exist, compute a fresh token from C(rootCA.crt) and C(rootCA.key) in this
        directory (C(keadm gettoken --ca-dir)). Leave unset to wait for cloudcore's token file instead.
    type: path
  wait_timeout:
    description: Seconds to wait for the token to become readable.
    type: int
    default: 60
  min_validity:
    description: Fail when the token expires in fewer than this many seconds.
    type: int
    default: 300
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Runs on the cloud host (delegate to it from edge hosts).
"""

EXAMPLES = r"""
- name: Get the join token from the cloud host
  kubeedge.edge.join_token:
  delegate_to: "{{ groups['cloud'][0] }}"
  run_once: true
  no_log: true
  register: kubeedge_token

- name: Join with it
  ansible.builtin.command:
    argv: [/opt/kubeedge-py/current/bin/keadm, join, --token, "{{ kubeedge_token.token }}", "..."]
  no_log: true
"""

RETURN = r"""
token:
  description: The join token (C(<ca sha256>.<jwt>)); null in check mode before kubeedge-py is installed.
  returned: success
  type: str
ca_hash:
  description: Hex SHA-256 of the CA certificate (DER) the token pins.
  returned: when a token was read
  type: str
  sample: 3b2c...e1
expires:
  description: Token expiry, Unix seconds.
  returned: when a token was read
  type: int
  sample: 1796000000
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeedge.edge.plugins.module_utils import tokens

POLL_SECONDS = 1.0


def read_token(module, keadm, token_file, ca_dir, deadline):
    """Run keadm gettoken until it prints a token or the deadline passes; return (token, last_error)."""
    argv = [keadm, "gettoken", "--token-file", token_file]
    if ca_dir:
        argv += ["--ca-dir", ca_dir]
    last = ""
    while True:
        rc, out, err = module.run_command(argv)
        if rc == 0 and out.strip():
            return out.strip(), ""
        last = (err or out).strip()[-500:] or f"keadm gettoken exited {rc}"
        if time.monotonic() >= deadline:
            return None, last
        time.sleep(POLL_SECONDS)


def main():
    module = AnsibleModule(
        argument_spec={
            "keadm": {"type": "path", "default": "/opt/kubeedge-py/current/bin/keadm"},
            "token_file": {"type": "path", "default": "/etc/kubeedge/tokens/tokendata"},
            "ca_dir": {"type": "path"},
            "wait_timeout": {"type": "int", "default": 60},
            "min_validity": {"type": "int", "default": 300},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["wait_timeout"] < 0 or p["min_validity"] < 0:
        module.fail_json(msg="wait_timeout and min_validity must not be negative")
    if not os.access(p["keadm"], os.X_OK):
        if module.check_mode:
            module.exit_json(
                changed=False, token=None, msg="{} not installed yet (check mode)".format(p["keadm"])
            )
        module.fail_json(msg="{} is missing or not executable: install kubeedge-py first".format(p["keadm"]))

    token, error = read_token(
        module, p["keadm"], p["token_file"], p["ca_dir"], time.monotonic() + p["wait_timeout"]
    )
    if token is None:
        module.fail_json(msg=f"no join token after {p['wait_timeout']}s: {error}")
    try:
        info = tokens.parse(token)
    except tokens.TokenShapeError as exc:
        module.fail_json(msg=f"keadm gettoken printed a malformed token: {exc}")
    left = info["expires"] - int(time.time())
    if left < p["min_validity"]:
        module.fail_json(
            msg=f"join token expires in {left}s (< min_validity {p['min_validity']}s); is cloudcore refreshing it?",
            ca_hash=info["ca_hash"],
            expires=info["expires"],
        )
    module.exit_json(changed=False, token=token, ca_hash=info["ca_hash"], expires=info["expires"])


if __name__ == "__main__":
    main()
