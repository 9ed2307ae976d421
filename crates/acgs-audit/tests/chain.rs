//! The hash chain: hashes recomputed by hand, and every kind of tampering a store can suffer
//! reported at the right index with the right fault.

// A panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use acgs_audit::chain::{
    chain_hash, content_hash, event_hashes, verify_range, ChainVerifier, Fault, StoredEvent,
    GENESIS,
};
use acgs_audit::jcs::canonicalize_value;
use acgs_audit::Hash;
use common::Rng;
use sha2::{Digest, Sha256};

struct Row {
    index: u64,
    payload: Vec<u8>,
    content: Vec<u8>,
    chain: Vec<u8>,
}

fn event(i: u64) -> Vec<u8> {
    canonicalize_value(&serde_json::json!({
        "event_type": "decision",
        "agent_id": format!("agent-{}", i % 7),
        "action": "tool.call",
        "result": if i % 3 == 0 { "deny" } else { "allow" },
        "metadata": {"i": i, "ratio": i as f64 / 8.0, "note": "naïve \"quoted\""},
    }))
    .unwrap()
}

fn build(n: u64) -> Vec<Row> {
    let mut prev = GENESIS;
    (0..n)
        .map(|index| {
            let payload = event(index);
            let (content, chain) = event_hashes(&prev, &payload).unwrap();
            prev = chain;
            Row {
                index,
                payload,
                content: content.to_vec(),
                chain: chain.to_vec(),
            }
        })
        .collect()
}

fn stored(rows: &[Row]) -> impl Iterator<Item = StoredEvent<'_>> {
    rows.iter().map(|r| StoredEvent {
        index: Some(r.index),
        payload: &r.payload,
        content_hash: &r.content,
        chain_hash: &r.chain,
    })
}

#[test]
fn hashes_are_sha256_as_documented() {
    let payload = br#"{"a":1}"#;
    let content: Hash = Sha256::digest(payload).into();
    assert_eq!(content_hash(payload), content);
    let mut joined = GENESIS.to_vec();
    joined.extend_from_slice(&content);
    let chain: Hash = Sha256::digest(&joined).into();
    assert_eq!(chain_hash(&GENESIS, &content), chain);
    assert_eq!(event_hashes(&GENESIS, payload).unwrap(), (content, chain));
    // Known answer: SHA-256 of {"a":1}.
    assert_eq!(
        hex::encode(content),
        "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    );
    // Non-canonical bytes are refused before hashing.
    assert_eq!(
        event_hashes(&GENESIS, b"{\"a\": 1}").unwrap_err().code(),
        "not_canonical"
    );
    assert_eq!(
        event_hashes(&GENESIS, b"{\"a\":").unwrap_err().code(),
        "invalid_json"
    );
}

#[test]
fn an_untouched_chain_verifies() {
    let rows = build(500);
    let report = verify_range(&GENESIS, 0, stored(&rows));
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 500);
    assert_eq!(report.last_chain_hash.to_vec(), rows[499].chain);
    // In two pieces, the second continuing from the first's last chain hash.
    let first = verify_range(&GENESIS, 0, stored(&rows[..200]));
    let second = verify_range(&first.last_chain_hash, 200, stored(&rows[200..]));
    assert!(first.ok() && second.ok());
    assert_eq!(second.last_chain_hash, report.last_chain_hash);
    // An empty range is fine and returns the starting hash.
    let empty = verify_range(&first.last_chain_hash, 200, stored(&[]));
    assert!(empty.ok());
    assert_eq!(empty.checked, 0);
    assert_eq!(empty.last_chain_hash, first.last_chain_hash);
}

fn first_bad(rows: &[Row]) -> (u64, Fault) {
    let report = verify_range(&GENESIS, 0, stored(rows));
    let bad = report.first_bad.expect("tampering went unnoticed");
    assert_eq!(report.checked, bad.index);
    if bad.index > 0 {
        assert_eq!(
            report.last_chain_hash.to_vec(),
            rows[bad.index as usize - 1].chain
        );
    }
    (bad.index, bad.fault)
}

#[test]
fn an_edited_payload_byte_is_found() {
    let mut rows = build(50);
    // Change a digit inside a value: still canonical JSON, but another hash.
    let p = &mut rows[17].payload;
    let at = p.iter().rposition(|b| b.is_ascii_digit()).unwrap();
    p[at] = if p[at] == b'9' { b'8' } else { p[at] + 1 };
    assert_eq!(first_bad(&rows), (17, Fault::ContentMismatch));
}

