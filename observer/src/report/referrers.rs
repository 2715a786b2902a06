//! Stage 4, where the bad name is written: the file and line that name a failing path (the PHP
//! script that requires it, the Apache `Include` or `LoadModule`, the php.ini `extension_dir`).
//!
//! Candidates are the files the failing row's processes read ([`crate::opened`]), in their own
//! view of the filesystem; when none of them names the path, the service's configuration
//! directories and the failing path's own directories. A line is a referrer when it names the
//! failing path, or a tail of it ending in its file name, at name boundaries (`helpers.php` is
//! not a reference to `helpers.phpp`, nor `webapp.php` to `app.php`); a reference by file name
//! alone counts only on a line that loads files (`require`, `Include`, `extension=`). For a
//! missing directory (a mistyped `extension_dir`), a line naming that directory by at least two
//! components counts too. Comment lines never do.
//!
//! The search is bounded: [`MAX_FILE_BYTES`] read per file, [`MAX_BYTES`] and [`MAX_FILES`] per
//! report, [`MAX_TIME`] in all. A file is read only when the failing process could read it by
//! its mode bits (a file swapped for a symlink to a secret after the process opened it is not
//! shown), through the view's root (`openat2` with `RESOLVE_IN_ROOT`).

use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::model::Failure;
use crate::opened::OpenedFile;
use crate::place::{View, ViewRef};
use crate::report::hints::may_read;
use crate::report::walk::{basename, dirname, join_child};

/// Bytes read from one file, at most.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;
/// Bytes read per report, at most.
pub(crate) const MAX_BYTES: u64 = 64 << 20;
/// Files read per report, at most.
pub(crate) const MAX_FILES: usize = 4000;
/// Time spent searching per report, at most.
pub(crate) const MAX_TIME: Duration = Duration::from_secs(3);
/// Referrers kept per row.
const MAX_REFERRERS: usize = 5;
/// A referrer's line is shown up to this many bytes (cut around the reference).
const MAX_LINE: usize = 400;
/// Files taken from one configuration directory tree in the fallback.
const MAX_FALLBACK_FILES: usize = 400;

/// What a line does with the name it holds, when it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Directive {
    /// Apache `Include`: a missing file stops the configuration.
    Include,
    /// Apache `IncludeOptional`: a missing file is skipped.
    IncludeOptional,
    /// Apache `LoadModule`, `LoadFile`.
    LoadModule,
    /// php.ini `extension=`, `zend_extension=`.
    Extension,
    /// php.ini `extension_dir=`.
    ExtensionDir,
    /// PHP `require`, `require_once`: a missing file is fatal.
    Require,
    /// PHP `include`, `include_once`: a missing file is a warning.
    PhpInclude,
}

impl Directive {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Directive::Include => "Include",
            Directive::IncludeOptional => "IncludeOptional",
            Directive::LoadModule => "LoadModule",
            Directive::Extension => "extension",
            Directive::ExtensionDir => "extension_dir",
            Directive::Require => "require",
            Directive::PhpInclude => "include",
        }
    }

    /// A missing file named here breaks the service (not an optional include).
    pub(crate) fn required(self) -> bool {
        !matches!(self, Directive::IncludeOptional | Directive::PhpInclude)
    }

    /// The comment marker of the file's language, to comment the line out.
    pub(crate) fn comment(self) -> &'static str {
        match self {
            Directive::Include | Directive::IncludeOptional | Directive::LoadModule => "#",
            Directive::Extension | Directive::ExtensionDir => ";",
            Directive::Require | Directive::PhpInclude => "//",
        }
    }
}

/// What a referrer names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The failing path (or a tail of it ending in its file name).
    File,
    /// The missing directory on the failing path.
    Directory,
}

/// A line that names a failing path.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Referrer {
    /// The file, as the processes name it.
    pub(crate) file: Bytes,
    /// 1-based.
    pub(crate) line: usize,
    /// The whole line as written (without its end of line): what an edit must find.
    pub(crate) text: Vec<u8>,
    /// Where the reference is in `text`.
    pub(crate) span: (usize, usize),
    pub(crate) target: Target,
    /// How many trailing components of the target the reference spells.
    pub(crate) components: usize,
    pub(crate) directive: Option<Directive>,
}

