"""The JSON schema of a policy file.

The schema is the contract of the file format: it rejects unknown fields (a
misspelt control must never be silently ignored, since that would turn a deny
into an allow) and pins every option's type.  Checks a schema cannot express
(unique rule ids, exactly one control per rule, parseable sizes and port
ranges) are done by ``compile`` and reported in the same ``file:line`` form.
"""

from __future__ import annotations

from typing import Any

_globs: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
_bool: dict[str, Any] = {"type": "boolean"}
_size: dict[str, Any] = {
    "oneOf": [
        {"type": "integer", "minimum": 0},
        {
            "type": "string",
            "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT]([iI]?[bB]?)?|[bB])?\s*$",
        },
    ]
}


def _obj(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": props}


CONTROLS: dict[str, dict[str, Any]] = {
    "endpoints": _obj(allow=_globs, deny=_globs),
    "privileged": _obj(allow=_bool),
    "host_paths": _obj(
        allow=_globs,
        deny=_globs,
        read_only=_bool,
        resolve_symlinks=_bool,
        allow_shared_propagation=_bool,
        accept_writable_roots=_bool,
    ),
    "mount_types": _obj(
        allow={
            "type": "array",
            "items": {"enum": ["bind", "volume", "tmpfs", "image", "npipe", "cluster"]},
        }
    ),
    "volume_drivers": _obj(allow=_globs, allow_driver_options=_bool),
    "volumes_from": _obj(allow=_bool),
    "capabilities": _obj(add=_globs, drop=_globs),
    "namespaces": _obj(
        allow_host=_bool,
        allow_container=_bool,
        allow_path=_bool,
        fields={
            "type": "array",
            "items": {
                "enum": [
                    "PidMode",
                    "IpcMode",
                    "NetworkMode",
                    "UTSMode",
                    "UsernsMode",
                    "CgroupnsMode",
                ]
            },
        },
    ),
    "devices": _obj(allow=_globs, allow_requests=_bool, allow_cgroup_rules=_bool),
    "security_options": _obj(
        allow_unconfined_seccomp=_bool,
        allow_custom_seccomp=_bool,
        allow_unconfined_apparmor=_bool,
        apparmor_profiles=_globs,
        allow_label_disable=_bool,
        allow_label_user_role=_bool,
        label_types=_globs,
        allow_writable_cgroups=_bool,
        require_no_new_privileges=_bool,
        seccomp_strict=_bool,
        seccomp_profiles={"type": "array",
                          "items": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}},
    ),
    "system_paths": _obj(allow_unmasked=_bool),
    "sysctls": _obj(allow=_globs),
    "cgroup_parent": _obj(allow=_globs),
    "group_add": _obj(allow=_globs, allow_root=_bool),
    "runtimes": _obj(allow=_globs),
    "oom_kill_disable": _obj(allow=_bool),
    "ports": _obj(
        host_ports={
            "type": "array",
            "items": {"type": ["string", "integer"], "pattern": r"^[0-9]+(-[0-9]+)?$"},
        },
        host_ips=_globs,
        allow_ephemeral=_bool,
        allow_publish_all=_bool,
    ),
    "user": _obj(non_root=_bool, require_numeric=_bool, allow_root_group=_bool),
    "images": _obj(allow=_globs, deny=_globs, allow_import=_bool),
    "registries": _obj(allow=_globs),
    "redact": _obj(env=_bool, env_names=_globs, exec_commands=_bool),
    "fields": _obj(
        unclassified={"enum": ["deny", "allow"]},
        host_level={"enum": ["deny", "allow"]},
        allow=_globs,
    ),
    "plugin_names": _obj(allow=_globs),
    "volume_options": _obj(local_types=_globs, drivers=_globs),
    "tmpfs": _obj(options=_globs),
    "log_drivers": _obj(allow=_globs, plugins=_globs),
    "networks": _obj(
        drivers=_globs,
        ipam_drivers=_globs,
        options=_globs,
        ipam_options=_globs,
        internal={"enum": ["allow", "require", "set"]},
        subnets=_globs,
        allow_ingress=_bool,
        allow_config_from=_bool,
        allow_ipv6=_bool,
        scopes=_globs,
    ),
    "oom_score_adj": _obj(min={"type": "integer", "minimum": -1000, "maximum": 1000}),
    "ulimits": _obj(allow=_globs),
    "daemon_defaults": _obj(cgroupns={"enum": ["private"]}, ipc={"enum": ["private"]}),
    "resources": _obj(
        require={"type": "array", "items": {"enum": ["memory", "cpu", "pids"]}},
        max=_obj(
            memory=_size,
            memory_swap=_size,
            cpus={"type": "number", "exclusiveMinimum": 0},
            pids={"type": "integer", "minimum": 1},
        ),
    ),
    "build": _obj(
        allow_remote_context=_bool,
        allow_url_sources=_bool,
        allow_cgroup_parent=_bool,
        frontends=_globs,
    ),
}

_peer_match = _obj(
    uids={"type": "array", "items": {"type": "integer"}},
    gids={"type": "array", "items": {"type": "integer"}},
    principals=_globs,
    listeners=_globs,
)

RULE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9._-]*$"},
        "description": {"type": "string"},
        "mode": {"enum": ["enforce", "warn", "audit"]},
        "applies_to": _globs,
        "exempt": _peer_match,
        **CONTROLS,
    },
}

POLICY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "dockgate policy",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "rules"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*$"},
        "description": {"type": "string"},
        "rules": {"type": "array", "items": RULE},
    },
}