#[test]
fn an_edited_payload_that_breaks_json_is_found() {
    let mut rows = build(50);
    rows[3].payload[0] = b'[';
    let (index, fault) = first_bad(&rows);
    assert_eq!(index, 3);
    assert_eq!(fault.code(), "not_json");
    let mut rows = build(50);
    rows[4].payload.insert(1, b' ');
    let (index, fault) = first_bad(&rows);
    assert_eq!((index, fault.code()), (4, "not_canonical"));
}

#[test]
fn an_edited_payload_with_recomputed_content_hash_breaks_the_chain() {
    let mut rows = build(50);
    rows[20].payload = event(999);
    rows[20].content = content_hash(&rows[20].payload).to_vec();
    assert_eq!(first_bad(&rows), (20, Fault::ChainMismatch));
}

#[test]
fn a_deleted_row_is_found() {
    // With stored indices, as an index gap.
    let mut rows = build(50);
    rows.remove(30);
    assert_eq!(
        first_bad(&rows),
        (
            30,
            Fault::IndexGap {
                expected: 30,
                found: 31
            }
        )
    );
    // Without indices (or renumbered), the chain no longer links.
    let mut rows = build(50);
    rows.remove(30);
    for (i, r) in rows.iter_mut().enumerate() {
        r.index = i as u64;
    }
    assert_eq!(first_bad(&rows), (30, Fault::ChainMismatch));
    // Deleting the last row is invisible to the chain alone: that is what signed checkpoints
    // (tree size) are for.
    let mut rows = build(50);
    rows.pop();
    assert!(verify_range(&GENESIS, 0, stored(&rows)).ok());
}

#[test]
fn swapped_rows_are_found() {
    let mut rows = build(50);
    rows.swap(10, 11);
    let (i, a) = (rows[10].index, rows[11].index);
    rows[10].index = a;
    rows[11].index = i;
    assert_eq!(first_bad(&rows), (10, Fault::ChainMismatch));
    // Swapping only the payloads (hashes left in place).
    let mut rows = build(50);
    let p = std::mem::take(&mut rows[40].payload);
    rows[40].payload = std::mem::replace(&mut rows[41].payload, p);
    assert_eq!(first_bad(&rows), (40, Fault::ContentMismatch));
}

#[test]
fn edited_stored_hashes_are_found() {
    let mut rows = build(50);
    rows[5].chain[31] ^= 1;
    assert_eq!(first_bad(&rows), (5, Fault::ChainMismatch));
    let mut rows = build(50);
    rows[6].content[0] ^= 0x80;
    assert_eq!(first_bad(&rows), (6, Fault::ContentMismatch));
    let mut rows = build(50);
    rows[7].chain.pop();
    assert_eq!(first_bad(&rows), (7, Fault::MalformedHash));
}

#[test]
fn a_chain_rebuilt_from_another_start_is_found() {
    let rows = build(10);
    let report = verify_range(&[1u8; 32], 0, stored(&rows));
    assert_eq!(report.first_bad.unwrap().fault, Fault::ChainMismatch);
    assert_eq!(report.last_chain_hash, [1u8; 32]);
}

#[test]
fn verifier_state_stays_put_on_failure() {
    let rows = build(3);
    let mut v = ChainVerifier::new(GENESIS, 0);
    v.check(&stored(&rows).next().unwrap()).unwrap();
    let bad = StoredEvent {
        index: Some(1),
        payload: b"{}",
        content_hash: &rows[1].content,
        chain_hash: &rows[1].chain,
    };
    assert!(v.check(&bad).is_err());
    assert_eq!(v.next_index(), 1);
    let good: Vec<_> = stored(&rows).collect();
    v.check(&good[1]).unwrap();
    v.check(&good[2]).unwrap();
    assert_eq!(v.chain_hash().to_vec(), rows[2].chain);
}

#[test]
fn random_corruption_is_found_at_the_corrupted_row() {
    let clean = build(64);
    let mut rng = Rng::new(77);
    for _ in 0..2000 {
        let mut rows: Vec<Row> = clean
            .iter()
            .map(|r| Row {
                index: r.index,
                payload: r.payload.clone(),
                content: r.content.clone(),
                chain: r.chain.clone(),
            })
            .collect();
        let victim = rng.below(64) as usize;
        let row = &mut rows[victim];
        let field = match rng.below(3) {
            0 => &mut row.payload,
            1 => &mut row.content,
            _ => &mut row.chain,
        };
        let at = rng.below(field.len() as u64) as usize;
        let flip = 1 + rng.below(255) as u8;
        field[at] ^= flip;
        let report = verify_range(&GENESIS, 0, stored(&rows));
        let bad = report.first_bad.expect("a flipped byte went unnoticed");
        assert_eq!(bad.index, victim as u64);
    }
}
