# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The verify matrices of the HTML report (plugin_utils/report): each judged cell coloured by its result, the
failing cells grouped by source and reason above a size, and the HTML escaping that the whole page uses.

Pure functions over the judged verify result ``podnet_verify_result``, standard library only.
"""

from __future__ import annotations

import html
import json
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ansible_collections.podnet.cluster.plugins.plugin_utils.data import plain
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import natural_key

#: Above this many nodes the verify matrix is a summary and the failing cells grouped by source.
MATRIX_MAX = 30
CHECK_TITLES = {"pod_pod": "pod \u2192 pod", "node_pod": "node \u2192 pod", "pod_node": "pod \u2192 node",
                "egress": "pod \u2192 external"}
FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}
CELL = 16
CELL_LARGE = 24


def esc(value: Any) -> str:
    """Text for HTML and SVG: element content and attribute values alike."""
    return html.escape("" if value is None else str(value), quote=True)


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size - 1] + "\u2026"


def _failure_index(verify: Mapping[str, Any]) -> Dict[Tuple[str, int, str, str], Mapping[str, Any]]:
    out = {}
    for failure in verify.get("failures") or []:
        key = (str(failure.get("check")), int(failure.get("family") or 0), str(failure.get("source")),
               str(failure.get("target")))
        out[key] = failure
    return out


def matrix_cells(verify: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every judged cell: check, family, title, source, target, state (ok / failed / skipped), text, reason."""
    verify = plain(verify) or {}
    failures = _failure_index(verify)
    out = []
    for matrix in verify.get("checks") or []:
        check, family = str(matrix.get("check")), int(matrix.get("family") or 0)
        rows = matrix.get("rows") or {}
        for source in matrix.get("sources") or []:
            for target in matrix.get("targets") or []:
                text = (rows.get(source) or {}).get(target)
                failure = failures.get((check, family, str(source), str(target)))
                if failure is None and (text is None or text == "-"):
                    state, reason = "skipped", "not probed in this run"
                elif failure is not None or not str(text).startswith("ok"):
                    state = "failed"
                    reason = str((failure or {}).get("reason") or text)
                else:
                    state, reason = "ok", str(text)
                out.append({"check": check, "family": family, "title": matrix.get("title") or check,
                            "source": str(source), "target": str(target), "state": state,
                            "text": "" if text is None else str(text), "reason": reason})
    return out


def _cell_attrs(cell: Mapping[str, Any]) -> str:
    return ('class="cell %s" data-check="%s" data-family="%s" data-source="%s" data-target="%s"'
            % (esc(cell["state"]), esc(cell["check"]), esc(cell["family"]), esc(cell["source"]), esc(cell["target"])))


def _cell_tip(cell: Mapping[str, Any]) -> str:
    what = "%s %s: %s \u2192 %s" % (FAMILY_NAMES.get(cell["family"], cell["family"]),
                                    CHECK_TITLES.get(cell["check"], cell["check"]), cell["source"], cell["target"])
    return "%s\n%s: %s" % (what, cell["state"], cell["reason"])


