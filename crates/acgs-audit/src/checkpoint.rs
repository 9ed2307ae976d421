//! Signed checkpoints: a C2SP tlog-checkpoint body signed as a C2SP signed note with Ed25519.
//!
//! Checkpoint body (every line ends in `\n`):
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <standard base64 of the 32-byte RFC 9162 root>
//! ```
//!
//! Signed note: the body, an empty line, then one line per signature,
//! `— <key name> <base64(key id (4 bytes, big-endian) || Ed25519 signature (64 bytes))>`, the
//! dash being U+2014. The signature covers the body bytes. The key id is the first 4 bytes of
//! `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)`.
//!
//! Key strings (the format of Go's `golang.org/x/mod/sumdb/note`):
//! - verifier: `<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>`
//! - private: `PRIVATE+KEY+<name>+<key id, 8 hex digits>+<base64(0x01 || 32-byte seed)>`

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::merkle;
use crate::Hash;

/// The signed-note algorithm byte for Ed25519.
const ALG_ED25519: u8 = 0x01;
/// The signature line prefix: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Signatures beyond this many make a note malformed (the C2SP floor is 16; Go's reader allows
/// 100), which bounds the work an untrusted note can cause.
pub const MAX_SIGNATURES: usize = 100;

/// Whether `name` can name a key: non-empty, no whitespace, no `+`, no control characters.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

fn check_key_name(name: &str) -> Result<()> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidKey(format!(
            "key name {name:?} must be non-empty, without spaces, '+' or control characters"
        )))
    }
}

/// The signed-note key id of an Ed25519 public key under `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, ALG_ED25519]);
    h.update(public_key);
    let digest = h.finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    u32::from_be_bytes(id)
}

/// Splits `<name>+<8 hex digits>+<base64>` and checks the algorithm byte.
fn split_key_string<'a>(s: &'a str, what: &str) -> Result<(&'a str, u32, Vec<u8>)> {
    let bad = |why: &str| Error::InvalidKey(format!("{what} key string: {why}"));
    // Names and hex ids hold no '+', base64 may: split off the first two fields only.
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected <name>+<key id>+<key>"));
    };
    check_key_name(name)?;
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("key id must be 8 hex digits"));
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| bad("bad key id"))?;
    let raw = B64.decode(b64).map_err(|_| bad("key is not base64"))?;
    match raw.split_first() {
        Some((&ALG_ED25519, key)) if key.len() == 32 => Ok((name, id, key.to_vec())),
        Some((&ALG_ED25519, _)) => Err(bad("an Ed25519 key is 32 bytes")),
        _ => Err(bad("unknown key algorithm")),
    }
}

fn key32(bytes: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| Error::InvalidKey("a key is 32 bytes".into()))
}

/// An Ed25519 key that signs notes under a name.
pub struct SigningKey {
    name: String,
    id: u32,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}+{:08x})", self.name, self.id)
    }
}

impl SigningKey {
    /// A new key from the operating system's randomness.
    pub fn generate(name: &str) -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Randomness(e.to_string()))?;
        let key = Self::from_seed(name, &seed);
        seed.fill(0);
        key
    }

    /// The key with the given 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self> {
        check_key_name(name)?;
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`; the key id must match.
    pub fn parse(s: &str) -> Result<Self> {
        let rest = s.strip_prefix("PRIVATE+KEY+").ok_or_else(|| {
            Error::InvalidKey("private key string must start PRIVATE+KEY+".into())
        })?;
        let (name, id, mut seed) = split_key_string(rest, "private")?;
        let parsed = key32(&seed).and_then(|s| Self::from_seed(name, &s));
        seed.fill(0);
        let key = parsed?;
        if key.id != id {
            return Err(Error::InvalidKey(format!(
                "key id {id:08x} does not match the key (expected {:08x})",
                key.id
            )));
        }
        Ok(key)
    }

    /// The private key string, `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`. Secret.
    pub fn to_key_string(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        let s = format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(&raw)
        );
        raw.fill(0);
        s
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` (which must end in a newline and be a valid note text) and returns the
    /// signed note.
    pub fn sign_note(&self, text: &str) -> Result<String> {
        check_note_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(raw)
        ))
    }
}

