//! Stage 4, how a missing name and an existing one are alike: the same letters in another case,
//! one or two edits apart (`helpers.phpp` for `helpers.php`), a missing version link, or digits
//! that differ (`20220828` for `20220829`). Backups and package leftovers never match.

use super::Entry;

/// How `want` and a candidate name are alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Likeness {
    /// Same letters, different case.
    Case,
    /// One or two edits apart (typo, extension variant like `.phpp`/`.php`, `.php5`/`.php`).
    Typo,
    /// The candidate is `want` plus a version (`libfoo.so.1` -> `libfoo.so.1.2.3`): a missing
    /// soname or development link.
    VersionLink,
    /// Differs only in digits (`20220828` vs `20220829`, `8.1` vs `8.2`).
    Digits,
}

/// Suffixes of backups and package-manager leftovers: `x.conf.dpkg-dist` is not "x.conf".
const BACKUP_SUFFIXES: [&[u8]; 14] = [
    b"~",
    b".bak",
    b".orig",
    b".old",
    b".save",
    b".swp",
    b".tmp",
    b".dpkg-dist",
    b".dpkg-old",
    b".dpkg-new",
    b".dpkg-bak",
    b".ucf-dist",
    b".rpmnew",
    b".rpmsave",
];

fn is_backup(name: &[u8]) -> bool {
    name.starts_with(b".#") || BACKUP_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Edits allowed for a name of `len` bytes: short names need a closer match.
fn allowed_edits(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=6 => 1,
        _ => 2,
    }
}

fn digit_skeleton(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_digit() {
            if out.last() != Some(&b'#') {
                out.push(b'#');
            }
        } else {
            out.push(b.to_ascii_lowercase());
        }
    }
    out
}

/// `.1`, `.1.2.3`: one or more dot-separated numbers.
fn is_version_suffix(s: &[u8]) -> bool {
    !s.is_empty()
        && s.split(|b| *b == b'.').enumerate().all(|(i, part)| {
            if i == 0 {
                part.is_empty()
            } else {
                !part.is_empty() && part.iter().all(u8::is_ascii_digit)
            }
        })
}

/// How `cand` is like `want`, and a rank among candidates (lower is better): case-only
/// differences first, then missing version links, then the fewest edits.
fn likeness(want: &[u8], cand: &[u8]) -> Option<(Likeness, usize)> {
    if want == cand || cand.is_empty() || (is_backup(cand) && !is_backup(want)) {
        return None;
    }
    if want.eq_ignore_ascii_case(cand) {
        return Some((Likeness::Case, 0));
    }
    if let Some(suffix) = cand.strip_prefix(want)
        && is_version_suffix(suffix)
    {
        return Some((Likeness::VersionLink, 1));
    }
    let k = allowed_edits(want.len());
    if want.iter().any(u8::is_ascii_digit) && digit_skeleton(want) == digit_skeleton(cand) {
        // Rank by edits too, so libc.so.7 prefers libc.so.6 over libc.so.
        let d = bounded_osa(want, cand, k.max(2) + 6).unwrap_or(64);
        return Some((Likeness::Digits, 2 + d));
    }
    if k == 0 {
        return None;
    }
    let d = bounded_osa(want, cand, k)?;
    // The stems must be alike on their own: `db.phpp` is a typo of `db.php`, but `nope.php` is
    // not one of `home.php` (two of the stem's four letters differ; a 404's template lookup).
    let (ws, cs) = (stem(want), stem(cand));
    bounded_osa(ws, cs, allowed_edits(ws.len()))?;
    Some((Likeness::Typo, 2 + d))
}

