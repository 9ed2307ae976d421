//! RFC 9162 Merkle trees: the Certificate Transparency test vectors (8 leaves), then every
//! proof for every tree up to 64 leaves, and mutated proofs that must fail.

// A panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use acgs_audit::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root, root_from_inclusion_proof,
    verify_consistency, verify_inclusion, CompactRange, EMPTY_ROOT,
};
use acgs_audit::Hash;
use common::{hash, Rng};

/// The leaf inputs of the CT / transparency-dev test tree.
const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the trees of sizes 1 to 8 over those leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Leaf hashes of the test tree (level 0 of its node hashes).
const LEAF_HASHES: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];

fn leaves() -> Vec<Hash> {
    LEAF_INPUTS
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect()
}

fn hashes(items: &[&str]) -> Vec<Hash> {
    items.iter().map(|h| hash(h)).collect()
}

#[test]
fn leaf_hashes_and_roots_of_the_test_tree() {
    let leaves = leaves();
    assert_eq!(leaves, hashes(&LEAF_HASHES));
    assert_eq!(root(&[]), EMPTY_ROOT);
    for size in 1..=8 {
        assert_eq!(root(&leaves[..size]), hash(ROOTS[size - 1]), "size {size}");
    }
    // Interior nodes of the full tree, level by level.
    let level1 = [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ];
    for (i, want) in level1.iter().enumerate() {
        assert_eq!(node_hash(&leaves[2 * i], &leaves[2 * i + 1]), hash(want));
    }
}

#[test]
fn compact_range_matches_the_test_tree_after_each_append() {
    let leaves = leaves();
    let mut range = CompactRange::new();
    assert_eq!(range.root(), EMPTY_ROOT);
    for (i, leaf) in leaves.iter().enumerate() {
        range.append(*leaf);
        assert_eq!(range.size(), i as u64 + 1);
        assert_eq!(range.root(), hash(ROOTS[i]));
        assert_eq!(range.peaks().len(), range.size().count_ones() as usize);
        // Saving and restoring the peaks gives the same tree.
        let restored = CompactRange::from_parts(range.size(), range.peaks().to_vec()).unwrap();
        assert_eq!(restored, range);
    }
    // Size 7 = 4 + 2 + 1: the peaks are the roots of those subtrees.
    let seven = CompactRange::from_leaves(&leaves[..7]);
    assert_eq!(
        seven.peaks(),
        &[
            hash("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            hash("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            leaves[6],
        ]
    );
    assert!(CompactRange::from_parts(3, vec![leaves[0]]).is_err());
}

/// (leaf index, tree size, proof) from the CT test vectors.
fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            hashes(&[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]),
        ),
        (
            5,
            8,
            hashes(&[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]),
        ),
        (
            2,
            3,
            hashes(&["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        ),
        (
            1,
            5,
            hashes(&[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ]),
        ),
    ]
}

/// (old size, new size, proof) from the CT test vectors.
fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            hashes(&[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]),
        ),
        (
            6,
            8,
            hashes(&[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]),
        ),
        (
            2,
            5,
            hashes(&[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ]),
        ),
        (
            6,
            7,
            hashes(&[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]),
        ),
    ]
}

#[test]
fn inclusion_proofs_match_the_vectors() {
    let leaves = leaves();
    for (index, size, want) in inclusion_vectors() {
        let proof = inclusion_proof(&leaves, index, size).unwrap();
        assert_eq!(proof, want, "index {index} size {size}");
        let root = hash(ROOTS[size as usize - 1]);
        verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
    }
}

#[test]
fn consistency_proofs_match_the_vectors() {
    let leaves = leaves();
    for (m, n, want) in consistency_vectors() {
        let proof = consistency_proof(&leaves, m, n).unwrap();
        assert_eq!(proof, want, "{m} -> {n}");
        let (old, new) = (hash(ROOTS[m as usize - 1]), hash(ROOTS[n as usize - 1]));
        verify_consistency(m, n, &old, &new, &proof).unwrap();
    }
}

#[test]
fn degenerate_consistency_cases() {
    let (a, b) = (hash(ROOTS[0]), hash(ROOTS[1]));
    // Always consistent: the empty tree, and a tree with itself.
    verify_consistency(0, 0, &a, &a, &[]).unwrap();
    verify_consistency(0, 5, &a, &b, &[]).unwrap();
    verify_consistency(3, 3, &b, &b, &[]).unwrap();
    // Equal sizes with different roots, shrinking trees, missing or surplus proofs.
    assert!(verify_consistency(0, 0, &a, &b, &[]).is_err());
    assert!(verify_consistency(3, 3, &a, &b, &[]).is_err());
    assert!(verify_consistency(3, 3, &a, &a, &[a]).is_err());
    assert!(verify_consistency(0, 1, &a, &b, &[a]).is_err());
    assert!(verify_consistency(2, 1, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 2, &a, &b, &[]).is_err());
    // Requests that describe no proof.
    let leaves = leaves();
    assert_eq!(
        inclusion_proof(&leaves, 8, 8).unwrap_err().code(),
        "invalid_proof_request"
    );
    assert!(inclusion_proof(&leaves, 0, 9).is_err());
    assert!(inclusion_proof(&leaves, 0, 0).is_err());
    assert!(consistency_proof(&leaves, 5, 4).is_err());
    assert!(consistency_proof(&leaves, 1, 9).is_err());
    assert_eq!(
        consistency_proof(&leaves, 0, 8).unwrap(),
        Vec::<Hash>::new()
    );
    assert_eq!(
        consistency_proof(&leaves, 8, 8).unwrap(),
        Vec::<Hash>::new()
    );
    assert!(root_from_inclusion_proof(&a, 0, 0, &[]).is_err());
    assert!(root_from_inclusion_proof(&a, 1, 1, &[]).is_err());
}

