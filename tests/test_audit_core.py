"""The audit core through Python: canonical JSON, the hash chain and its tamper detection,
Merkle proofs and signed checkpoints. Hashes are recomputed here with hashlib, as a third party
verifying offline would."""

from __future__ import annotations

import base64
import hashlib
import json
import random

import pytest

from acgs import _acgs as core
from acgs import errors

GENESIS = b"\x00" * 32


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# ---- canonical JSON ---------------------------------------------------------------------------


def test_canonical_json_follows_rfc_8785() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    want = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert core.canonical_json(value) == want.encode()
    numbers = [333333333.33333329, 1e30, 4.50, 2e-3, 1e-27, -0.0, 1.0, 5e-324]
    assert core.canonical_json(numbers) == b"[333333333.3333333,1e+30,4.5,0.002,1e-27,0,1,5e-324]"
    assert core.canonical_json("\u20ac$\x0f\nA'B\"\\/") == '"\u20ac$\\u000f\\nA\'B\\"\\\\/"'.encode()
    assert core.canonical_json([None, True, False, (1, 2)]) == b"[null,true,false,[1,2]]"


def test_canonicalize_json_parses_strictly() -> None:
    raw = b'{\n "numbers": [1E30, 4.50, 2e-3],\n "escaping": "\\u20ac\\/", "a": {"b": 1, "A": 2}\n}'
    assert core.canonicalize_json(raw) == '{"a":{"A":2,"b":1},"escaping":"\u20ac/","numbers":[1e+30,4.5,0.002]}'.encode()
    with pytest.raises(errors.CanonicalJsonError) as dup:
        core.canonicalize_json(b'{"a": 1, "a": 2}')
    assert dup.value.code == "duplicate_key"
    with pytest.raises(errors.CanonicalJsonError) as bad:
        core.canonicalize_json(b'{"a": }')
    assert bad.value.code == "invalid_json"
    with pytest.raises(errors.CanonicalJsonError) as lone:
        core.canonicalize_json(b'"\\ud800"')
    assert lone.value.code == "invalid_string"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (float("nan"), "number_out_of_range"),
        (float("inf"), "number_out_of_range"),
        ({"x": [float("-inf")]}, "number_out_of_range"),
        ({1: "int key"}, "invalid_value"),
        ({("a",): 1}, "invalid_value"),
        ({1, 2}, "invalid_value"),
        (b"bytes", "invalid_value"),
        (object(), "invalid_value"),
        ("\ud800", "invalid_string"),
        (2**53 + 1, "number_out_of_range"),
        (-(2**60), "number_out_of_range"),
        (10**21, "number_out_of_range"),
    ],
)
def test_canonical_json_refuses_what_it_cannot_keep(value: object, code: str) -> None:
    with pytest.raises(errors.CanonicalJsonError) as caught:
        core.canonical_json(value)
    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, errors.AuditError)


def test_integers_keep_their_digits() -> None:
    assert core.canonical_json(2**53) == b"9007199254740992"
    assert core.canonical_json(10**20) == b"100000000000000000000"
    assert core.canonical_json(True) == b"true"  # a bool is not the int 1
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    with pytest.raises(errors.CanonicalJsonError) as caught:
        core.canonical_json(deep)
    assert caught.value.code == "invalid_value"


