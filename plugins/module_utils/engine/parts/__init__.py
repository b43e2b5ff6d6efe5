# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The parts of a node: each concern of the node engine is one module here, with one small interface.

``release(ctx)``
    Plan the removal of what the record holds and the document no longer wants (a renamed bridge, a dropped
    chain, a route protocol or overlay device, a runtime's keys): ``ctx.plan.add(name, change, apply)``.
``plan(ctx)``
    Read what the node holds of this part and plan the changes that make it match the document
    (``ctx.plan.add``); whole files go into ``ctx.files``/``ctx.links`` (engine.files plans them all).
``restore(rctx)``
    For the boot path (engine.restore): [(name, function)], each function re-applying this part of the record
    and returning (change, warnings), or raising EngineError (``retry``: worth another try later at boot).

Each change carries its own apply function, so applying is ``apply(change)`` whatever the part. ``ctx`` is the
node's planning context (engine.node.Context); ``rctx`` the restore's (engine.restore.RestoreContext). A part
may leave out ``release`` and ``restore``; ``lib_modules(doc)`` names modules it needs in the restore program
besides its own.

PARTS is the order of planning and applying: every part's release first, then every part's plan. Adding a
part is one new module here and one line in PARTS.
"""

from ansible_collections.podnet.cluster.plugins.module_utils.engine.parts import (
    bridge,
    chains,
    forwarding,
    overlay,
    routes,
    runtime,
    units,
    uplink,
)

PARTS = (
    bridge,         # the bridge, its gateways and MTU
    forwarding,     # sysctls: forwarding, accept_ra, the persisted file
    chains,         # iptables chains
    routes,         # routes of the collection's protocol
    overlay,        # fabric vxlan: VXLAN devices and each peer's entries
    uplink,         # fabric l2_bridge: the uplink in the bridge (moved by uplink_bridge; restored at boot)
    runtime,        # Docker's daemon.json keys and the CNI conflist
    units,          # the boot unit, the Docker drop-in and the restore program
)
