# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Schemas read from the Kubernetes website's generated reference pages (tests/data/kubernetes/*.excerpt.md), and a
checker of documents and flags against them.

A config API page has one section per type: a heading ``## `Name` {#anchor}``, then either ``(Alias of `string`)``
or a table whose rows name a field (``<code>name</code>``, maybe ``<B>[Required]</B>``) and its type (a builtin in
``<code>``, or a link to another type's section). A flags page has two rows per flag; the first names the flag and
its value type (none for a boolean flag).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

DATA = Path(__file__).resolve().parents[1] / "data" / "kubernetes"

_SECTION = re.compile(r"^## `(?P<name>[A-Za-z0-9]+)`\s+\{#(?P<anchor>[^}]+)\}\s*$", re.M)
_ROW = re.compile(r"<tr><td><code>(?P<field>[^<]+)</code>(?P<req> <B>\[Required\]</B>)?<br/>\s*(?P<type>.*?)</td>",
                  re.S)
_CODE = re.compile(r"<code>([^<]+)</code>")
_CONST = re.compile(r"<td><code>([^<]+)</code></td></tr>")
_FLAG = re.compile(r'<td colspan="2">(?P<flag>--[a-z0-9-]+)(?P<rest>[^<]*)</td>')

BUILTINS = {"string": str, "bool": bool, "int32": int, "int64": int, "int": int, "float32": float,
            "meta/v1.Duration": str}


@dataclass
class Field:
    name: str
    type: str          # as the page writes it: string, []Arg, map[string]bool, Networking, ...
    required: bool
    const: Optional[str] = None   # apiVersion and kind: the one value the page gives


def parse_types(text: str) -> Dict[str, Any]:
    """{type name: {field name: Field}} for a type with a table, or the builtin name for an alias (LocalMode: string)."""
    types: Dict[str, Any] = {}
    marks = list(_SECTION.finditer(text))
    for i, mark in enumerate(marks):
        body = text[mark.end():marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        alias = re.search(r"\(Alias of `([^`]+)`\)", body)
        if alias and "<table" not in body:
            types[mark.group("name")] = alias.group(1)
            continue
        table = body[body.find("<tbody>"):body.find("</tbody>")]
        fields: Dict[str, Field] = {}
        for row in _ROW.finditer(table):
            raw = row.group("type")
            code = _CODE.search(raw)
            kind = html.unescape(code.group(1) if code else raw.strip())
            const = None
            if row.group("field") in ("apiVersion", "kind"):
                value = _CONST.search(table[row.end() - 5:row.end() + 200])
                const = value.group(1) if value else None
            fields[row.group("field")] = Field(row.group("field"), kind, bool(row.group("req")), const)
        types[mark.group("name")] = fields
    return types


def load_types(*names: str) -> Dict[str, Any]:
    types: Dict[str, Any] = {}
    for name in names:
        types.update(parse_types((DATA / name).read_text(encoding="utf-8")))
    return types


def check(doc: Any, type_name: str, types: Dict[str, Any], path: str = "") -> List[str]:
    """Every problem of ``doc`` as a value of ``type_name``: an unknown field, a value of the wrong type, an
    apiVersion or kind other than the page's. Recursive; [] when the document agrees with the schema."""
    where = path or type_name
    if type_name.startswith("[]"):
        if not isinstance(doc, list):
            return ["%s: %s is a %s, the schema says %s" % (where, _show(doc), type(doc).__name__, type_name)]
        problems: List[str] = []
        for i, item in enumerate(doc):
            problems += check(item, type_name[2:], types, "%s[%d]" % (where, i))
        return problems
    if type_name.startswith("map[string]"):
        if not isinstance(doc, dict):
            return ["%s: %s is not a map (%s)" % (where, _show(doc), type_name)]
        problems = []
        for key, value in doc.items():
            problems += check(value, type_name[len("map[string]"):], types, "%s.%s" % (where, key))
        return problems
    if type_name in BUILTINS:
        want = BUILTINS[type_name]
        ok = isinstance(doc, want) and not (want is int and isinstance(doc, bool))
        return [] if ok else ["%s: %s is a %s, the schema says %s" % (where, _show(doc), type(doc).__name__,
                                                                      type_name)]
    if type_name not in types:
        return ["%s: type %s is not in the schema excerpt" % (where, type_name)]
    schema = types[type_name]
    if isinstance(schema, str):  # an alias of a builtin
        return check(doc, schema, types, where)
    if not isinstance(doc, dict):
        return ["%s: %s is not an object (%s)" % (where, _show(doc), type_name)]
    problems = []
    for key, value in doc.items():
        spec = schema.get(key)
        if spec is None:
            problems.append("%s.%s: no field %r in %s (fields: %s)"
                            % (where, key, key, type_name, ", ".join(sorted(schema))))
            continue
        if spec.const is not None and value != spec.const:
            problems.append("%s.%s: %r, the schema says %r" % (where, key, value, spec.const))
            continue
        problems += check(value, spec.type, types, "%s.%s" % (where, key))
    return problems


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def parse_flags(text: str) -> Dict[str, str]:
    """{flag name without dashes: value type} of a flags page (``bool`` for a flag that names no type)."""
    flags: Dict[str, str] = {}
    for row in _FLAG.finditer(text):
        rest = html.unescape(row.group("rest")).replace("\xa0", " ").strip()
        kind = rest.split(" ", 1)[0] if rest and not rest.startswith("Default:") else "bool"
        flags[row.group("flag")[2:]] = kind
    return flags


def check_flags(flags: List[str], known: Dict[str, str]) -> List[str]:
    """Every problem of ``--name=value`` flags: an unknown flag, a value its type does not take."""
    problems = []
    for flag in flags:
        match = re.fullmatch(r"--([a-z0-9-]+)=(.*)", flag)
        if not match:
            problems.append("%r is not --name=value" % flag)
            continue
        name, value = match.groups()
        kind = known.get(name)
        if kind is None:
            problems.append("--%s: no such flag on the page" % name)
        elif kind == "bool" and value not in ("true", "false"):
            problems.append("--%s=%s: a boolean flag takes true or false" % (name, value))
        elif kind.startswith("int") and not re.fullmatch(r"-?[0-9]+", value):
            problems.append("--%s=%s: the flag takes an %s" % (name, value, kind))
        elif kind == "string" and not value:
            problems.append("--%s: empty value" % name)
    return problems
