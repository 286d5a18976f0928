"""Property fuzzing of ledger/'s decoders and validators (see docs/fuzzing.md).

Binary formats (entries, genesis, sync frames, export manifests and files) get the
contract of tests/fuzz/targets.py on random bytes and on mutants of valid encodings:
only the typed error escapes and whatever is accepted re-encodes to exactly the
bytes given (they are all canonical). The JSON-facing validators get arbitrary JSON:
`verify_bundle` (proof bundles anyone may hand an auditor) raises only BundleError or
ProofError, `body_from_json` (bodies posted to the API) only SchemaError, and
`check_body` (every entry's body, against its kind's schema) only SchemaError.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ledger.entry import MAX_BODY_DEPTH, sign_entry
from ledger.jsonview import body_from_json, body_to_json
from ledger.kinds import KINDS, check_body
from ledger.merkle import ProofError
from ledger.proofs import BundleError, consistency_bundle, inclusion_bundle, verify_bundle
from ledger.schema import SchemaError
from tests.fuzz.strategies import mutants
from tests.fuzz.targets import TARGETS, fuzz_examples, seeds

LEDGER_TARGETS = ["entry", "genesis", "sync", "export_manifest", "export"]
KEY = SigningKey(bytes(range(32)))


@pytest.mark.parametrize("name", LEDGER_TARGETS)
def test_every_seed_is_accepted(name: str) -> None:
    target = TARGETS[name]
    assert all(target.check(seed) for seed in target.make_seeds())
    for seed in seeds(name):
        target.check(seed)


@pytest.mark.parametrize("name", LEDGER_TARGETS)
@settings(max_examples=fuzz_examples(300), deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes(name: str, data: bytes) -> None:
    TARGETS[name].check(data)


@pytest.mark.parametrize("name", LEDGER_TARGETS)
@settings(max_examples=fuzz_examples(400), deadline=None)
@given(data=st.data())
def test_mutants_of_valid_encodings(name: str, data: st.DataObject) -> None:
    TARGETS[name].check(data.draw(mutants(seeds(name))))


# -- proof bundles ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _valid_bundles() -> list[dict[str, Any]]:
    """An inclusion and a consistency bundle over a 1- and a 2-entry log of KEY's."""
    from ledger.merkle import leaf_hash, node_hash

    first = sign_entry(KEY, 1, None, 1, "note", {"text": "a"})
    leaf1 = leaf_hash(first.encoded)
    head1 = sign_entry(KEY, 2, first.id_bytes, 2, "tree_head", {"size": 1, "root": leaf1})
    root2 = node_hash(leaf1, leaf_hash(head1.encoded))
    head2 = sign_entry(KEY, 3, head1.id_bytes, 3, "tree_head", {"size": 2, "root": root2})
    return [
        inclusion_bundle(first.encoded, 0, 1, [], head1.encoded),
        inclusion_bundle(first.encoded, 0, 2, [leaf_hash(head1.encoded)], head2.encoded),
        consistency_bundle(1, 2, [leaf_hash(head1.encoded)], head1.encoded, head2.encoded),
    ]


VALID_BUNDLES = _valid_bundles()
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


def _verify(bundle: Any) -> None:
    with contextlib.suppress(BundleError, ProofError):
        verify_bundle(bundle, node=bytes(KEY.verify_key))


def test_the_valid_bundles_verify() -> None:
    for bundle in VALID_BUNDLES:
        assert verify_bundle(bundle, node=bytes(KEY.verify_key)).node == bytes(KEY.verify_key)


# A signed tree head whose body is not a tree head's: KeyError('root') escaped.
_FIRST = sign_entry(KEY, 1, None, 1, "note", {"text": "a"})
_NO_ROOT = sign_entry(KEY, 2, _FIRST.id_bytes, 2, "tree_head", {"size": 1})


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(st.sampled_from(VALID_BUNDLES), st.text(max_size=10), _json)
@example(VALID_BUNDLES[0], "entry", "é")  # non-ASCII base64 text: ValueError escaped
@example(VALID_BUNDLES[0], "tree_head", _b64(_NO_ROOT.encoded))
@example(VALID_BUNDLES[2], "old_tree_head", _b64(_NO_ROOT.encoded))
@example(VALID_BUNDLES[1], "hashes", ["zz"])
@example(VALID_BUNDLES[1], "hashes", [None])
@example(VALID_BUNDLES[1], "size", 2**80)
@example(VALID_BUNDLES[1], "index", -1)
def test_bundles_with_one_field_replaced(bundle: dict, field: str, value: Any) -> None:
    """A valid bundle with any field (a real one or not) set to any JSON value."""
    _verify({**bundle, field: value})


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(st.sampled_from(VALID_BUNDLES), st.sampled_from(["entry", "tree_head", "old_tree_head",
                                                        "new_tree_head"]), st.data())
def test_bundles_with_a_mutated_entry(bundle: dict, field: str, data: st.DataObject) -> None:
    if field not in bundle:
        return
    original = base64.b64decode(bundle[field])
    _verify({**bundle, field: _b64(data.draw(mutants([original])))})


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(_json)
def test_arbitrary_json_is_no_bundle(value: Any) -> None:
    _verify(value)


# -- JSON bodies and kind schemas ------------------------------------------------------------


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(_json)
@example({"/": {"bytes": "é"}})  # non-ASCII base64 text: ValueError escaped
@example({"/": {"bytes": "AA="}})
@example({"/": {"bytes": 5}})
def test_body_from_json_raises_only_schema_error(value: Any) -> None:
    try:
        body = body_from_json(value)
    except SchemaError:
        return
    assert body_from_json(body_to_json(body)) == body


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(st.recursive(st.integers(0, 2**64 - 1) | st.text(max_size=8) | st.binary(max_size=8)
                    | st.booleans() | st.none(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10))
def test_any_body_round_trips_through_json(value: Any) -> None:
    assert body_from_json(body_to_json(value)) == value


def test_body_from_json_depth_limit_is_a_schema_error() -> None:
    value: Any = 1
    for _ in range(MAX_BODY_DEPTH + 5):
        value = [value]
    with pytest.raises(SchemaError):
        body_from_json(value)


_CID_TEXT = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
_leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=70)
         | st.binary(max_size=40) | st.sampled_from([bytes(32), bytes(36), _CID_TEXT]))
_body_value = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=3),
                           max_leaves=10)


@settings(max_examples=fuzz_examples(600), deadline=None)
@given(st.sampled_from(sorted(KINDS)), st.data())
def test_check_body_raises_only_schema_error(kind: str, data: st.DataObject) -> None:
    """Bodies shaped like the kind's (its field names, any values) and random ones."""
    names = sorted(KINDS[kind].fields)
    keys = st.sampled_from(names) | st.text(max_size=8)
    body = data.draw(st.dictionaries(keys, _body_value, max_size=len(names) + 2))
    with contextlib.suppress(SchemaError):
        check_body(kind, body)