fn random_leaves(n: usize, seed: u64) -> Vec<Hash> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| leaf_hash(&rng.bytes(32)))
        .collect::<Vec<_>>()
}

/// Proofs that are the real one with one thing changed; none may verify.
fn mutations(proof: &[Hash], rng: &mut Rng) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i][rng.below(32) as usize] ^= 1 << rng.below(8);
        out.push(p);
    }
    if !proof.is_empty() {
        out.push(proof[..proof.len() - 1].to_vec());
        out.push(proof[1..].to_vec());
        if proof.len() > 1 {
            let mut p = proof.to_vec();
            p.swap(0, proof.len() - 1);
            if p != proof {
                out.push(p);
            }
        }
    }
    let extra = leaf_hash(b"extra");
    let mut longer = proof.to_vec();
    longer.push(extra);
    out.push(longer);
    let mut longer = vec![extra];
    longer.extend_from_slice(proof);
    out.push(longer);
    out
}

#[test]
fn every_inclusion_proof_up_to_64_leaves_verifies_and_mutants_fail() {
    let leaves = random_leaves(64, 9162);
    let mut rng = Rng::new(3);
    for size in 1..=64u64 {
        let tree = &leaves[..size as usize];
        let r = root(tree);
        let mut range = CompactRange::new();
        for leaf in tree {
            range.append(*leaf);
        }
        assert_eq!(range.root(), r);
        for index in 0..size {
            let leaf = &leaves[index as usize];
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            assert!(proof.len() <= 64 - (size - 1).leading_zeros() as usize);
            verify_inclusion(leaf, index, size, &proof, &r).unwrap();
            for bad in mutations(&proof, &mut rng) {
                assert!(
                    verify_inclusion(leaf, index, size, &bad, &r).is_err(),
                    "index {index} size {size}"
                );
            }
            // Wrong leaf, wrong index, wrong size, wrong root.
            let other = leaves[((index + 1) % size) as usize];
            if size > 1 {
                assert!(verify_inclusion(&other, index, size, &proof, &r).is_err());
                assert!(verify_inclusion(leaf, (index + 1) % size, size, &proof, &r).is_err());
            }
            assert!(verify_inclusion(leaf, index, size * 2, &proof, &r).is_err());
            assert!(verify_inclusion(leaf, index, size, &proof, &EMPTY_ROOT).is_err());
        }
    }
}

#[test]
fn every_consistency_proof_up_to_64_leaves_verifies_and_mutants_fail() {
    let leaves = random_leaves(64, 6962);
    let roots: Vec<Hash> = (0..=64).map(|n| root(&leaves[..n])).collect();
    let mut rng = Rng::new(4);
    for n in 1..=64u64 {
        for m in 1..=n {
            let proof = consistency_proof(&leaves, m, n).unwrap();
            let (old, new) = (&roots[m as usize], &roots[n as usize]);
            verify_consistency(m, n, old, new, &proof).unwrap();
            if m == n {
                continue;
            }
            for bad in mutations(&proof, &mut rng) {
                assert!(
                    verify_consistency(m, n, old, new, &bad).is_err(),
                    "{m} -> {n}"
                );
            }
            assert!(verify_consistency(m, n, new, old, &proof).is_err());
            assert!(verify_consistency(m, n, old, &EMPTY_ROOT, &proof).is_err());
            assert!(verify_consistency(m, n, &EMPTY_ROOT, new, &proof).is_err());
            assert!(verify_consistency(m, n * 2, old, new, &proof).is_err());
            // A different history of the same size is not consistent.
            let mut forked = leaves[..n as usize].to_vec();
            forked[(m - 1) as usize] = leaf_hash(b"rewritten");
            let forked_root = root(&forked);
            let forked_proof = consistency_proof(&forked, m, n).unwrap();
            assert!(verify_consistency(m, n, old, &forked_root, &forked_proof).is_err());
        }
    }
}

#[test]
fn larger_trees_agree_with_the_compact_range() {
    let leaves = random_leaves(1000, 7);
    let mut range = CompactRange::new();
    for (i, leaf) in leaves.iter().enumerate() {
        range.append(*leaf);
        if i % 97 == 0 || i == 999 {
            let size = i as u64 + 1;
            assert_eq!(range.root(), root(&leaves[..=i]));
            let proof = inclusion_proof(&leaves, i as u64 / 2, size).unwrap();
            verify_inclusion(&leaves[i / 2], i as u64 / 2, size, &proof, &range.root()).unwrap();
        }
    }
    let proof = consistency_proof(&leaves, 333, 1000).unwrap();
    verify_consistency(333, 1000, &root(&leaves[..333]), &range.root(), &proof).unwrap();
}