/// The name without its last extension (`helpers.phpp` -> `helpers`; `.htaccess` stays whole).
fn stem(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|b| *b == b'.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), ASCII case
/// folded, or `None` if it exceeds `k`. Only a band of width 2k+1 is computed.
fn bounded_osa(a: &[u8], b: &[u8], k: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > k || a.len() > 4096 || b.len() > 4096 {
        return None;
    }
    let inf = usize::MAX / 2;
    let (n, m) = (a.len(), b.len());
    // Three rows of the table; only the band |i - j| <= k, and the cells just outside it that
    // the next rows read, are ever written: O(n * k), not O(n * m).
    let mut prev2 = vec![inf; m + 2];
    let mut prev: Vec<usize> = (0..=m + 1).map(|j| if j <= k { j } else { inf }).collect();
    let mut cur = vec![inf; m + 2];
    for i in 1..=n {
        let lo = i.saturating_sub(k).max(1);
        let hi = (i + k).min(m);
        cur[lo - 1] = if lo == 1 && i <= k { i } else { inf };
        if lo >= 2 {
            cur[lo - 2] = inf;
        }
        let mut row_min = cur[lo - 1];
        for j in lo..=hi {
            let ai = a[i - 1].to_ascii_lowercase();
            let bj = b[j - 1].to_ascii_lowercase();
            let cost = usize::from(ai != bj);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1
                && j > 1
                && ai == b[j - 2].to_ascii_lowercase()
                && a[i - 2].to_ascii_lowercase() == bj
            {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        cur[hi + 1] = inf;
        if row_min > k {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[m];
    (d <= k).then_some(d)
}

/// The closest entry of `entries` to `want`, if any is close enough.
pub(super) fn best_match<'a>(
    want: &[u8],
    entries: &'a [Entry],
    dirs_only: bool,
) -> Option<(&'a Entry, Likeness)> {
    entries
        .iter()
        .filter(|e| !dirs_only || e.dirlike)
        .filter_map(|e| likeness(want, &e.name).map(|(l, d)| (e, l, d)))
        .min_by(|x, y| (x.2, x.1, &x.0.name).cmp(&(y.2, y.1, &y.0.name)))
        .map(|(e, l, _)| (e, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The banded distance agrees with the full table on names of every shape.
    #[test]
    fn the_band_agrees_with_the_full_distance() {
        fn full(a: &[u8], b: &[u8]) -> usize {
            let (n, m) = (a.len(), b.len());
            let mut d = vec![vec![0usize; m + 1]; n + 1];
            for (i, row) in d.iter_mut().enumerate() {
                row[0] = i;
            }
            for (j, cell) in d[0].iter_mut().enumerate() {
                *cell = j;
            }
            for i in 1..=n {
                for j in 1..=m {
                    let (ai, bj) = (a[i - 1].to_ascii_lowercase(), b[j - 1].to_ascii_lowercase());
                    let mut v = (d[i - 1][j] + 1)
                        .min(d[i][j - 1] + 1)
                        .min(d[i - 1][j - 1] + usize::from(ai != bj));
                    if i > 1
                        && j > 1
                        && ai == b[j - 2].to_ascii_lowercase()
                        && a[i - 2].to_ascii_lowercase() == bj
                    {
                        v = v.min(d[i - 2][j - 2] + 1);
                    }
                    d[i][j] = v;
                }
            }
            d[n][m]
        }
        let words: [&[u8]; 12] = [
            b"",
            b"a",
            b"ab",
            b"ba",
            b"abc",
            b"acb",
            b"helpers.php",
            b"helpers.phpp",
            b"hlepers.php",
            b"config.inc.php",
            b"conifg.inc.php",
            b"xyz",
        ];
        for a in words {
            for b in words {
                for k in 0..4 {
                    let want = full(a, b);
                    assert_eq!(
                        bounded_osa(a, b, k),
                        (want <= k).then_some(want),
                        "{:?} {:?} k={k}",
                        String::from_utf8_lossy(a),
                        String::from_utf8_lossy(b)
                    );
                }
            }
        }
    }

    #[test]
    fn osa_and_likeness() {
        assert_eq!(bounded_osa(b"config.php", b"confgi.php", 2), Some(1));
        assert_eq!(bounded_osa(b"class-x.phpp", b"class-x.php", 2), Some(1));
        assert_eq!(bounded_osa(b"abcdef", b"uvwxyz", 2), None);
        let entries: Vec<Entry> = ["libc.so", "libc.so.6", "libfoo.so.2", "libfoo.so.1.2.3"]
            .iter()
            .map(|n| Entry {
                name: n.as_bytes().to_vec(),
                dirlike: false,
            })
            .collect();
        let best = |w: &[u8]| best_match(w, &entries, false).map(|(e, _)| e.name.clone());
        assert_eq!(best(b"libc.so.7"), Some(b"libc.so.6".to_vec()));
        assert_eq!(best(b"libfoo.so.1"), Some(b"libfoo.so.1.2.3".to_vec()));
        assert_eq!(
            likeness(b"libfoo.so.1", b"libfoo.so.1.2.3").map(|l| l.0),
            Some(Likeness::VersionLink)
        );
        assert_eq!(
            likeness(b"8.1", b"8.2").map(|l| l.0),
            Some(Likeness::Digits)
        );
        assert_eq!(likeness(b"x.conf", b"x.conf.dpkg-dist"), None);
        assert_eq!(likeness(b"x.php", b"x.php~"), None);
        assert_eq!(likeness(b"abc", b"abd"), None);
        // Edits in a short stem are not a typo; in the extension, or a longer stem, they are.
        assert_eq!(likeness(b"nope.php", b"home.php"), None);
        assert_eq!(
            likeness(b"db.phpp", b"db.php").map(|l| l.0),
            Some(Likeness::Typo)
        );
        assert_eq!(
            likeness(b"hone.php", b"home.php").map(|l| l.0),
            Some(Likeness::Typo)
        );
        assert_eq!(
            likeness(b"confgi.php", b"config.php").map(|l| l.0),
            Some(Likeness::Typo)
        );
    }
}