def random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 7, 2**53, -(2**31), rng.randrange(-(10**9), 10**9)])
    if kind == 2:
        return rng.choice([0.5, -2.25, 1e-7, 1e21, 123.456, rng.random() * 10 ** rng.randrange(-9, 25)])
    if kind == 3:
        return "".join(rng.choice('aZ "\\/\n\x01é€😀\u2028\x7f') for _ in range(rng.randrange(6)))
    if kind in (4, 5):
        keys = ["", "a", "b", "A", "é", "€", "😀", "\ue000", "\U00010000", "1", "10", "\n"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def as_doubles(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: as_doubles(v) for k, v in value.items()}
    assert isinstance(value, (list, tuple))
    return [as_doubles(v) for v in value]


def test_canonical_forms_agree_and_round_trip() -> None:
    rng = random.Random(8785)
    for _ in range(2000):
        value = random_value(rng)
        canonical = core.canonical_json(value)
        # Parsing Python's own JSON text gives the same bytes, and canonical bytes are a fixed point.
        assert core.canonicalize_json(json.dumps(value).encode()) == canonical
        assert core.canonicalize_json(canonical) == canonical
        # What goes in comes back out, as JCS numbers: doubles (so a float of integral value
        # may come back as an int, with the digits JCS printed).
        assert as_doubles(json.loads(canonical)) == as_doubles(value)


# ---- hash chain -------------------------------------------------------------------------------


def build_log(n: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    payloads, contents, chains = [], [], []
    prev = GENESIS
    for i in range(n):
        payload = core.canonical_json(
            {
                "event_type": "policy_decision",
                "agent_id": f"agent-{i % 5}",
                "action": "files.write",
                "result": "deny" if i % 3 == 0 else "allow",
                "metadata": {"i": i, "note": "naïve"},
            }
        )
        content, chain = core.event_hashes(prev, payload)
        payloads.append(payload)
        contents.append(content)
        chains.append(chain)
        prev = chain
    return payloads, contents, chains


def test_event_hashes_are_the_documented_sha256() -> None:
    payload = core.canonical_json({"a": 1})
    content, chain = core.event_hashes(GENESIS, payload)
    assert content == sha256(payload)
    assert chain == sha256(GENESIS + content)
    with pytest.raises(errors.CanonicalJsonError) as caught:
        core.event_hashes(GENESIS, b'{"a": 1}')
    assert caught.value.code == "not_canonical"
    with pytest.raises(errors.AuditArgumentError):
        core.event_hashes(b"short", payload)


def test_an_untouched_log_verifies_in_one_piece_and_in_two() -> None:
    payloads, contents, chains = build_log(200)
    report = core.verify_chain(GENESIS, payloads, contents, chains, 0)
    assert report.ok and report.checked == 200
    assert report.first_bad_index is None and report.reason is None
    assert report.last_chain_hash == chains[-1]
    first = core.verify_chain(GENESIS, payloads[:80], contents[:80], chains[:80], 0, list(range(80)))
    rest = core.verify_chain(
        first.last_chain_hash, payloads[80:], contents[80:], chains[80:], 80, list(range(80, 200))
    )
    assert first.ok and rest.ok and rest.last_chain_hash == chains[-1]
    assert "ok=True" in repr(rest)


def first_bad(
    payloads: list[bytes], contents: list[bytes], chains: list[bytes], indices: list[int] | None = None
) -> tuple[int | None, str | None]:
    report = core.verify_chain(GENESIS, payloads, contents, chains, 0, indices)
    assert not report.ok
    assert report.checked == report.first_bad_index
    assert report.detail
    return report.first_bad_index, report.reason


def test_tampering_is_reported_at_the_first_bad_index() -> None:
    payloads, contents, chains = build_log(100)

    # Edit one byte of a payload.
    edited = list(payloads)
    edited[42] = edited[42].replace(b'"i":42', b'"i":43')
    assert first_bad(edited, contents, chains) == (42, "content_mismatch")

    # Edit one byte so that the payload is no longer JSON / no longer canonical.
    broken = list(payloads)
    broken[7] = b"[" + broken[7][1:]
    assert first_bad(broken, contents, chains) == (7, "not_json")
    spaced = list(payloads)
    spaced[8] = spaced[8].replace(b":", b": ", 1)
    assert first_bad(spaced, contents, chains) == (8, "not_canonical")

    # Rewrite a payload and its content hash: the chain breaks there.
    forged, forged_contents = list(payloads), list(contents)
    forged[60] = core.canonical_json({"event_type": "forged"})
    forged_contents[60] = sha256(forged[60])
    assert first_bad(forged, forged_contents, chains) == (60, "chain_mismatch")

    def rows(order: list[int]) -> tuple[list[bytes], list[bytes], list[bytes]]:
        return [payloads[i] for i in order], [contents[i] for i in order], [chains[i] for i in order]

    # Delete a row: an index gap where indices are stored, a broken chain where they are not.
    kept = [i for i in range(100) if i != 30]
    assert first_bad(*rows(kept), kept) == (30, "index_gap")
    assert first_bad(*rows(kept)) == (30, "chain_mismatch")

    # Swap two rows.
    swapped = list(range(100))
    swapped[50], swapped[51] = 51, 50
    assert first_bad(*rows(swapped)) == (50, "chain_mismatch")

    # Edit a stored hash.
    bad_chain = list(chains)
    bad_chain[90] = bytes([bad_chain[90][0] ^ 1]) + bad_chain[90][1:]
    assert first_bad(payloads, contents, bad_chain) == (90, "chain_mismatch")
    bad_content = list(contents)
    bad_content[91] = bad_content[91][:31]
    assert first_bad(payloads, bad_content, chains) == (91, "malformed_hash")


def test_verify_chain_checks_its_arguments() -> None:
    payloads, contents, chains = build_log(3)
    with pytest.raises(errors.AuditArgumentError):
        core.verify_chain(GENESIS, payloads, contents[:2], chains, 0)
    with pytest.raises(errors.AuditArgumentError):
        core.verify_chain(GENESIS, payloads, contents, chains, 0, [0, 1])
    with pytest.raises(errors.AuditArgumentError):
        core.verify_chain(b"\x00", payloads, contents, chains, 0)
    with pytest.raises(TypeError):
        core.verify_chain(GENESIS, ["not bytes"], contents[:1], chains[:1], 0)  # type: ignore[list-item]
    empty = core.verify_chain(GENESIS, [], [], [], 0)
    assert empty.ok and empty.checked == 0 and empty.last_chain_hash == GENESIS


# ---- Merkle tree ------------------------------------------------------------------------------

CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 Merkle Tree Hash over leaf hashes, written out plainly."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def test_merkle_roots_match_the_ct_vectors() -> None:
    leaves = [core.leaf_hash(bytes.fromhex(h)) for h in CT_LEAVES]
    assert leaves[1] == sha256(b"\x00\x00")
    assert core.merkle_root([]) == sha256(b"")
    tree = core.CompactRange()
    for n in range(1, 9):
        tree.append(leaves[n - 1])
        assert core.merkle_root(leaves[:n]) == bytes.fromhex(CT_ROOTS[n - 1])
        assert tree.root() == bytes.fromhex(CT_ROOTS[n - 1]) == mth(leaves[:n])
    resumed = core.CompactRange(tree.size, tree.peaks)
    assert resumed.root() == tree.root() and resumed.size == 8
    with pytest.raises(errors.AuditArgumentError):
        core.CompactRange(3, tree.peaks)
    with pytest.raises(errors.AuditArgumentError):
        core.merkle_root([b"short"])


def test_every_proof_verifies_and_mutants_do_not() -> None:
    rng = random.Random(9162)
    leaves = [core.leaf_hash(rng.randbytes(32)) for _ in range(20)]
    roots = [mth(leaves[:n]) for n in range(21)]
    for size in range(1, 21):
        for index in range(size):
            proof = core.inclusion_proof(leaves, index, size)
            assert core.verify_inclusion(leaves[index], index, size, proof, roots[size])
            for i in range(len(proof)):
                bad = list(proof)
                bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
                assert not core.verify_inclusion(leaves[index], index, size, bad, roots[size])
            assert not core.verify_inclusion(leaves[index], index, size, proof + [leaves[0]], roots[size])
            assert not core.verify_inclusion(leaves[index], index, size * 2, proof, roots[size])
        for m in range(1, size + 1):
            proof = core.consistency_proof(leaves, m, size)
            assert core.verify_consistency(m, size, roots[m], roots[size], proof)
            if m < size:
                assert not core.verify_consistency(m, size, roots[size], roots[m], proof)
                assert not core.verify_consistency(m, size, roots[m], roots[size], proof[:-1])
    # Malformed hashes make a proof false rather than an error.
    assert not core.verify_inclusion(b"x", 0, 1, [], b"x")
    assert not core.verify_consistency(1, 2, roots[1], roots[2], [b"short"])
    with pytest.raises(errors.AuditArgumentError) as caught:
        core.inclusion_proof(leaves, 20, 20)
    assert caught.value.code == "invalid_proof_request"


# ---- checkpoints ------------------------------------------------------------------------------


def test_signed_checkpoints_verify_and_tampering_is_caught() -> None:
    private, verifier = core.generate_signing_key("acgs.example/audit")
    assert private.startswith("PRIVATE+KEY+acgs.example/audit+")
    name, key_id, _key = verifier.split("+", 2)
    assert name == "acgs.example/audit" and len(key_id) == 8
    root = mth([core.leaf_hash(b"one")])
    note = core.sign_checkpoint(private, "acgs.example/audit", 1, root)
    body, _, signature = note.partition("\n\n")
    assert body + "\n" == f"acgs.example/audit\n1\n{base64.b64encode(root).decode()}\n"
    assert signature.startswith("\u2014 acgs.example/audit ") and signature.endswith("\n")
    assert core.verify_checkpoint(note, verifier) == ("acgs.example/audit", 1, root)

    with pytest.raises(errors.CheckpointSignatureError) as forged:
        core.verify_checkpoint(note.replace("\n1\n", "\n2\n", 1), verifier)
    assert forged.value.code == "bad_signature"
    _, other = core.generate_signing_key("acgs.example/audit")
    with pytest.raises(errors.CheckpointSignatureError) as unknown:
        core.verify_checkpoint(note, other)
    assert unknown.value.code == "unknown_key"
    with pytest.raises(errors.CheckpointFormatError):
        core.verify_checkpoint(body, verifier)
    with pytest.raises(errors.SigningKeyError):
        core.verify_checkpoint(note, verifier[:-2])
    with pytest.raises(errors.SigningKeyError):
        core.generate_signing_key("has space")
    with pytest.raises(errors.SigningKeyError):
        core.sign_checkpoint("PRIVATE+KEY+nope", "o", 1, root)


def test_checkpointer_refuses_inconsistent_checkpoints() -> None:
    rng = random.Random(6962)
    leaves = [core.leaf_hash(rng.randbytes(32)) for _ in range(30)]
    private, verifier = core.generate_signing_key("acgs.example/audit")
    signer = core.Checkpointer(private, "acgs.example/audit")
    assert signer.last_size is None and signer.last_root is None
    assert signer.verifier_key == verifier and signer.origin == "acgs.example/audit"

    signer.sign(10, core.merkle_root(leaves[:10]))
    note = signer.sign(20, core.merkle_root(leaves[:20]), core.consistency_proof(leaves, 10, 20))
    assert signer.last_size == 20 and signer.last_root == core.merkle_root(leaves[:20])
    assert core.verify_checkpoint(note, verifier)[1] == 20

    forked = list(leaves)
    forked[4] = core.leaf_hash(b"rewritten")
    for size, root, proof in [
        (19, core.merkle_root(leaves[:19]), []),
        (20, core.merkle_root(forked[:20]), []),
        (30, core.merkle_root(forked[:30]), core.consistency_proof(forked, 20, 30)),
        (30, core.merkle_root(leaves[:30]), []),
    ]:
        with pytest.raises(errors.InconsistentCheckpointError):
            signer.sign(size, root, proof)
    assert signer.last_size == 20

    # After a restart the signer resumes from its last note and still refuses to go back.
    resumed = core.Checkpointer(private, "acgs.example/audit", last_note=note)
    assert resumed.last_size == 20
    with pytest.raises(errors.InconsistentCheckpointError):
        resumed.sign(10, core.merkle_root(leaves[:10]))
    resumed.sign(30, core.merkle_root(leaves[:30]), core.consistency_proof(leaves, 20, 30))
    assert repr(resumed) == "<Checkpointer origin='acgs.example/audit' last_size=30>"
