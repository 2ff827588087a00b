"""Additions to the knowledge under the rules, each with its source: a new catalogue product (its
own ``source`` field), or a new member of a list (a name, a code, a cue phrase) or of a unit map
(a spelling and its factor), whose source goes under ``member_sources`` in the same file.

An addition is made on a temporary copy of the rules directory first, where the engine's own
loaders (catalogue, value sets, rules) validate it and the sample cohort can be evaluated against
it; only then is the file edited in place, surgically (comments and layout kept), its version
bumped and its status set back to draft for review.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cds import config
from cds.authoring import edit
from cds.authoring.knowledge import KNOWLEDGE_FILES, fmt_number, is_number
from cds.engine.library import RuleLibrary, load_library
from cds.knowledge.catalogue import normalise

ENTRY_ID = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_TEXT = 200
PRODUCT_FIELDS = ("display", "agents", "rxnorm", "names", "covers", "route", "source")


@dataclass(frozen=True)
class MemberEdit:
    """Add ``member`` (with ``factor`` for a unit map) to the list or map at ``path`` of ``file``."""

    file: str
    path: str
    member: str
    source: str
    factor: float | None = None

    def summary(self) -> str:
        """What the edit does, in a line."""
        value = f" = {fmt_number(self.factor)}" if self.factor is not None else ""
        return f"add {self.member!r}{value} to {self.path} ({self.file})"


@dataclass(frozen=True)
class ProductEdit:
    """Add a catalogue product (a brand, biosimilar or other form of catalogue agents)."""

    product_id: str
    fields: dict[str, Any]
    file: str = "catalogue/products.yaml"

    def summary(self) -> str:
        """What the edit does, in a line."""
        return f"add product {self.product_id} ({self.fields['display']}) to {self.file}"


KnowledgeEdit = MemberEdit | ProductEdit


def clean_text(value: str, what: str, required: bool = True) -> str:
    """One line of text from a form (ValueError says why not)."""
    text = value.strip()
    if required and not text:
        raise ValueError(f"{what} is required")
    if len(text) > MAX_TEXT or any(c in text for c in "\r\n\t") or not text.isprintable():
        raise ValueError(f"{what} must be one line of at most {MAX_TEXT} printable characters")
    return text


def split_list(value: str, what: str) -> list[str]:
    """A comma-separated form field as a list of one-line texts."""
    return [clean_text(v, what) for v in value.split(",") if v.strip()]


def member_edit(rel: str, path: str, member: str, source: str, factor: str = "") -> MemberEdit:
    """A member addition from form fields (ValueError says what is wrong)."""
    if rel not in KNOWLEDGE_FILES:
        raise ValueError(f"{rel!r} is not an editable knowledge file")
    number: float | None = None
    if factor.strip():
        try:
            number = float(factor)
        except ValueError:
            raise ValueError(f"factor {factor.strip()!r} is not a number") from None
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"factor {factor.strip()!r} must be a positive finite number")
    text = clean_text(member, "the new member")
    return MemberEdit(rel, path, text, clean_text(source, "the source"), number)


def product_edit(product_id: str, form: dict[str, str]) -> ProductEdit:
    """A new product from form fields (ValueError says what is wrong)."""
    pid = product_id.strip()
    if not ENTRY_ID.match(pid):
        raise ValueError(f"product id {pid!r}: lower-case letters, digits and underscores, from a letter")
    fields: dict[str, Any] = {
        "display": clean_text(form.get("display", ""), "display"),
        "agents": split_list(form.get("agents", ""), "agents"),
        "rxnorm": split_list(form.get("rxnorm", ""), "RxNorm codes"),
        "names": split_list(form.get("names", ""), "names"),
        "covers": split_list(form.get("covers", ""), "covers"),
        "route": clean_text(form.get("route", ""), "route"),
        "source": clean_text(form.get("source", ""), "the source"),
    }
    if not fields["agents"]:
        raise ValueError("a product counts as at least one catalogue agent")
    if any(not code.isdigit() for code in fields["rxnorm"]):
        raise ValueError("RxNorm codes are digits only (RXCUI)")
    if not fields["covers"]:
        del fields["covers"]
    return ProductEdit(pid, fields)


def _closing(text: str, start: int) -> int:
    """Index of the bracket closing the flow collection opened at ``start`` (quotes skipped)."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            i += 1
            while i < len(text) and not (text[i] == ch and (ch == "'" or text[i - 1] != "\\")):
                i += 1
        elif ch == "#" and text[i - 1] in " \n":
            i = text.index("\n", i) if "\n" in text[i:] else len(text)
            continue
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced flow collection")


def _offset(lines: list[str], row: int, col: int) -> int:
    return sum(len(line) + 1 for line in lines[:row]) + col


def _parent(data: Any, path: str) -> tuple[Any, str]:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        if not isinstance(node, CommentedMap) or part not in node:
            raise ValueError(f"{path}: no such list or map")
        node = node[part]
    if not isinstance(node, CommentedMap) or last not in node:
        raise ValueError(f"{path}: no such list or map")
    return node, last