impl FromStr for SigningKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

fn check_note_text(text: &str) -> Result<()> {
    if !text.ends_with('\n') {
        return Err(Error::MalformedNote(
            "note text must end with a newline".into(),
        ));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(Error::MalformedNote(
            "note text must not hold empty lines".into(),
        ));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(Error::MalformedNote(
            "note text must not hold control characters".into(),
        ));
    }
    Ok(())
}

/// An Ed25519 public key that verifies notes signed under a name.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl fmt::Display for VerifierKey {
    /// `<name>+<key id>+<base64(0x01 || public key)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }
}

impl VerifierKey {
    /// Parses `<name>+<key id>+<base64(0x01 || public key)>`; the key id must match.
    pub fn parse(s: &str) -> Result<Self> {
        let (name, id, raw) = split_key_string(s, "verifier")?;
        let bytes = key32(&raw)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| Error::InvalidKey("not an Ed25519 public key".into()))?;
        let expected = key_id(name, &bytes);
        if expected != id {
            return Err(Error::InvalidKey(format!(
                "key id {id:08x} does not match the key (expected {expected:08x})"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    fn label(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// Parses a signed note and verifies this key's signature on it; returns the note text.
    /// Signatures by other keys are ignored (they may be witnesses or rotated keys), but the
    /// note must carry at least one signature by this key and all of them must verify.
    pub fn verify_note<'a>(&self, note: &'a [u8]) -> Result<&'a str> {
        let parsed = SignedNote::parse(note)?;
        let mut verified = false;
        for sig in parsed.signatures.iter() {
            if sig.name != self.name || sig.key_id != self.id {
                continue;
            }
            let signature = Signature::from_slice(&sig.signature)
                .map_err(|_| Error::BadSignature(self.label()))?;
            self.key
                .verify_strict(parsed.text.as_bytes(), &signature)
                .map_err(|_| Error::BadSignature(self.label()))?;
            verified = true;
        }
        if verified {
            Ok(parsed.text)
        } else {
            Err(Error::UnknownKey(self.label()))
        }
    }
}

impl FromStr for VerifierKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature<'a> {
    pub name: &'a str,
    pub key_id: u32,
    pub signature: Vec<u8>,
}

/// A signed note split into its text and signature lines (nothing verified yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote<'a> {
    /// The signed text, ending in a newline.
    pub text: &'a str,
    pub signatures: Vec<NoteSignature<'a>>,
}

impl<'a> SignedNote<'a> {
    /// Parses the C2SP signed-note syntax.
    pub fn parse(note: &'a [u8]) -> Result<Self> {
        let bad = |why: &str| Error::MalformedNote(why.into());
        let s = std::str::from_utf8(note).map_err(|_| bad("not UTF-8"))?;
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(bad("control character"));
        }
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| bad("no empty line before the signatures"))?;
        let text = s.get(..=split).ok_or_else(|| bad("no text"))?;
        let block = s.get(split + 2..).unwrap_or_default();
        if block.is_empty() || !block.ends_with('\n') {
            return Err(bad(
                "signature block must be non-empty lines ending in newlines",
            ));
        }
        let mut signatures = Vec::new();
        for line in block.split_terminator('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(bad("too many signatures"));
            }
            let body = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| bad("signature line must start with an em dash and a space"))?;
            let (name, b64) = body
                .split_once(' ')
                .ok_or_else(|| bad("signature line must be '— <name> <signature>'"))?;
            if !is_valid_key_name(name) {
                return Err(bad("invalid key name in a signature line"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| bad("signature is not base64"))?;
            let (Some(id), Some(signature)) = (raw.get(..4), raw.get(4..)) else {
                return Err(bad("signature too short"));
            };
            if signature.is_empty() {
                return Err(bad("signature too short"));
            }
            let mut id_bytes = [0u8; 4];
            id_bytes.copy_from_slice(id);
            signatures.push(NoteSignature {
                name,
                key_id: u32::from_be_bytes(id_bytes),
                signature: signature.to_vec(),
            });
        }
        Ok(Self { text, signatures })
    }
}

