//! Signed notes and checkpoints: the Go `sumdb/note` test keys and signature (Ed25519 signing
//! is deterministic, so ACGS must reproduce it byte for byte), C2SP checkpoint parsing, the
//! checkpointer's refusal to sign inconsistent heads, and random input against the parsers.

// A panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use acgs_audit::checkpoint::{
    key_id, sign_checkpoint, verify_checkpoint, Checkpoint, Checkpointer, SignedNote, SigningKey,
    VerifierKey,
};
use acgs_audit::merkle::{consistency_proof, leaf_hash, root};
use acgs_audit::{Error, Hash};
use common::Rng;

const PETER_PRIVATE: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VERIFIER: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

#[test]
fn reproduces_the_go_note_test_signature() {
    let key = SigningKey::parse(PETER_PRIVATE).unwrap();
    assert_eq!(key.name(), "PeterNeumann");
    assert_eq!(key.key_id(), 0xc74f_20a3);
    assert_eq!(key.to_key_string(), PETER_PRIVATE);
    assert_eq!(key.verifier().to_string(), PETER_VERIFIER);
    let note = key.sign_note(TEXT).unwrap();
    assert_eq!(note, format!("{TEXT}\n{PETER_SIG}"));
}

#[test]
fn verifies_the_go_note_test_signatures() {
    let peter = VerifierKey::parse(PETER_VERIFIER).unwrap();
    let enoch = VerifierKey::parse(ENOCH_VERIFIER).unwrap();
    assert_eq!(enoch.key_id(), 0xaf0c_fe78);
    let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    // Each key finds its own signature and ignores the other.
    assert_eq!(peter.verify_note(both.as_bytes()).unwrap(), TEXT);
    assert_eq!(enoch.verify_note(both.as_bytes()).unwrap(), TEXT);
    let only_enoch = format!("{TEXT}\n{ENOCH_SIG}");
    assert_eq!(
        peter.verify_note(only_enoch.as_bytes()).unwrap_err(),
        Error::UnknownKey("PeterNeumann+c74f20a3".into())
    );
    // A corrupted signature by the expected key is an error, not "no signature".
    let mut corrupt = PETER_SIG.to_string();
    corrupt.insert_str(60, "ABCD");
    let note = format!("{TEXT}\n{corrupt}");
    assert_eq!(
        peter.verify_note(note.as_bytes()).unwrap_err().code(),
        "bad_signature"
    );
    // A changed text no longer verifies.
    let tampered = format!("{}\n{PETER_SIG}", TEXT.replace("answer", "ANSWER"));
    assert_eq!(
        peter.verify_note(tampered.as_bytes()).unwrap_err().code(),
        "bad_signature"
    );
}

#[test]
fn malformed_notes_are_refused() {
    let peter = VerifierKey::parse(PETER_VERIFIER).unwrap();
    let bad: Vec<String> = vec![
        TEXT.to_string(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\u{1}{TEXT}\n{PETER_SIG}"),
        format!("{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!("{TEXT}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
        format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n"),
        format!("{TEXT}\n\u{2014} PeterNeumann not*base64\n"),
        format!("{TEXT}\n{}", PETER_SIG.repeat(101)),
    ];
    for note in &bad {
        let err = peter.verify_note(note.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "malformed_note", "{note:?}: {err}");
    }
    assert_eq!(
        SignedNote::parse(b"\xff\n\n\xe2\x80\x94 a AAAAAAA=\n")
            .unwrap_err()
            .code(),
        "malformed_note"
    );
    // Up to the limit, repeated signatures are fine.
    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(100));
    assert_eq!(peter.verify_note(many.as_bytes()).unwrap(), TEXT);
}

#[test]
fn key_strings_are_checked() {
    // Every proper substring, and every single-byte change, of a key string is refused.
    for s in [PETER_VERIFIER, PETER_PRIVATE] {
        let parse = |t: &str| {
            if s == PETER_VERIFIER {
                VerifierKey::parse(t).map(|_| ())
            } else {
                SigningKey::parse(t).map(|_| ())
            }
        };
        parse(s).unwrap();
        let b = s.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if (i, j) != (0, b.len()) {
                    if let Ok(t) = std::str::from_utf8(&b[i..j]) {
                        assert!(parse(t).is_err(), "{t}");
                    }
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            if let Ok(t) = std::str::from_utf8(&m) {
                // Changing the case of a hex digit in the key id leaves it the same number.
                if !t.eq_ignore_ascii_case(s) {
                    assert!(parse(t).is_err(), "{t}");
                }
            }
        }
    }
    // Wrong algorithm byte and wrong length, with the key id adjusted to match.
    assert!(VerifierKey::parse(
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
    )
    .is_err());
    assert!(VerifierKey::parse(
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    )
    .is_err());
    for name in ["", "a b", "a+b", "tab\there", "nl\n", "nbsp\u{a0}"] {
        assert_eq!(
            SigningKey::from_seed(name, &[7; 32]).unwrap_err().code(),
            "invalid_key",
            "{name:?}"
        );
    }
}

#[test]
fn key_id_follows_the_signed_note_rule() {
    let key = SigningKey::from_seed("example.com/log", &[1; 32]).unwrap();
    let vk = key.verifier();
    let public: [u8; 32] = {
        let s = vk.to_string();
        let b64 = s.rsplit('+').next().unwrap();
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw[0], 0x01);
        raw[1..].try_into().unwrap()
    };
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"example.com/log\n\x01");
    h.update(public);
    let digest = h.finalize();
    let want = u32::from_be_bytes(digest[..4].try_into().unwrap());
    assert_eq!(key_id("example.com/log", &public), want);
    assert_eq!(key.key_id(), want);
    assert_eq!(
        vk.to_string().split('+').nth(1).unwrap(),
        format!("{want:08x}")
    );
}

