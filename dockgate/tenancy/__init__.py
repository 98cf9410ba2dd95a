"""Tenancy: several teams on one Docker host, each seeing and touching only its own objects.

Pure core (no Twisted, no I/O besides reading the tenants file).  The I/O
layer calls, per request, in this order (see docs/tenants.md):

1. ``TenantMap.resolve(peer, user, groups, principal, sans)`` → ``Tenant`` or
   None (403); ``admin_only(endpoint_id)`` refuses unscopable endpoints for
   non-admins;
2. ``stamp`` and ``scope_list`` (what ``stamp`` sets to keep a build from the shared
   build cache is added to the decision's ``sets`` by ``with_tenant_sets``);
3. ``object_refs``; per reference ``inspect_target`` → ``GET`` →
   ``owner_of``/``exec_container`` → ``may_access`` (``image_shared``) →
   ``full_id`` → ``pin``; a missing or foreign object is answered as the
   daemon answers for a missing one (``missing``: a replay with a
   ``stand_in``, or ``body_answer``);
4. ``quota_check`` with ``usage_from_list``;
5. the tenant's policy decides the final request.

Responses: ``filter_list`` for list bodies, ``event_visible`` per event line
(``labelless_event_object`` names the volume and network events whose owner
must be asked of the daemon, see ``dockgate.tenancy.event_scope``).
"""

from dockgate.tenancy.ownership import (
    OWNER_ATTR,
    OWNER_LABEL,
    PULLED_BASES,
    RESERVED_PREFIX,
    ObjectRef,
    admin_only,
    build_cache_sets,
    buildkit_label_refusal,
    cache_mount_refusal,
    event_visible,
    exec_container,
    filter_list,
    full_id,
    inspect_target,
    is_reserved_label,
    labelless_event_object,
    may_access,
    object_refs,
    owner_of,
    pin,
    returned_config_refusal,
    scope_list,
    stamp,
    with_tenant_sets,
    writes_image,
)
from dockgate.tenancy.quota import (
    Usage,
    needs_inspect,
    needs_usage,
    quota_check,
    usage_from_list,
)
from dockgate.tenancy.tenants import Quotas, Tenant, TenantMap

__all__ = [
    "OWNER_ATTR",
    "OWNER_LABEL",
    "PULLED_BASES",
    "RESERVED_PREFIX",
    "ObjectRef",
    "Quotas",
    "Tenant",
    "TenantMap",
    "Usage",
    "admin_only",
    "build_cache_sets",
    "buildkit_label_refusal",
    "cache_mount_refusal",
    "event_visible",
    "exec_container",
    "filter_list",
    "full_id",
    "inspect_target",
    "is_reserved_label",
    "labelless_event_object",
    "may_access",
    "needs_inspect",
    "needs_usage",
    "object_refs",
    "owner_of",
    "pin",
    "quota_check",
    "returned_config_refusal",
    "scope_list",
    "stamp",
    "usage_from_list",
    "with_tenant_sets",
    "writes_image",
]