def add_member_text(text: str, path: str, member: str, factor: float | None) -> str:
    """The file text with ``member`` added to the list or unit map at ``path`` (layout kept)."""
    data = edit.read_text(text)
    parent, key = _parent(data, path)
    node = parent[key]
    lines = text.split("\n")
    if isinstance(node, CommentedSeq):
        if factor is not None:
            raise ValueError(f"{path} is a list: a member has no factor")
        if not all(isinstance(v, str) for v in node):
            raise ValueError(f"{path} is not a list of names or codes")
        if member in [str(v) for v in node]:
            raise ValueError(f"{member!r} is already in {path}")
        item = edit.format_scalar(member)
    elif isinstance(node, CommentedMap) and node and all(is_number(v) for v in node.values()):
        if factor is None:
            raise ValueError(f"{path} maps each spelling to a factor: give the factor")
        if member in [str(k) for k in node]:
            raise ValueError(f"{member!r} is already in {path}")
        item = f"{edit.format_scalar(member)}: {fmt_number(factor)}"
    else:
        raise ValueError(f"{path} is not a list or a unit map")
    row, col = parent.lc.value(key)
    if lines[row][col : col + 1] in ("[", "{"):  # flow style (empty ones included)
        start = _offset(lines, row, col)
        close = _closing(text, start)
        inner = text[start + 1 : close]
        if not inner.strip():
            return text[: start + 1] + item + text[close:]
        end = start + 1 + len(inner.rstrip())
        sep = " " if text[end - 1] == "," else ", "
        return text[:end] + sep + item + text[end:]
    if isinstance(node, CommentedSeq):
        row, col = node.lc.item(len(node) - 1)
        lines.insert(row + 1, " " * (col - 2) + "- " + item)
    else:
        last = list(node.keys())[-1]
        row, col = node.lc.key(last)
        lines.insert(row + 1, " " * col + item)
    return "\n".join(lines)


def add_source_text(text: str, path: str, member: str, source: str) -> str:
    """The file text with ``member_sources[path][member] = source`` added (block style, at the end)."""
    data = edit.read_text(text)
    entry = f"    {edit.format_scalar(member)}: {edit.format_scalar(source)}"
    lines = text.rstrip("\n").split("\n")
    sources = data.get("member_sources")
    if sources is None:
        lines += [
            "",
            "# Sources of members added through the workbench: dotted path -> member -> source.",
            "member_sources:",
            f"  {edit.format_scalar(path)}:",
            entry,
        ]
    elif path in sources:
        last = list(sources[path].keys())[-1]
        lines.insert(sources[path].lc.key(last)[0] + 1, entry)
    else:
        at = edit._section_end(data, lines, "member_sources")
        lines[at:at] = [f"  {edit.format_scalar(path)}:", entry]
    return "\n".join(lines) + "\n"


def add_product_text(text: str, product: ProductEdit) -> str:
    """The products file text with one more product, written as one flow-style line."""
    data = edit.read_text(text)
    products = data.get("products")
    if not isinstance(products, CommentedMap):
        raise ValueError("products.yaml has no products section")
    if product.product_id in products:
        raise ValueError(f"product {product.product_id!r} already exists")
    indent = products.lc.key(next(iter(products)))[1] if products else 2
    fields = [k for k in PRODUCT_FIELDS if k in product.fields]
    body = ", ".join(f"{k}: {edit.format_scalar(product.fields[k])}" for k in fields)
    lines = text.rstrip("\n").split("\n")
    at = edit._section_end(data, lines, "products")
    lines.insert(at, " " * indent + f"{product.product_id}: {{{body}}}")
    return "\n".join(lines) + "\n"


def reopen(text: str) -> str:
    """Bump the minor version and set the status to draft (approval removed): a changed file
    needs a new review. A file without a status line gets one."""
    text = edit._reopen_text(text, "minor")
    data = edit.read_text(text)
    if "status" in data:
        return text
    lines = text.split("\n")
    lines.insert(data.lc.key("version")[0] + 1, "status: draft")
    return "\n".join(lines)


def edited_text(rules_dir: Path, change: KnowledgeEdit) -> str:
    """The full new text of the edited file (not written)."""
    text = (rules_dir / change.file).read_text(encoding="utf-8")
    if isinstance(change, ProductEdit):
        new = add_product_text(text, change)
    else:
        new = add_member_text(text, change.path, change.member, change.factor)
        new = add_source_text(new, change.path, change.member, change.source)
    return reopen(new)


@contextmanager
def edited_copy(rules_dir: Path, rel: str, text: str) -> Iterator[RuleLibrary]:
    """The library the engine loads from a temporary copy of the rules directory in which ``rel``
    reads ``text`` (raises what the loaders raise for an invalid edit)."""
    with tempfile.TemporaryDirectory(prefix="cds-knowledge-") as tmp:
        copy = Path(tmp) / "rules"
        shutil.copytree(rules_dir, copy)
        (copy / rel).write_text(text, encoding="utf-8")
        yield load_library(copy, statuses=config.WORKING_STATUSES)


def validated_text(rules_dir: Path, change: KnowledgeEdit) -> str:
    """The edited file's new text, once the engine's loaders accept the edited directory
    (ValueError, ConfigurationError or RuleDefinitionError say why not)."""
    text = edited_text(rules_dir, change)
    with edited_copy(rules_dir, change.file, text) as library:
        check_new_entry(change, library)
    return text


def check_new_entry(change: KnowledgeEdit, library: RuleLibrary) -> None:
    """What the loaders accept but an addition must not do: a product whose names or codes are
    already another entry's (the new entry would never match, or steal another's records)."""
    if not isinstance(change, ProductEdit):
        return
    catalogue = library.catalogue
    for name in change.fields["names"]:
        for key, item in catalogue.items.items():
            if key != change.product_id and normalise(name) in {normalise(n) for n in item.names}:
                raise ValueError(f"name {name!r} is already a name of {key}")


def version_of(text: str) -> str:
    """The ``version`` of a knowledge or rule file text."""
    data = yaml.safe_load(text)
    return str(data.get("version")) if isinstance(data, dict) else "unknown"