impl Referrer {
    /// The line for display: cut to [`MAX_LINE`] bytes around the reference, trimmed.
    pub(crate) fn shown(&self) -> Vec<u8> {
        let t = &self.text;
        let (a, b) = self.span;
        let start = a.saturating_sub(MAX_LINE / 2).min(a);
        let end = (b + MAX_LINE / 2).min(t.len());
        let mut out = Vec::new();
        if start > 0 {
            out.extend_from_slice("…".as_bytes());
        }
        out.extend_from_slice(t[start..end].trim_ascii());
        if end < t.len() {
            out.extend_from_slice("…".as_bytes());
        }
        out
    }
}

/// What a search may still spend.
pub(crate) struct Budget {
    bytes: u64,
    files: usize,
    deadline: Instant,
}

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget {
            bytes: MAX_BYTES,
            files: MAX_FILES,
            deadline: Instant::now() + MAX_TIME,
        }
    }

    fn spent(&self) -> bool {
        self.bytes == 0 || self.files == 0 || self.late()
    }

    /// Out of time: no more searching, even of files already read.
    fn late(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// File contents read during one report, shared by the rows that search them.
#[derive(Default)]
pub(crate) struct Library {
    files: HashMap<(usize, Vec<u8>), Option<Rc<Text>>>,
}

/// A file's text and who could read it.
pub(crate) struct Text {
    bytes: Vec<u8>,
    meta: std::fs::Metadata,
}

impl Library {
    /// The text of `path` in `view`, read once; `None` for what is not a readable text file.
    fn get(&mut self, view: &ViewRef, path: &[u8], budget: &mut Budget) -> Option<Rc<Text>> {
        let key = (std::sync::Arc::as_ptr(&view.0) as usize, path.to_vec());
        if let Some(t) = self.files.get(&key) {
            return t.clone();
        }
        if budget.spent() {
            return None;
        }
        let t = read_text(view, path, budget).map(Rc::new);
        self.files.insert(key, t.clone());
        t
    }
}

fn read_text(view: &View, path: &[u8], budget: &mut Budget) -> Option<Text> {
    let file = view.open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    budget.files -= 1;
    let cap = MAX_FILE_BYTES.min(budget.bytes);
    let mut bytes = Vec::with_capacity(meta.len().min(cap) as usize);
    file.take(cap).read_to_end(&mut bytes).ok()?;
    budget.bytes -= bytes.len() as u64;
    // Binary (a library, an image): no lines to show.
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return None;
    }
    Some(Text { bytes, meta })
}

/// Bytes that continue a file name: a reference ends where they stop.
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b'~')
}

fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect()
}