#[test]
fn generated_keys_round_trip() {
    let a = SigningKey::generate("acgs.example/audit").unwrap();
    let b = SigningKey::generate("acgs.example/audit").unwrap();
    assert_ne!(a.to_key_string(), b.to_key_string());
    let again = SigningKey::parse(&a.to_key_string()).unwrap();
    assert_eq!(again.verifier(), a.verifier());
    let vk = VerifierKey::parse(&a.verifier().to_string()).unwrap();
    assert_eq!(vk, a.verifier());
    assert!(format!("{a:?}").contains("acgs.example/audit"));
    assert!(!format!("{a:?}").contains(&a.to_key_string()));
}

#[test]
fn checkpoint_text_follows_c2sp() {
    let root: Hash = [0xab; 32];
    let cp = Checkpoint::new("example.com/behind-the-sofa", 20852163, root).unwrap();
    let text = cp.to_text();
    assert_eq!(
        text,
        "example.com/behind-the-sofa\n20852163\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"
    );
    assert_eq!(Checkpoint::parse(&text).unwrap(), cp);
    // The C2SP example's root line decodes to 32 bytes.
    let example =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    assert_eq!(Checkpoint::parse(example).unwrap().size, 20852163);
    // Extension lines are allowed.
    let ext = format!("{text}extension one\n");
    assert_eq!(Checkpoint::parse(&ext).unwrap(), cp);
    for bad in [
        "",
        "origin\n",
        "origin\n5\n",
        "origin\n5\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
        "\n5\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n05\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n-5\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n+5\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n18446744073709551616\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n5\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urqw==\n",
        "origin\n5\nnot base64\n",
        "origin\n5\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n",
    ] {
        assert_eq!(
            Checkpoint::parse(bad).unwrap_err().code(),
            "malformed_checkpoint",
            "{bad:?}"
        );
    }
    assert!(Checkpoint::new("", 1, root).is_err());
    assert!(Checkpoint::new("two\nlines", 1, root).is_err());
}

#[test]
fn signed_checkpoints_verify_and_tampering_is_caught() {
    let key = SigningKey::from_seed("acgs.example/audit", &[9; 32]).unwrap();
    let cp = Checkpoint::new("acgs.example/audit", 42, [3; 32]).unwrap();
    let note = sign_checkpoint(&key, &cp).unwrap();
    assert!(note.starts_with(&cp.to_text()));
    assert!(note.contains("\n\n\u{2014} acgs.example/audit "));
    assert_eq!(
        verify_checkpoint(note.as_bytes(), &key.verifier()).unwrap(),
        cp
    );
    // Another key's verifier finds no signature of its own.
    let other = SigningKey::from_seed("acgs.example/audit", &[8; 32]).unwrap();
    assert_eq!(
        verify_checkpoint(note.as_bytes(), &other.verifier())
            .unwrap_err()
            .code(),
        "unknown_key"
    );
    // Change the size: the signature no longer covers the text.
    let forged = note.replacen("\n42\n", "\n43\n", 1);
    assert_eq!(
        verify_checkpoint(forged.as_bytes(), &key.verifier())
            .unwrap_err()
            .code(),
        "bad_signature"
    );
    // A witness cosignature after ours does not disturb verification.
    let witness = SigningKey::from_seed("witness.example", &[5; 32]).unwrap();
    let cosigned_line = witness.sign_note(&cp.to_text()).unwrap();
    let cosig = cosigned_line.rsplit_once("\n\n").unwrap().1;
    let cosigned = format!("{note}{cosig}");
    assert_eq!(
        verify_checkpoint(cosigned.as_bytes(), &key.verifier()).unwrap(),
        cp
    );
    assert_eq!(
        verify_checkpoint(cosigned.as_bytes(), &witness.verifier()).unwrap(),
        cp
    );
}

