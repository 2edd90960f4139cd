"""pilotfish.model.documents: manifest text -> raw documents, or why not."""

from __future__ import annotations

from pilotfish.model.documents import ParsedFile, RawDocument, parse_manifest_text

GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: istio-system
spec:
  selector: {istio: ingressgateway}
"""


def _kinds(parsed: ParsedFile) -> list[str]:
    return [d.kind for d in parsed.documents]


def test_multi_document_file_keeps_order_and_indexes() -> None:
    text = GATEWAY + "---\nkind: Service\nmetadata: {name: a}\n---\nkind: Secret\n"
    parsed = parse_manifest_text(text, "dir/all.yaml")

    assert parsed.errors == ()
    assert not parsed.unreadable
    assert _kinds(parsed) == ["Gateway", "Service", "Secret"]
    assert [d.index for d in parsed.documents] == [0, 1, 2]
    assert {d.file for d in parsed.documents} == {"dir/all.yaml"}
    assert parsed.documents[0].body["spec"] == {"selector": {"istio": "ingressgateway"}}
    assert parsed.documents[0].meta() == ("istio-system", "gw")


def test_empty_documents_are_skipped_but_count_for_the_index() -> None:
    # A leading `---`, an empty document between two, a trailing `---`, a comment-only one.
    text = "---\n" + GATEWAY + "---\n---\n# just a comment\n---\nkind: Service\n---\n"
    parsed = parse_manifest_text(text, "f.yaml")

    assert parsed.errors == ()
    assert _kinds(parsed) == ["Gateway", "Service"]
    # the index is the document's position in the file, empty ones included
    assert [d.index for d in parsed.documents] == [0, 3]


def test_empty_and_comment_only_files_have_nothing_and_no_error() -> None:
    for text in ("", "\n\n", "# nothing here\n", "---\n---\n"):
        parsed = parse_manifest_text(text, "empty.yaml")
        assert parsed.documents == ()
        assert parsed.errors == ()
        assert not parsed.unreadable


def test_json_is_read_as_yaml() -> None:
    text = '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}'
    parsed = parse_manifest_text(text, "ns.json")
    assert parsed.errors == ()
    assert parsed.documents == (
        RawDocument(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, "ns.json", 0
        ),
    )


def test_kind_list_is_expanded_into_its_items() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: a}}
- {apiVersion: v1, kind: Secret, metadata: {name: b}}
---
kind: Namespace
metadata: {name: c}
"""
    parsed = parse_manifest_text(text, "list.yaml")

    assert parsed.errors == ()
    assert _kinds(parsed) == ["Service", "Secret", "Namespace"]
    # items keep the index of the List document they came from
    assert [d.index for d in parsed.documents] == [0, 0, 1]
    assert [d.meta() for d in parsed.documents] == [(None, "a"), (None, "b"), (None, "c")]


def test_a_list_item_that_is_not_a_mapping_is_reported_and_the_others_kept() -> None:
    text = "kind: List\nitems:\n- {kind: Service}\n- just a string\n"
    parsed = parse_manifest_text(text, "list.yaml")

    assert _kinds(parsed) == ["Service"]
    assert len(parsed.errors) == 1
    error = parsed.errors[0]
    assert (error.file, error.document) == ("list.yaml", 0)
    assert "List item must be a mapping" in error.message
    assert not parsed.unreadable  # one bad item, not a broken file


def test_not_yaml_makes_the_whole_file_unreadable_with_line_and_column() -> None:
    text = GATEWAY + "---\nkind: Service\nspec:\n  ports: [80, 81\n"
    parsed = parse_manifest_text(text, "broken.yaml")

    assert parsed.documents == ()  # not even the good first document: half a file is worse
    assert parsed.unreadable
    assert len(parsed.errors) == 1
    error = parsed.errors[0]
    assert error.file == "broken.yaml"
    assert error.document is None
    assert error.message.startswith("not valid YAML: ")
    # the flow sequence opened on line 11 never closes: PyYAML notices at the end (line 12)
    assert "(line 12, column 1)" in error.message
    assert "expected ',' or ']'" in error.message


def test_bad_indentation_points_at_the_line() -> None:
    text = "kind: Service\nmetadata:\n  name: a\n namespace: b\n"
    parsed = parse_manifest_text(text, "indent.yaml")
    assert parsed.unreadable
    assert "line 4, column 2" in parsed.errors[0].message


def test_duplicate_keys_are_refused_with_their_location() -> None:
    text = "kind: Service\nmetadata:\n  name: a\n  name: b\n"
    parsed = parse_manifest_text(text, "dup.yaml")

    assert parsed.documents == ()
    assert parsed.unreadable
    message = parsed.errors[0].message
    assert "found duplicate key 'name'" in message
    assert "(line 4, column 3)" in message


def test_duplicate_keys_deep_inside_a_spec_are_refused() -> None:
    text = "kind: Gateway\nspec:\n  servers:\n  - port: {number: 80, number: 81}\n"
    parsed = parse_manifest_text(text, "dup.yaml")
    assert parsed.unreadable
    assert "found duplicate key 'number'" in parsed.errors[0].message


def test_a_merge_key_may_be_overridden_by_a_written_key() -> None:
    # YAML's merge key: written keys override merged ones; that is not a duplicate.
    text = """\
base: &base {protocol: TCP, port: 80}
ports:
- <<: *base
  port: 8080
- <<: *base
"""
    parsed = parse_manifest_text(text, "merge.yaml")
    assert parsed.errors == ()
    assert parsed.documents[0].body["ports"] == [
        {"protocol": "TCP", "port": 8080},
        {"protocol": "TCP", "port": 80},
    ]


def test_timestamps_stay_strings_as_kubernetes_reads_them() -> None:
    text = "kind: Namespace\nmetadata:\n  name: a\n  creationTimestamp: 2024-01-02T03:04:05Z\n"
    parsed = parse_manifest_text(text, "ts.yaml")
    assert parsed.documents[0].body["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"


def test_a_document_that_is_not_a_mapping_is_reported_and_the_others_kept() -> None:
    text = "- a\n- b\n---\n" + GATEWAY + "---\njust text\n---\n42\n"
    parsed = parse_manifest_text(text, "mixed.yaml")

    assert _kinds(parsed) == ["Gateway"]
    assert parsed.documents[0].index == 1
    assert [(e.file, e.document, e.message) for e in parsed.errors] == [
        ("mixed.yaml", 0, "a manifest must be a mapping, got list"),
        ("mixed.yaml", 2, "a manifest must be a mapping, got str"),
        ("mixed.yaml", 3, "a manifest must be a mapping, got int"),
    ]
    # a bad document is not a broken file: the file's other objects are known
    assert not parsed.unreadable


def test_raw_document_kind_and_meta_tolerate_odd_bodies() -> None:
    doc = RawDocument({"metadata": "not a mapping"}, "f.yaml", 0)
    assert doc.kind == ""
    assert doc.meta() == (None, None)
    doc = RawDocument({"kind": "Service", "metadata": {"name": "a", "namespace": "b"}}, "f", 2)
    assert doc.kind == "Service"
    assert doc.meta() == ("b", "a")