/// Where `target`'s trailing components appear in `line`, as (start, end, components matched):
/// each occurrence of its last component at name boundaries, extended left over `/`-separated
/// components as long as they match.
fn occurrences(line: &[u8], target: &[&[u8]]) -> Vec<(usize, usize, usize)> {
    let Some(last) = target.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = find(&line[from..], last).map(|i| i + from) {
        from = i + 1;
        let end = i + last.len();
        if line.get(end).is_some_and(|&b| name_byte(b)) {
            continue;
        }
        if i > 0 && name_byte(line[i - 1]) {
            continue;
        }
        let (mut start, mut k) = (i, 1);
        while start > 0 && line[start - 1] == b'/' && k < target.len() {
            let want = target[target.len() - 1 - k];
            let comp_end = start - 1;
            let Some(comp_start) = comp_end.checked_sub(want.len()) else {
                break;
            };
            if &line[comp_start..comp_end] != want
                || (comp_start > 0 && name_byte(line[comp_start - 1]))
            {
                break;
            }
            start = comp_start;
            k += 1;
        }
        // A leading slash belongs to the reference.
        if start > 0 && line[start - 1] == b'/' {
            start -= 1;
        }
        out.push((start, end, k));
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    memchr::memmem::find(hay, needle)
}

fn word_at(line: &[u8], word: &[u8]) -> bool {
    let lower = line.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = find(&lower[from..], word).map(|i| i + from) {
        from = i + 1;
        let before = i == 0 || !lower[i - 1].is_ascii_alphanumeric() && lower[i - 1] != b'_';
        let after = lower
            .get(i + word.len())
            .is_none_or(|&b| !b.is_ascii_alphanumeric() && b != b'_');
        if before && after {
            return true;
        }
    }
    false
}

/// What the line does, when it is one of the lines that load files.
fn directive_of(line: &[u8]) -> Option<Directive> {
    let t = line.trim_ascii_start();
    let first: Vec<u8> = t
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .map(u8::to_ascii_lowercase)
        .collect();
    let rest = t[first.len()..].trim_ascii_start();
    match first.as_slice() {
        // Apache's `Include path`; PHP's `include 'x.php';` is a statement, ended by `;`.
        b"include" if !rest.is_empty() && !t.trim_ascii_end().ends_with(b";") => {
            return Some(Directive::Include);
        }
        b"includeoptional" => return Some(Directive::IncludeOptional),
        b"loadmodule" | b"loadfile" => return Some(Directive::LoadModule),
        b"extension" | b"zend_extension" if rest.starts_with(b"=") => {
            return Some(Directive::Extension);
        }
        b"extension_dir" if rest.starts_with(b"=") => return Some(Directive::ExtensionDir),
        _ => {}
    }
    if word_at(line, b"require") || word_at(line, b"require_once") {
        return Some(Directive::Require);
    }
    if word_at(line, b"include") || word_at(line, b"include_once") {
        return Some(Directive::PhpInclude);
    }
    None
}

/// A comment line of Apache, php.ini, PHP or shell.
fn is_comment(line: &[u8]) -> bool {
    let t = line.trim_ascii_start();
    t.starts_with(b"#") || t.starts_with(b";") || t.starts_with(b"//") || t.starts_with(b"*")
}

/// The lines of `text` that name `target` (the failing path, or its missing directory).
fn search_text(file: &Bytes, text: &[u8], target: &[u8], kind: Target, out: &mut Vec<Referrer>) {
    let comps = components(target);
    if comps.is_empty() {
        return;
    }
    let last = comps[comps.len() - 1];
    if find(text, last).is_none() {
        return;
    }
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if find(line, last).is_none() || is_comment(line) {
            continue;
        }
        let best = occurrences(line, &comps)
            .into_iter()
            .max_by_key(|&(s, e, k)| (k, e - s));
        let Some((start, end, k)) = best else {
            continue;
        };
        let directive = directive_of(line);
        let accepted = match kind {
            // The whole path, or a tail of two components or more; by file name alone only on
            // a line that loads files, and not a name too short to mean anything.
            Target::File => k >= 2 || (directive.is_some() && last.len() >= 4),
            // A directory is named by two components at least (its last one alone is often a
            // word: `20220829`, `conf`).
            Target::Directory => k >= 2,
        };
        if accepted {
            out.push(Referrer {
                file: file.clone(),
                line: n + 1,
                text: line.to_vec(),
                span: (start, end),
                target: kind,
                components: k,
                directive,
            });
        }
    }
}

/// Configuration directories of the web stack, as a process of the view names them.
const CONFIG_ROOTS: [&[u8]; 6] = [
    b"/etc/apache2",
    b"/etc/httpd",
    b"/etc/php",
    b"/usr/local/etc/php",
    b"/usr/local/apache2/conf",
    b"/etc/php-fpm.d",
];

