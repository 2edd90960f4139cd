"""Raw manifests: the `---`-separated YAML/JSON documents a source hands to the parser.

Pure text-to-data functions; reading files and watching them is the sources' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from pilotfish.model.errors import ConfigError


@dataclass(frozen=True)
class RawDocument:
    """One manifest as a mapping, with where it came from (for error reports)."""

    body: dict[str, Any]
    file: str
    index: int  # position among the file's `---` documents, from 0

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    def meta(self) -> tuple[str | None, str | None]:
        """(namespace, name) if the document says, for locating errors."""
        metadata = self.body.get("metadata")
        if not isinstance(metadata, dict):
            return None, None
        ns, name = metadata.get("namespace"), metadata.get("name")
        return (str(ns) if ns else None, str(name) if name else None)


@dataclass(frozen=True)
class ParsedFile:
    """A file's documents, or why none of them could be read."""

    file: str
    documents: tuple[RawDocument, ...]
    errors: tuple[ConfigError, ...]

    @property
    def unreadable(self) -> bool:
        """True when the file itself is broken, so none of its objects are known."""
        return any(e.document is None for e in self.errors)


# libyaml's parser when PyYAML has it (several times faster); tags resolve in Python either way.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses duplicate mapping keys (YAML allows them, silently).

    Timestamps stay strings, as Kubernetes reads them (`creationTimestamp: 2024-01-01T00:00:00Z`
    unquoted is a string to kubectl; PyYAML would make it a datetime).
    """


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    # Keys written in this mapping may not repeat; keys brought in by a merge (`<<: *base`)
    # may be overridden by written ones, as YAML's merge key means.
    written = {id(key_node) for key_node, _ in node.value if key_node.tag != _MERGE_TAG}
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    seen: set[Any] = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if id(key_node) in written:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def parse_manifest_text(text: str, file: str) -> ParsedFile:
    """Split a manifest file into documents. JSON is YAML, so one path serves both.

    A syntax error anywhere makes the whole file unreadable: PyYAML cannot resume after
    one, and half a file is worse than none (the previous good version stays in force).
    `kind: List` documents (what `kubectl get -o yaml` prints) are expanded.
    """
    try:
        loaded = list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as exc:
        return ParsedFile(file, (), (ConfigError(f"not valid YAML: {_yaml_message(exc)}", file),))

    documents: list[RawDocument] = []
    errors: list[ConfigError] = []
    for index, body in enumerate(loaded):
        if body is None:  # an empty document, e.g. a trailing `---`
            continue
        if not isinstance(body, dict):
            errors.append(
                ConfigError(f"a manifest must be a mapping, got {type(body).__name__}", file, index)
            )
            continue
        if body.get("kind") == "List" and isinstance(body.get("items"), list):
            for item in body["items"]:
                if isinstance(item, dict):
                    documents.append(RawDocument(item, file, index))
                else:
                    errors.append(ConfigError("a List item must be a mapping", file, index))
            continue
        documents.append(RawDocument(body, file, index))
    return ParsedFile(file, tuple(documents), tuple(errors))


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)
