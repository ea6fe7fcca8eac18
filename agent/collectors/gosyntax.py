"""Go's regexp syntax and `Regexp.Expand` templates, for blackbox_exporter's module files.

blackbox_exporter compiles its regexps with Go's RE2, whose syntax is almost Python's; what differs in
practice is rewritten here so that a module file means the same thing to the agent. Used by the tcp
kind's `query_response` (expect, send templates) and the http kind's body and header regexps when they
come from a blackbox module.
"""

from __future__ import annotations

import re

_REPEATED_ANCHOR = re.compile(r"(?<!\\)([\^$])([+*?])")


def go_regex(text: str) -> re.Pattern[str]:
    """A Go (RE2) regexp compiled by Python's re: what RE2 takes that re refuses is rewritten to the same
    meaning: a repeated anchor (blackbox's own example has `^+OK`, which RE2 reads as `(?:^)+OK`: "OK" at
    the start, not "+OK"), and `\\z` (end of text)."""
    try:
        return re.compile(text.replace("\\z", "\\Z"))
    except re.error:
        return re.compile(_REPEATED_ANCHOR.sub(r"(?:\1)\2", text.replace("\\z", "\\Z")))


_TEMPLATE_NAME = re.compile(r"\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+)")


def go_expand(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.Expand: `$1`, `${1}`, `$name`, `${name}` are the match's groups (empty when missing),
    `$$` is a dollar; a `$` not followed by a name is kept."""
    out: list[str] = []
    i = 0
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        if template.startswith("$$", j):
            out.append("$")
            i = j + 2
            continue
        name_match = _TEMPLATE_NAME.match(template, j + 1)
        if name_match is None:
            out.append("$")
            i = j + 1
            continue
        name = name_match.group(1) or name_match.group(2)
        out.append(_group(match, name))
        i = name_match.end()


def _group(match: re.Match[str], name: str) -> str:
    try:
        value = match.group(int(name) if name.isdigit() else name)
    except IndexError:              # no such group
        return ""
    return value or ""