fn config_like(name: &[u8]) -> bool {
    [b".conf" as &[u8], b".load", b".ini", b".htaccess"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// Files of the fallback: the configuration trees, then the files beside the failing path.
fn fallback_files(view: &View, f: &Failure, missing_dir: Option<&[u8]>) -> Vec<Vec<u8>> {
    let Some(root) = view.root() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in CONFIG_ROOTS {
        let mut n = 0;
        walk_tree(root, dir, 0, &mut n, &mut out, &config_like);
    }
    // Beside the failing path: its existing parent and grandparent, files like it.
    let ext = basename(&f.path)
        .iter()
        .rposition(|&b| b == b'.')
        .map(|i| basename(&f.path)[i..].to_vec());
    let mut dir = match missing_dir {
        Some(d) => dirname(d).to_vec(),
        None => dirname(&f.path).to_vec(),
    };
    for _ in 0..2 {
        let mut n = 0;
        let like = |name: &[u8]| {
            config_like(name)
                || name.ends_with(b".php")
                || name.ends_with(b".inc")
                || ext.as_deref().is_some_and(|e| name.ends_with(e))
        };
        walk_tree(root, &dir, 3, &mut n, &mut out, &like);
        if dir.len() <= 1 {
            break;
        }
        dir = dirname(&dir).to_vec();
    }
    out
}

/// Files under `dir` (depth-first, `depth` levels at most below 4), `want`ed by name.
fn walk_tree(
    root: &std::path::Path,
    dir: &[u8],
    depth: usize,
    n: &mut usize,
    out: &mut Vec<Vec<u8>>,
    want: &dyn Fn(&[u8]) -> bool,
) {
    use std::os::unix::ffi::OsStrExt;
    if depth > 4 || *n >= MAX_FALLBACK_FILES {
        return;
    }
    let Ok(rd) = std::fs::read_dir(crate::report::walk::host_path(root, dir)) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name.as_bytes();
        let path = join_child(dir, name);
        match e.file_type() {
            Ok(t) if t.is_dir() => walk_tree(root, &path, depth + 1, n, out, want),
            Ok(t) if (t.is_file() || t.is_symlink()) && want(name) => {
                *n += 1;
                out.push(path);
                if *n >= MAX_FALLBACK_FILES {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// The referrers of `f`: lines of the files its processes read (`opened`, in the row's place)
/// that name its path, or `missing_dir` (the first missing directory on it); the fallback
/// files when those name nothing. At most [`MAX_REFERRERS`], the most precise first.
pub(crate) fn referrers(
    f: &Failure,
    missing_dir: Option<&[u8]>,
    opened: &[OpenedFile],
    library: &mut Library,
    budget: &mut Budget,
) -> Vec<Referrer> {
    let Some(&(uid, gid)) = f.creds.iter().next() else {
        return Vec::new();
    };
    // The report's time is spent (the rows are taken in rank order: these matter least).
    if budget.late() {
        return Vec::new();
    }
    let names = f.view.names();
    let mut search =
        |paths: &mut dyn Iterator<Item = &[u8]>, budget: &mut Budget, out: &mut Vec<Referrer>| {
            for p in paths {
                if budget.late() {
                    return;
                }
                // Not the file itself, nor one on a network filesystem (which could hang).
                if p == &f.path[..] || f.view.network_fs(p).is_some() {
                    continue;
                }
                let Some(text) = library.get(&f.view, p, budget) else {
                    continue;
                };
                // The process could read it (it opened it; a file swapped since for something it
                // may not read is not shown).
                if uid != 0 && !may_read(&text.meta, uid, gid, &names) {
                    continue;
                }
                let file = Bytes::copy_from_slice(p);
                search_text(&file, &text.bytes, &f.path, Target::File, out);
                if let Some(d) = missing_dir {
                    search_text(&file, &text.bytes, d, Target::Directory, out);
                }
            }
        };
    let mut out = Vec::new();
    let mut from_opened = opened
        .iter()
        .filter(|o| o.place == f.place)
        .map(|o| &o.path[..]);
    search(&mut from_opened, budget, &mut out);
    if out.is_empty() && !budget.spent() {
        let fallback = fallback_files(&f.view, f, missing_dir);
        search(&mut fallback.iter().map(Vec::as_slice), budget, &mut out);
    }
    // The most precise first: a line that loads files, then more of the path spelled out.
    out.sort_by_key(|r| {
        (
            r.directive.is_none(),
            r.target != Target::File,
            usize::MAX - r.components,
        )
    });
    out.dedup_by(|a, b| a.file == b.file && a.line == b.line);
    out.truncate(MAX_REFERRERS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(text: &str, target: &str, kind: Target) -> Vec<(usize, String, usize)> {
        let mut out = Vec::new();
        search_text(
            &Bytes::from_static(b"/f"),
            text.as_bytes(),
            target.as_bytes(),
            kind,
            &mut out,
        );
        out.into_iter()
            .map(|r| {
                (
                    r.line,
                    String::from_utf8(r.text[r.span.0..r.span.1].to_vec()).unwrap(),
                    r.components,
                )
            })
            .collect()
    }

    #[test]
    fn a_require_by_file_name_is_found_and_its_near_misses_are_not() {
        let php = "<?php\n\
                   require_once ABSPATH . WPINC . '/class-wp-locale.phpp';\n\
                   require_once ABSPATH . WPINC . '/class-wp-locale.php';\n\
                   // require 'class-wp-locale.phpp';\n\
                   $x = 'my-class-wp-locale.phpp';\n\
                   echo 'class-wp-locale.phpp';\n";
        let r = refs(
            php,
            "/var/www/html/wp-includes/class-wp-locale.phpp",
            Target::File,
        );
        // The comment, the longer name and the line that loads nothing are not referrers.
        assert_eq!(r, [(2, "/class-wp-locale.phpp".to_string(), 1)]);
    }

    #[test]
    fn a_path_tail_counts_without_a_directive_and_the_longest_spelling_wins() {
        let text = "define('A', 1);\n$cfg = APP_ROOT . '/config/app.php';\nload('webapp.php');\n";
        let r = refs(text, "/srv/site/config/app.php", Target::File);
        assert_eq!(r, [(2, "/config/app.php".to_string(), 2)]);
        let conf = "Include \"/tmp/x/conf/sites-enable/app.conf\"\n#Include /tmp/x/conf/sites-enable/app.conf\n";
        let r = refs(conf, "/tmp/x/conf/sites-enable/app.conf", Target::File);
        assert_eq!(r, [(1, "/tmp/x/conf/sites-enable/app.conf".to_string(), 5)]);
    }

    #[test]
    fn a_missing_directory_is_named_by_two_components_at_least() {
        let ini = "extension_dir = \"/usr/lib/php/20220830\"\nmemory_limit = 20220830\n";
        let r = refs(ini, "/usr/lib/php/20220830", Target::Directory);
        assert_eq!(r, [(1, "/usr/lib/php/20220830".to_string(), 4)]);
    }

    #[test]
    fn directives_are_recognised() {
        let d = |l: &str| directive_of(l.as_bytes());
        assert_eq!(d("Include conf-enabled/x.conf"), Some(Directive::Include));
        assert_eq!(
            d("  IncludeOptional sites-enabled/*.conf"),
            Some(Directive::IncludeOptional)
        );
        assert_eq!(
            d("LoadModule speling_module /usr/lib/apache2/modules/mod_speling.so"),
            Some(Directive::LoadModule)
        );
        assert_eq!(d("extension=calendar.so"), Some(Directive::Extension));
        assert_eq!(d("zend_extension = opcache.so"), Some(Directive::Extension));
        assert_eq!(
            d("extension_dir = \"/usr/lib/php/20220829\""),
            Some(Directive::ExtensionDir)
        );
        assert_eq!(
            d("require __DIR__ . '/helpers.php';"),
            Some(Directive::Require)
        );
        assert_eq!(d("include 'x.php';"), Some(Directive::PhpInclude));
        assert_eq!(d("$required = 1;"), None);
        assert!(Directive::Include.required() && !Directive::IncludeOptional.required());
    }

    #[test]
    fn hostile_lines_do_not_panic() {
        for line in ["/", "//", "/a/", "a/b/c/", "\u{0}/x", "x/x/x/x/x"] {
            let _ = refs(line, "/x/x", Target::File);
            let _ = refs(line, "/", Target::Directory);
            let _ = refs(line, "", Target::File);
        }
    }
}
