"""Output that reaches people, neutralised where it is written.

Everything a submission controls — the student id (a folder or file name), its notes, messages
quoting its values, its cells' outputs — ends up in files an instructor opens. Each kind of file
gets the neutralisation its established tools use:

- **file names**: :func:`folder_names` turns student ids into one path component each, ASCII,
  percent-encoded (:func:`urllib.parse.quote`), never ``.``/``..``, distinct even on a file system
  that ignores case or normalises Unicode (ids that collide there get a short hash, and are
  reported);
- **HTML links**: built from those names and quoted again for the URL, so an id with ``/``, ``\\``
  or ``..`` cannot make a link leave OUT; text goes through :func:`html.escape`;
- **CSV**: written by :mod:`csv`; a text cell that a spreadsheet would read as a formula (starting
  with ``= + - @``, a tab or a carriage return) gets a leading apostrophe (OWASP's advice);
- **terminal**: :func:`terminal` shows control characters (escape sequences, bidi overrides) as
  visible escapes instead of sending them;
- **notebooks**: :func:`sanitize_notebook` applies nbconvert's ``SanitizeHTML`` policy to the
  outputs (HTML through bleach; JavaScript, SVG, Markdown, widgets and every other active type
  removed) and marks nothing trusted;
- **text encodings**: :func:`text` replaces what cannot be written as UTF-8 (lone surrogates), so
  writing a report never fails on content.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any
from urllib.parse import quote

#: first characters that make a spreadsheet read a cell as a formula
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_MAX_NAME_BYTES = 120


def text(value: Any) -> str:
    """``value`` as text that encodes as UTF-8 (a lone surrogate becomes U+FFFD)."""
    value = value if isinstance(value, str) else str(value)
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def folder_name(student: str) -> str:
    """One safe path component for ``student`` (without the collision suffix of :func:`folder_names`)."""
    name = quote(unicodedata.normalize("NFC", text(student)), safe="-_.~")
    if name in ("", ".", "..") or name.startswith("."):
        name = "_" + name
    if len(name) > _MAX_NAME_BYTES:
        name = name[:_MAX_NAME_BYTES - 9] + "-" + _digest(student)
    return name


def _digest(student: str) -> str:
    return hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def collision_key(student: str) -> str:
    """What two ids share when a case-insensitive, Unicode-normalising file system sees one name."""
    return unicodedata.normalize("NFKC", text(student)).casefold()


def folder_names(students) -> tuple[dict[str, str], list[list[str]]]:
    """``({student: folder name}, groups of ids that would collide)``. Colliding ids (``Ana`` and
    ``ana``; ``é`` composed and decomposed) each get a short hash of the exact id, so their files
    stay apart on any file system."""
    groups: dict[str, list[str]] = {}
    for student in dict.fromkeys(students):
        groups.setdefault(collision_key(folder_name(student)), []).append(student)
    names, collisions = {}, []
    for members in groups.values():
        if len(members) > 1:
            collisions.append(sorted(members))
        for student in members:
            names[student] = folder_name(student) + (f"-{_digest(student)}" if len(members) > 1 else "")
    return names, collisions


def href(*parts: str) -> str:
    """A relative link from path components (each already one component), quoted for a URL."""
    return "/".join(quote(part, safe="") for part in parts)


def csv_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula: text starting like one gets a leading
    apostrophe; numbers and empty cells are left as they are."""
    if not isinstance(value, str):
        return value
    value = text(value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def terminal(value: Any) -> str:
    """``value`` for a terminal: control and format characters (ESC sequences, bidi overrides,
    NUL, carriage returns, newlines) shown as escapes."""
    out = []
    for ch in text(value):
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


#: output types kept as they are; text/html is kept cleaned by bleach; every other type is dropped
SAFE_OUTPUT_TYPES = ("text/plain", "image/png", "image/jpeg")


def sanitize_notebook(nb) -> None:
    """Neutralise the outputs of ``nb`` in place — nbconvert's ``SanitizeHTML`` policy, with the
    tool it uses (bleach; imported only when there is HTML to clean: importing nbconvert itself costs
    seconds): plain text, PNG and JPEG kept, HTML cleaned, JavaScript, SVG, Markdown, widgets and
    every other type dropped — and mark no cell trusted."""
    for cell in nb.cells:
        cell.get("metadata", {}).pop("trusted", None)
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue  # stream and error: text
            data = output.get("data", {})
            for key in list(data):
                if key == "text/html" and isinstance(data[key], (str, list)):
                    import bleach

                    html = data[key] if isinstance(data[key], str) else "".join(data[key])
                    data[key] = bleach.clean(html)
                elif key not in SAFE_OUTPUT_TYPES:
                    del data[key]
            output["metadata"] = {}
    nb.metadata.pop("signature", None)