def matrix_svg(matrix: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> str:
    """One check and family as a grid of coloured cells: rows the sources, columns the targets."""
    sources = [str(s) for s in matrix.get("sources") or []]
    targets = [str(t) for t in matrix.get("targets") or []]
    cell = CELL_LARGE if len(targets) <= 12 else CELL
    label_w = 10 + 7 * min(28, max((len(s) for s in sources), default=4))
    head_h = 10 + 6 * min(28, max((len(t) for t in targets), default=4))
    width = label_w + cell * len(targets) + head_h // 2 + 10
    height = head_h + cell * len(sources) + 10
    out = ['<svg class="matrix" role="img" width="%d" height="%d" viewBox="0 0 %d %d">' % (width, height, width,
                                                                                           height)]
    out.append("<title>%s</title>" % esc(matrix.get("title") or ""))
    for j, target in enumerate(targets):
        cx = label_w + j * cell + cell // 2 + 2
        out.append('<text x="%d" y="%d" class="collabel" transform="rotate(-60 %d %d)">%s</text>'
                   % (cx, head_h - 4, cx, head_h - 4, esc(_clip(target, 28))))
    by_key = {(c["source"], c["target"]): c for c in cells}
    for i, source in enumerate(sources):
        y = head_h + i * cell
        out.append('<text x="%d" y="%d" class="rowlabel">%s</text>' % (label_w - 6, y + cell // 2 + 4,
                                                                       esc(_clip(source, 28))))
        for j, target in enumerate(targets):
            found = by_key.get((source, target))
            if found is None:
                continue
            out.append('<rect x="%d" y="%d" width="%d" height="%d" %s><title>%s</title></rect>'
                       % (label_w + j * cell, y, cell - 2, cell - 2, _cell_attrs(found), esc(_cell_tip(found))))
    out.append("</svg>")
    return "".join(out)


def failures_grouped(cells: Sequence[Mapping[str, Any]]) -> str:
    """The failing cells of one matrix, grouped by source and reason (the large-cluster form).

    Sources whose failing cells are the same (the same targets, for the same reasons: a node that every node fails
    to reach) share one entry, so one broken node costs two lines, not one per node. Each entry carries its sources
    as JSON in ``data-sources``; each failing target is an element of class ``cell failed`` with its reason in
    ``title``: the entry's cells are its sources times its targets.
    """
    by_source: Dict[str, List[Tuple[str, str]]] = {}
    for cell in cells:
        if cell["state"] == "failed":
            by_source.setdefault(cell["source"], []).append((cell["target"], cell["reason"]))
    if not by_source:
        return '<p class="allok">no failing cell</p>'
    groups: Dict[Tuple[Tuple[str, str], ...], List[str]] = {}
    for source in sorted(by_source, key=natural_key):
        signature = tuple(sorted(by_source[source], key=lambda item: (natural_key(item[0]), item[1])))
        groups.setdefault(signature, []).append(source)
    sample = {(c["source"], c["target"]): c for c in cells if c["state"] == "failed"}
    out = ['<ul class="failgroups">']
    for signature, sources in sorted(groups.items(), key=lambda item: (-len(item[0]) * len(item[1]),
                                                                       natural_key(item[1][0]))):
        out.append("<li class=\"failgroup\" data-sources='%s'>" % esc(json.dumps(sources)))
        if len(sources) == 1:
            out.append("<b>%s</b>" % esc(sources[0]))
        else:
            out.append("<b>%d sources</b> " % len(sources))
            out.append(" ".join('<span class="src">%s</span>' % esc(s) for s in sources))
        out.append(" \u2192 %d failing target%s<ul>" % (len(signature), "" if len(signature) == 1 else "s"))
        reasons: Dict[str, List[str]] = {}
        for target, reason in signature:
            reasons.setdefault(reason, []).append(target)
        for reason in sorted(reasons):
            out.append('<li><span class="reason">%s</span>: ' % esc(reason))
            chips = []
            for target in reasons[reason]:
                cell = dict(sample[(sources[0], target)])
                if len(sources) > 1:
                    cell["source"] = "%d sources" % len(sources)
                chips.append('<span class="cell failed" data-check="%s" data-family="%s" data-target="%s" '
                             'title="%s">%s</span>' % (esc(cell["check"]), esc(cell["family"]), esc(target),
                                                       esc(_cell_tip(cell)), esc(target)))
            out.append(" ".join(chips))
            out.append("</li>")
        out.append("</ul></li>")
    out.append("</ul>")
    return "".join(out)


def verify_html(verify: Mapping[str, Any]) -> str:
    verify = plain(verify) or {}
    all_cells = matrix_cells(verify)
    big = len(verify.get("nodes") or []) > MATRIX_MAX
    passed = bool(verify.get("passed"))
    out = ['<section class="verify"><h2>Verify</h2>']
    out.append('<p class="verdict %s">%s: %s of %s probes ok%s</p>' % (
        "passed" if passed else "failed", "PASSED" if passed else "FAILED", esc(verify.get("ok_count", 0)),
        esc(verify.get("total", 0)),
        "" if passed else ", %s failed" % esc(verify.get("failed_count", 0))))
    sampling = verify.get("sampling") or {}
    if sampling.get("mode") == "sampled":
        out.append('<p class="sampling">A sample: %s, seed %s. Cells not probed in this run are grey.</p>'
                   % (esc(sampling.get("why") or ""), esc(sampling.get("seed"))))
    out.append('<p class="legend"><span class="chip ok"></span> ok <span class="chip failed"></span> failed '
               '(hover a cell for the reason) <span class="chip skipped"></span> not probed</p>')
    if big:
        out.append("<p>%d nodes: each check shows its count and the failing cells, grouped by source.</p>"
                   % len(verify.get("nodes") or []))
    out.append('<div class="matrices">')
    for matrix in verify.get("checks") or []:
        check, family = str(matrix.get("check")), int(matrix.get("family") or 0)
        cells = [c for c in all_cells if c["check"] == check and c["family"] == family]
        failed = sum(1 for c in cells if c["state"] == "failed")
        out.append('<figure class="check" data-check="%s" data-family="%s"><figcaption>%s: %s of %s ok%s'
                   '</figcaption>' % (esc(check), esc(family), esc(matrix.get("title") or check),
                                      esc(matrix.get("ok_count", len(cells) - failed)),
                                      esc(matrix.get("total", len(cells))),
                                      ", <b>%d failed</b>" % failed if failed else ""))
        out.append(failures_grouped(cells) if big else matrix_svg(matrix, cells))
        out.append("</figure>")
    out.append("</div></section>")
    return "".join(out)
