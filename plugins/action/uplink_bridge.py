# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Action for podnet.cluster.uplink_bridge: plan, then change detached and confirm over a new connection.

1. The module runs once, synchronously and read-only (``_phase=plan``): it validates the input and says
   whether anything is to do. Check mode, errors and "nothing to do" end here (no detaching).
2. Otherwise the module runs again through Ansible's async wrapper (``wrap_async``), so it is detached
   from this connection (its own session; a dropped SSH session does not kill it), with a cookie path
   (``_confirm_path``) under the async directory of the host.
3. The controller polls until the module is ready: it creates the cookie only after its batch ran and
   its own reachability check passed (or it finished: check failed, rolled back). Then the connection
   is reset (SSH: the ControlPersist master is stopped) and the controller deletes the cookie over a
   connection opened after the change; that proves the host is reachable after it. A connection
   failure resets and retries until rollback_timeout.
4. The module's result is read with ``async_status`` and returned as this task's result; the job file
   is removed.

The module's documentation (podnet.cluster.uplink_bridge) is the user's side of this.

Without the confirmation within ``rollback_timeout`` seconds of the change, the module rolls back by
itself; the controller's side only reads its verdict.
"""

from __future__ import annotations

import secrets
import shlex
import time

from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

MODULE = "podnet.cluster.uplink_bridge"
OPTIONS = frozenset(("bridge", "uplink", "uplink_address", "state", "check_address", "check_method", "check_timeout",
                     "rollback_timeout", "snapshot_path", "detach", "allow_dynamic_address"))
INTERNAL = ("_phase", "_confirm_path")
# The async wrapper kills the job after this many seconds beyond rollback_timeout (it must never cut
# a rollback short).
ASYNC_GRACE = 120
# Seconds the controller keeps trying to reach the host after rollback_timeout (to read the verdict).
RESULT_GRACE = 60
POLL = 0.5


class ActionModule(ActionBase):
    """See the module documentation of podnet.cluster.uplink_bridge."""

    TRANSFERS_FILES = False
    _VALID_ARGS = OPTIONS

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        self._supports_async = False
        result = super().run(tmp, task_vars)
        del tmp
        if task_vars is None:
            task_vars = {}
        args = dict(self._task.args)
        try:
            plan = self._execute_module(module_name=MODULE, module_args=dict(args, _phase="plan"),
                                        task_vars=task_vars)
            if plan.get("failed") or not plan.get("changed") or self._task.check_mode:
                result.update(plan)
            elif not boolean(args.get("detach", True), strict=False) or not plan.get("commands"):
                result.update(self._execute_module(module_name=MODULE, module_args=dict(args, _phase="apply"),
                                                   task_vars=task_vars))
            else:
                result.update(self._detached(args, task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        host = str(task_vars.get("inventory_hostname") or "")
        msg = result.get("msg")
        if result.get("failed") and host and isinstance(msg, str) and host not in msg:
            result["msg"] = "host %s: %s" % (host, msg)
        module_args = (result.get("invocation") or {}).get("module_args")
        if isinstance(module_args, dict):
            for key in INTERNAL:
                module_args.pop(key, None)
        return result

    # ------------------------------------------------------------------ detached run

    def _job_status(self, jid, async_dir, task_vars):
        """async_status of the job (its ``finished`` is truthy when done, whatever the job file's format), or
        None when it cannot tell yet (the job file not written yet)."""
        status = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                      module_args={"jid": jid, "_async_dir": async_dir})
        if status.get("failed") and (not status.get("finished") or status.get("msg") == "could not find job"):
            return None
        return status

    def _reset_connection(self):
        """Close the connection (SSH: stop the ControlPersist master) so the next command opens a new one."""
        try:
            self._connection.reset()
        except AttributeError:
            display.warning("%s: the connection cannot be reset; confirming over the current one" % MODULE)

    def _detached(self, args, task_vars):
        try:
            rollback_timeout = int(args.get("rollback_timeout", 30))
        except (TypeError, ValueError) as exc:
            raise AnsibleActionFail("rollback_timeout: %r is not a number of seconds" % (args.get("rollback_timeout"),)) from exc
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        cookie = self._connection._shell.join_path(async_dir, "podnet-uplink-%s.confirm" % secrets.token_hex(8))
        saved = self._task.async_val
        self._task.async_val = rollback_timeout + ASYNC_GRACE
        try:
            started = self._execute_module(module_name=MODULE, task_vars=task_vars, wrap_async=True,
                                           module_args=dict(args, _phase="apply", _confirm_path=cookie))
        finally:
            self._task.async_val = saved
        jid = started.get("ansible_job_id")
        if started.get("failed") or not jid:
            started.setdefault("msg", "the detached run of %s did not start" % MODULE)
            started["failed"] = True
            return started
        results_file = started.get("results_file") or self._connection._shell.join_path(async_dir, jid)
        display.vvv("%s: detached as job %s; confirming over a new connection" % (MODULE, jid),
                    host=self._play_context.remote_addr)

        # Wait until the module is ready (its batch ran, its check passed, the cookie exists) or done,
        # over the connection we have; then confirm over a connection opened after that moment. Whether the job
        # is done is asked of async_status, never read from the job file (its format differs between
        # ansible-core releases: "started": 1 before 2.19, true since).
        ready = "if [ -e %s ]; then echo podnet-ready; else echo podnet-waiting; fi" % shlex.quote(cookie)
        confirm = "rm -- %s && echo podnet-confirmed" % shlex.quote(cookie)
        deadline = time.monotonic() + rollback_timeout + 5
        confirmed, last_error, final = False, None, None
        while time.monotonic() < deadline:
            try:
                out = self._low_level_execute_command(ready, sudoable=True).get("stdout", "")
                if "podnet-ready" in out:
                    # a NEW connection: it proves that the controller reaches the host after the change
                    self._reset_connection()
                    out = self._low_level_execute_command(confirm, sudoable=True).get("stdout", "")
                    if "podnet-confirmed" in out:
                        confirmed = True
                        break
                else:
                    status = self._job_status(jid, async_dir, task_vars)
                    if status is not None and status.get("finished"):
                        final = status
                        break
            except AnsibleConnectionFailure as exc:
                last_error = str(exc)
                self._reset_connection()
            time.sleep(POLL)
        display.vvv("%s: job %s %s" % (MODULE, jid, "confirmed" if confirmed else "not confirmed"),
                    host=self._play_context.remote_addr)

        # the verdict (the module may still be rolling back)
        end = time.monotonic() + RESULT_GRACE + (0 if confirmed else 10)
        while final is None and time.monotonic() < end:
            try:
                status = self._job_status(jid, async_dir, task_vars)
            except AnsibleConnectionFailure as exc:
                last_error = str(exc)
                time.sleep(POLL)
                continue
            if status is not None and status.get("finished"):
                final = status
                break
            time.sleep(POLL)
        if final is None:
            raise AnsibleConnectionFailure(
                "%s: no result from the detached job %s on the host within %d s after rollback_timeout (%s); "
                "without the controller's confirmation it rolls back by itself%s"
                % (MODULE, jid, RESULT_GRACE, rollback_timeout, "; last error: %s" % last_error if last_error else ""))
        try:
            self._low_level_execute_command("rm -f -- %s" % shlex.quote(results_file), sudoable=True)
        except AnsibleConnectionFailure:
            pass
        for key in ("ansible_job_id", "finished", "started", "results_file", "stdout_lines", "stderr_lines"):
            final.pop(key, None)
        if not final.get("stdout"):
            final.pop("stdout", None)
        if not final.get("stderr"):
            final.pop("stderr", None)
        return final