/// A tree head: the log's origin, its size and its RFC 9162 root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// A checkpoint; the origin must be a non-empty line without control characters.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self> {
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(Error::MalformedCheckpoint(
                "origin must be a non-empty line without control characters".into(),
            ));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// The checkpoint body: `<origin>\n<size>\n<base64 root>\n`.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body. Extension lines after the root are allowed (C2SP permits
    /// them) but must be non-empty; ACGS writes none.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::MalformedCheckpoint(why.into());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("must end with a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("needs origin, size and root lines"));
        };
        if lines.any(str::is_empty) {
            return Err(bad("empty extension line"));
        }
        let canonical_size = size.bytes().all(|b| b.is_ascii_digit())
            && !size.is_empty()
            && (size == "0" || !size.starts_with('0'));
        if !canonical_size {
            return Err(bad("size must be a decimal number without leading zeros"));
        }
        let size: u64 = size.parse().map_err(|_| bad("size out of range"))?;
        let root_bytes = B64.decode(root).map_err(|_| bad("root is not base64"))?;
        let root =
            Hash::try_from(root_bytes.as_slice()).map_err(|_| bad("root must be 32 bytes"))?;
        Self::new(origin, size, root)
    }
}

/// Signs a checkpoint without any consistency check; see [`Checkpointer`] for the log's signer.
pub fn sign_checkpoint(key: &SigningKey, checkpoint: &Checkpoint) -> Result<String> {
    key.sign_note(&checkpoint.to_text())
}

/// Verifies `key`'s signature on a checkpoint note and returns the checkpoint.
pub fn verify_checkpoint(note: &[u8], key: &VerifierKey) -> Result<Checkpoint> {
    let text = key.verify_note(note)?;
    Checkpoint::parse(text)
}

/// The log's signer: it never signs a checkpoint inconsistent with the last one it signed.
#[derive(Debug)]
pub struct Checkpointer {
    key: SigningKey,
    origin: String,
    last: Option<Checkpoint>,
}

impl Checkpointer {
    /// A signer that has signed nothing yet.
    pub fn new(key: SigningKey, origin: &str) -> Result<Self> {
        Checkpoint::new(origin, 0, merkle::EMPTY_ROOT)?;
        Ok(Self {
            key,
            origin: origin.to_owned(),
            last: None,
        })
    }

    /// A signer that continues from the last checkpoint it signed, given as its signed note
    /// (verified here with the signer's own key; its origin must match).
    pub fn resume(key: SigningKey, origin: &str, last_note: &[u8]) -> Result<Self> {
        let last = verify_checkpoint(last_note, &key.verifier())?;
        if last.origin != origin {
            return Err(Error::InconsistentCheckpoint(format!(
                "the last checkpoint is for origin {:?}, not {origin:?}",
                last.origin
            )));
        }
        let mut signer = Self::new(key, origin)?;
        signer.last = Some(last);
        Ok(signer)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The last checkpoint signed (or resumed from).
    pub fn last(&self) -> Option<&Checkpoint> {
        self.last.as_ref()
    }

    pub fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// Signs the tree head (`size`, `root`) if `proof` is a consistency proof from the last
    /// signed checkpoint to it (empty for the first checkpoint and for re-signing the same
    /// head); refuses anything else.
    pub fn sign(&mut self, size: u64, root: Hash, proof: &[Hash]) -> Result<String> {
        let candidate = Checkpoint::new(&self.origin, size, root)?;
        if let Some(last) = &self.last {
            if size < last.size {
                return Err(Error::InconsistentCheckpoint(format!(
                    "tree size {size} is below the last signed size {}",
                    last.size
                )));
            }
            merkle::verify_consistency(last.size, size, &last.root, &root, proof).map_err(
                |e| {
                    Error::InconsistentCheckpoint(format!(
                        "tree of size {size} is not an extension of the last signed tree of size {}: {e}",
                        last.size
                    ))
                },
            )?;
        }
        let note = sign_checkpoint(&self.key, &candidate)?;
        self.last = Some(candidate);
        Ok(note)
    }
}
