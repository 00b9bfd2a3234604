"""Reading module.yaml text: the YAML documents, each with the line of every field path and
the keys it repeats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from kstatefun.config.module.specs import ModuleError


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as text (StateFun parses ``date`` itself)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

Loc = tuple[str | int, ...]


@dataclass(slots=True)
class Document:
    index: int
    data: Any
    line: int
    lines: dict[Loc, int]
    duplicate_keys: list[tuple[Loc, int]]


def _walk(node: yaml.Node, path: Loc, doc: Document, seen_nodes: set[int], depth: int = 0) -> None:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    # An alias repeats a node that was walked already: walking it again would be exponential
    # in the nesting of aliases (a "billion laughs" document), and recursive ones never end.
    if depth > 64 or id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key = key_node.value
            if key in seen:
                doc.duplicate_keys.append((path + (key,), key_node.start_mark.line + 1))
            seen.add(key)
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), doc, seen_nodes, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), doc, seen_nodes, depth + 1)


def read_documents(text: str, source: str) -> list[Document]:
    documents: list[Document] = []
    try:
        loader = _Loader(text)  # reads the text at once: a NUL or a control character raises
    except yaml.YAMLError as exc:
        raise ModuleError(f"{source}: invalid YAML: {exc}") from None
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            doc = Document(len(documents) + 1, None, node.start_mark.line + 1, {}, [])
            _walk(node, (), doc, set())
            doc.data = loader.construct_document(node)
            documents.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ModuleError(
            f"{source}{where}: invalid YAML: {what}; fix the syntax "
            "(indentation, ':' after keys, '-' before list items, matching quotes)"
        ) from None
    except yaml.YAMLError as exc:
        raise ModuleError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:  # PyYAML composes and constructs recursively
        raise ModuleError(
            f"{source}: invalid YAML: collections nested too deeply to read; a module.yaml "
            "needs only a few levels"
        ) from None
    finally:
        loader.dispose()
    return documents


def line_for(doc: Document, path: Loc) -> int:
    for cut in range(len(path), -1, -1):
        line = doc.lines.get(path[:cut])
        if line is not None:
            return line
    return doc.line
