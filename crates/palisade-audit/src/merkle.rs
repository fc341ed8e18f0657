//! RFC 6962 Merkle trees over a checkpoint's entries: the root, an inclusion proof, its check.
//!
//! Leaves are [`crate::entry::leaf_hash`]es; an interior node is
//! SHA-256(0x01 ‖ left ‖ right); the tree of n leaves splits at the largest
//! power of two below n (RFC 6962 §2.1), and the empty tree's root is
//! SHA-256 of nothing. Proofs are RFC 9162 §2.1.3 audit paths, checked with
//! its §2.1.3.2 algorithm.

use sha2::{Digest, Sha256};

use crate::entry::Hash;

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The Merkle tree hash of `leaves`.
///
/// Pairs each level left to right and carries an odd last node up as it
/// is, which builds exactly RFC 6962's tree. `scratch` is reused between
/// calls so that verifying a long log allocates once.
pub fn root_with(leaves: &[Hash], scratch: &mut Vec<Hash>) -> Hash {
    if leaves.is_empty() {
        return Sha256::digest([]).into();
    }
    scratch.clear();
    scratch.extend_from_slice(leaves);
    let mut len = scratch.len();
    while len > 1 {
        let mut out = 0;
        let mut i = 0;
        while i < len {
            let right = if i + 1 < len {
                scratch.get(i + 1)
            } else {
                None
            };
            let next = match (scratch.get(i), right) {
                (Some(l), Some(r)) => node(l, r),
                (Some(l), None) => *l,
                (None, _) => break,
            };
            if let Some(slot) = scratch.get_mut(out) {
                *slot = next;
            }
            out += 1;
            i += 2;
        }
        len = out;
    }
    scratch.first().copied().unwrap_or_default()
}

/// The Merkle tree hash of `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    root_with(leaves, &mut Vec::new())
}

/// The audit path of leaf `index` in the tree of `leaves`, leaf side first.
/// `None` when `index` is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    collect(leaves, index, &mut path);
    Some(path)
}

fn collect(leaves: &[Hash], index: usize, path: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let split = split_point(leaves.len());
    let (left, right) = leaves.split_at(split);
    if index < split {
        collect(left, index, path);
        path.push(root(right));
    } else {
        collect(right, index - split, path);
        path.push(root(left));
    }
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Whether `path` proves `leaf` is leaf `index` of a tree of `size` leaves
/// whose root is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::entry::leaf_hash;

    /// RFC 6962's definition, recursively, to check the iterative root against.
    fn reference(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let (l, r) = leaves.split_at(split_point(n));
                node(&reference(l), &reference(r))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(i.to_string().as_bytes()))
            .collect()
    }

    #[test]
    fn the_empty_tree_and_one_leaf() {
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let one = leaves(1);
        assert_eq!(root(&one), one[0]);
        assert_eq!(inclusion_proof(&one, 0).unwrap(), Vec::<Hash>::new());
        assert!(verify_inclusion(&one[0], 0, 1, &[], &one[0]));
    }

    #[test]
    fn rfc6962_test_vector_for_eight_leaves() {
        // The certificate-transparency test data: leaves "", 0x00, 0x10,
        // 0x2021, 0x3031, 0x40414243, 0x5051525354555657, 0x606162…6f.
        let data: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        assert_eq!(
            hex::encode(root(&leaves)),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        assert_eq!(
            hex::encode(root(&leaves[..3])),
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
        );
    }

    proptest! {
        #[test]
        fn every_proof_verifies_and_no_other_leaf_does(n in 1usize..70, pick in 0usize..70, other in 0usize..70) {
            let leaves = leaves(n);
            let index = pick % n;
            let r = root(&leaves);
            prop_assert_eq!(r, reference(&leaves));
            let path = inclusion_proof(&leaves, index).unwrap();
            prop_assert!(verify_inclusion(&leaves[index], index as u64, n as u64, &path, &r));
            let other = other % n;
            if other != index {
                prop_assert!(!verify_inclusion(&leaves[other], index as u64, n as u64, &path, &r));
                prop_assert!(!verify_inclusion(&leaves[index], other as u64, n as u64, &path, &r));
            }
            // (A path can also fit a tree of another size with the same root:
            // the size a proof is checked against comes from the signed
            // checkpoint, never from the proof.)
            prop_assert!(!verify_inclusion(&leaf_hash(b"forged"), index as u64, n as u64, &path, &r));
        }
    }
}