#[test]
fn checkpointer_refuses_inconsistent_heads() {
    let mut rng = Rng::new(11);
    let leaves: Vec<Hash> = (0..20).map(|_| leaf_hash(&rng.bytes(32))).collect();
    let key = || SigningKey::from_seed("acgs.example/audit", &[4; 32]).unwrap();
    let mut signer = Checkpointer::new(key(), "acgs.example/audit").unwrap();
    assert!(signer.last().is_none());

    let first = signer.sign(5, root(&leaves[..5]), &[]).unwrap();
    assert_eq!(signer.last().unwrap().size, 5);
    // Growth with a valid consistency proof.
    let proof = consistency_proof(&leaves, 5, 12).unwrap();
    let second = signer.sign(12, root(&leaves[..12]), &proof).unwrap();
    // Re-signing the same head is fine.
    signer.sign(12, root(&leaves[..12]), &[]).unwrap();

    // Shrinking, a different root for the same size, a forked history, a bad proof.
    let err = signer.sign(11, root(&leaves[..11]), &[]).unwrap_err();
    assert_eq!(err.code(), "inconsistent_checkpoint");
    let err = signer.sign(12, root(&leaves[1..13]), &[]).unwrap_err();
    assert_eq!(err.code(), "inconsistent_checkpoint");
    let mut forked = leaves.clone();
    forked[3] = leaf_hash(b"rewritten history");
    let forked_proof = consistency_proof(&forked, 12, 20).unwrap();
    let err = signer
        .sign(20, root(&forked[..20]), &forked_proof)
        .unwrap_err();
    assert_eq!(err.code(), "inconsistent_checkpoint");
    let err = signer.sign(20, root(&leaves[..20]), &[]).unwrap_err();
    assert_eq!(err.code(), "inconsistent_checkpoint");
    // Refusals leave the last signed head alone.
    assert_eq!(signer.last().unwrap().size, 12);

    // A restarted signer resumes from its last note and keeps refusing.
    let mut resumed = Checkpointer::resume(key(), "acgs.example/audit", second.as_bytes()).unwrap();
    assert_eq!(resumed.last().unwrap().size, 12);
    assert!(resumed.sign(5, root(&leaves[..5]), &[]).is_err());
    let proof = consistency_proof(&leaves, 12, 20).unwrap();
    let third = resumed.sign(20, root(&leaves[..20]), &proof).unwrap();
    let cp = verify_checkpoint(third.as_bytes(), &resumed.verifier()).unwrap();
    assert_eq!((cp.size, cp.root), (20, root(&leaves[..20])));
    // Resuming needs the signer's own note for the same origin.
    let other = SigningKey::from_seed("acgs.example/audit", &[6; 32]).unwrap();
    assert!(Checkpointer::resume(other, "acgs.example/audit", first.as_bytes()).is_err());
    assert_eq!(
        Checkpointer::resume(key(), "elsewhere", first.as_bytes())
            .unwrap_err()
            .code(),
        "inconsistent_checkpoint"
    );
}

#[test]
fn random_input_never_panics_the_parsers() {
    let key = SigningKey::from_seed("k", &[1; 32]).unwrap();
    let vk = key.verifier();
    let note = key
        .sign_note(&Checkpoint::new("o", 7, [2; 32]).unwrap().to_text())
        .unwrap();
    let mut rng = Rng::new(2);
    for _ in 0..20_000 {
        let len = rng.below(120) as usize;
        let bytes = rng.bytes(len);
        let _ = SignedNote::parse(&bytes);
        let _ = verify_checkpoint(&bytes, &vk);
        let s = String::from_utf8_lossy(&bytes);
        let _ = Checkpoint::parse(&s);
        let _ = VerifierKey::parse(&s);
        let _ = SigningKey::parse(&s);
        // Mutations of a valid note.
        let mut m = note.clone().into_bytes();
        for _ in 0..=rng.below(3) {
            let i = rng.below(m.len() as u64) as usize;
            if rng.chance(2) {
                m[i] = rng.next_u64() as u8;
            } else {
                m.remove(i);
            }
        }
        if let Ok(cp) = verify_checkpoint(&m, &vk) {
            // Only a change outside the signed text and signature can leave it valid.
            assert_eq!((cp.origin.as_str(), cp.size, cp.root), ("o", 7, [2; 32]));
        }
    }
}
