# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Target-side engines of podnet.cluster: standard library only, no Ansible imports.

Each engine reads the current state of one kind of object, computes the whole change, and applies it
in one batch. The modules wrap them (``runner.ModuleRunner``); the boot-time restore program that the
node module installs runs the very same files (``runner.ProcessRunner``).
"""

# The version of the node document: the controller writes it (plugin_utils/document.py), the node engine refuses a
# document or record of a later version than its own.
DOCUMENT_VERSION = 1
