//! RFC 9162 §2.1 Merkle Tree Hash over the audit log, with inclusion and consistency proofs.
//!
//! - Leaf hash: `SHA-256(0x00 || leaf input)`; ACGS's leaf input is an event's 32-byte content
//!   hash, so a leaf hash is `SHA-256(0x00 || SHA-256(canonical event))`.
//! - Interior node: `SHA-256(0x01 || left || right)`.
//! - Root of `n` leaves: split at `k`, the largest power of two below `n`; the empty tree's
//!   root is `SHA-256("")`.
//!
//! Functions that take `leaves` take leaf *hashes* (already prefixed and hashed).

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::Hash;

/// `SHA-256("")`, the root of the empty tree.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n`; `n` must be at least 2.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The roots of the perfect subtrees that make up a tree of `size` leaves, largest first: all
/// a log must keep to extend its root by one leaf in O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<Hash>,
}

impl CompactRange {
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a range saved with [`size`](Self::size) and [`peaks`](Self::peaks); there must
    /// be one peak per set bit of `size`.
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Result<Self> {
        if peaks.len() != size.count_ones() as usize {
            return Err(Error::InvalidArgument(format!(
                "a tree of {size} leaves has {} subtree roots, not {}",
                size.count_ones(),
                peaks.len()
            )));
        }
        Ok(Self { size, peaks })
    }

    /// A range over leaf hashes.
    pub fn from_leaves(leaves: &[Hash]) -> Self {
        let mut range = Self::new();
        for leaf in leaves {
            range.append(*leaf);
        }
        range
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Adds one leaf hash.
    pub fn append(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        let mut size = self.size;
        // Each trailing one bit is a perfect subtree of the same height as `hash`: merge them.
        while size & 1 == 1 {
            match self.peaks.pop() {
                Some(left) => hash = node_hash(&left, &hash),
                None => break,
            }
            size >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The Merkle Tree Hash of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return EMPTY_ROOT;
        };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The Merkle Tree Hash of the given leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    CompactRange::from_leaves(leaves).root()
}

fn prefix(leaves: &[Hash], size: u64) -> Result<&[Hash]> {
    usize::try_from(size)
        .ok()
        .and_then(|n| leaves.get(..n))
        .ok_or_else(|| {
            Error::InvalidProofRequest(format!(
                "tree size {size} exceeds the {} leaves given",
                leaves.len()
            ))
        })
}

/// Splits `d` at `k` leaves.
fn split(d: &[Hash], k: u64) -> (&[Hash], &[Hash]) {
    let k = usize::try_from(k).unwrap_or(usize::MAX).min(d.len());
    d.split_at(k)
}

/// RFC 9162 §2.1.3.1: the inclusion proof (audit path) for leaf `index` in the tree of the first
/// `size` leaves, leaf side first.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>> {
    let d = prefix(leaves, size)?;
    if index >= size {
        return Err(Error::InvalidProofRequest(format!(
            "leaf index {index} is not below tree size {size}"
        )));
    }
    let mut proof = Vec::new();
    path(index, d, &mut proof);
    Ok(proof)
}

fn path(m: u64, d: &[Hash], proof: &mut Vec<Hash>) {
    let n = d.len() as u64;
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    let (left, right) = split(d, k);
    if m < k {
        path(m, left, proof);
        proof.push(root(right));
    } else {
        path(m - k, right, proof);
        proof.push(root(left));
    }
}

/// RFC 9162 §2.1.4.1: the consistency proof that the tree of the first `old_size` leaves is a
/// prefix of the tree of the first `new_size`. Empty when `old_size` is 0 or equals `new_size`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
    let d = prefix(leaves, new_size)?;
    if old_size > new_size {
        return Err(Error::InvalidProofRequest(format!(
            "old size {old_size} exceeds new size {new_size}"
        )));
    }
    let mut proof = Vec::new();
    if old_size > 0 && old_size < new_size {
        subproof(old_size, d, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: u64, d: &[Hash], complete: bool, proof: &mut Vec<Hash>) {
    let n = d.len() as u64;
    if m == n {
        if !complete {
            proof.push(root(d));
        }
        return;
    }
    let k = split_point(n);
    let (left, right) = split(d, k);
    if m <= k {
        subproof(m, left, complete, proof);
        proof.push(root(right));
    } else {
        subproof(m - k, right, false, proof);
        proof.push(root(left));
    }
}

fn failed(reason: &str) -> Error {
    Error::ProofFailed(reason.into())
}

/// RFC 9162 §2.1.3.2: the root that an inclusion proof leads to from `leaf_hash` at `index` in
/// a tree of `size` leaves.
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash> {
    if index >= size {
        return Err(failed("leaf index is not below the tree size"));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(failed("proof is longer than the tree is high"));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(failed("proof is shorter than the tree is high"));
    }
    Ok(r)
}

/// RFC 9162 §2.1.3.2: Ok when `proof` shows `leaf_hash` at `index` in the tree of `size`
/// leaves with root `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<()> {
    if &root_from_inclusion_proof(leaf_hash, index, size, proof)? == root {
        Ok(())
    } else {
        Err(failed("proof leads to another root"))
    }
}

/// RFC 9162 §2.1.4.2: Ok when `proof` shows the tree of `old_size` leaves with root `old_root`
/// to be a prefix of the tree of `new_size` leaves with root `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<()> {
    if old_size > new_size {
        return Err(failed("old size exceeds new size"));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(failed("trees of equal size need an empty proof"));
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(failed("trees of equal size have different roots"))
        };
    }
    if old_size == 0 {
        // The empty tree is a prefix of every tree.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(failed("a proof from the empty tree must be empty"))
        };
    }
    let mut path = proof.iter();
    let first = if old_size.is_power_of_two() {
        *old_root
    } else {
        *path.next().ok_or_else(|| failed("empty proof"))?
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    let mut used = 0usize;
    for c in path {
        used += 1;
        if snode == 0 {
            return Err(failed("proof is longer than the tree is high"));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if used == 0 && old_size.is_power_of_two() {
        return Err(failed("empty proof"));
    }
    if snode != 0 {
        return Err(failed("proof is shorter than the tree is high"));
    }
    if &fr != old_root {
        return Err(failed("proof does not lead to the old root"));
    }
    if &sr != new_root {
        return Err(failed("proof does not lead to the new root"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        let cases = [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ];
        for (n, k) in cases {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let h: Hash = Sha256::digest(b"").into();
        assert_eq!(h, EMPTY_ROOT);
        assert_eq!(root(&[]), EMPTY_ROOT);
    }
}
