//! Making attacker-controlled bytes (file names, comms) safe to print, and to paste into a shell.
//!
//! A file name may hold any byte but `/` and NUL: an escape sequence in a name could rewrite the
//! operator's terminal, a newline could forge a table row. `escape_path` turns every byte that is
//! not printable text into a visible, unambiguous escape:
//!
//! | input                                   | output        |
//! |-----------------------------------------|---------------|
//! | `\`                                     | `\\`          |
//! | newline, tab, carriage return, ESC      | `\n` `\t` `\r` `\e` |
//! | other C0 controls and DEL               | `\xNN`        |
//! | a byte that is not part of valid UTF-8  | `\xNN`        |
//! | C1 controls U+0080–U+009F, invisible or direction-changing format characters (bidi overrides, zero-width, line/paragraph separators, BOM), tag characters U+E0000–U+E007F | `\u{NNNN}` |
//!
//! `\xNN` always stands for the single byte NN (a control byte below 0x80 or an invalid byte at
//! or above 0x80), `\u{...}` for a whole character, so the original bytes can be recovered.

/// Escapes a raw path for a terminal or a text table. See the module documentation.
pub(crate) fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c, true);
        }
        for b in chunk.invalid() {
            push_byte(&mut out, *b);
        }
    }
    out
}

/// Escapes a comm (or any text that came from the watched process) the same way.
pub(crate) fn escape_str(s: &str) -> String {
    escape_path(s.as_bytes())
}

/// Makes text observer composed itself (hint messages, which already hold escaped paths) safe
/// for a terminal without escaping it twice: control and invisible characters are escaped,
/// backslashes are left alone.
pub(crate) fn sanitize_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_char(&mut out, c, false);
    }
    out
}

/// True when `bytes` would print as themselves: valid UTF-8 with nothing `escape_path` escapes.
fn is_plain(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.chars().all(|c| c != '\\' && !needs_escape(c)),
        Err(_) => false,
    }
}

fn push_char(out: &mut String, c: char, escape_backslash: bool) {
    match c {
        '\\' if escape_backslash => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\x1b' => out.push_str("\\e"),
        c if (c as u32) < 0x20 || c == '\x7f' => push_byte(out, c as u8),
        c if needs_escape(c) => {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        }
        c => out.push(c),
    }
}

fn push_byte(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

/// Characters that must not reach a terminal as themselves.
fn needs_escape(c: char) -> bool {
    let u = c as u32;
    u < 0x20
        || (0x7f..=0x9f).contains(&u)
        // Soft hyphen, Arabic letter mark, Mongolian vowel separator: invisible.
        || u == 0xad
        || u == 0x061c
        || u == 0x180e
        // Zero-width space/joiners, LRM/RLM, line and paragraph separators, bidi embeddings and
        // overrides, word joiner, invisible operators, bidi isolates, deprecated format chars.
        || (0x200b..=0x200f).contains(&u)
        || (0x2028..=0x202e).contains(&u)
        || (0x2060..=0x206f).contains(&u)
        // BOM / zero-width no-break space, interlinear annotation controls.
        || u == 0xfeff
        || (0xfff9..=0xfffb).contains(&u)
        // Tag characters: invisible, and they can spell hidden text.
        || (0xe0000..=0xe007f).contains(&u)
}

/// Serialized JSON with every character `escape_path` would escape written as a `\uXXXX`
/// escape (a surrogate pair above U+FFFF): the same document for a parser, nothing invisible or
/// direction-changing for a terminal that shows it (serde_json escapes only C0 controls). JSON's
/// own syntax is ASCII, so such characters can only be inside strings.
pub(crate) fn safe_json(json: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (c as u32) >= 0x80 && needs_escape(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Quotes a path for a shell command line: as is when safe, in single quotes when printable,
/// in bash's `$'...'` (with `\xNN` for every other byte) otherwise, so the command acts on the
/// exact file.
pub(crate) fn shell_quote(bytes: &[u8]) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"/._-+:,@%=".contains(&b);
    if !bytes.is_empty() && bytes.iter().all(|b| safe(*b)) {
        // Checked ASCII above.
        return String::from_utf8_lossy(bytes).into_owned();
    }
    if is_plain(bytes) {
        let s = String::from_utf8_lossy(bytes);
        return format!("'{}'", s.replace('\'', "'\\''"));
    }
    let mut out = String::from("$'");
    for b in bytes {
        match b {
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(*b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inverse of `escape_path`, to prove the escaping is unambiguous.
    fn unescape(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c != '\\' {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            match it.next().expect("dangling backslash") {
                '\\' => out.push(b'\\'),
                'n' => out.push(b'\n'),
                't' => out.push(b'\t'),
                'r' => out.push(b'\r'),
                'e' => out.push(0x1b),
                'x' => {
                    let h: String = [it.next().unwrap(), it.next().unwrap()].iter().collect();
                    out.push(u8::from_str_radix(&h, 16).unwrap());
                }
                'u' => {
                    assert_eq!(it.next(), Some('{'));
                    let h: String = it.by_ref().take_while(|c| *c != '}').collect();
                    let c = char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap();
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                other => panic!("unknown escape \\{other}"),
            }
        }
        out
    }

    #[test]
    fn plain_text_passes() {
        assert_eq!(
            escape_path(b"/var/www/html/index.php"),
            "/var/www/html/index.php"
        );
        assert_eq!(
            escape_path("/srv/caf\u{e9}/\u{65e5}\u{672c}".as_bytes()),
            "/srv/caf\u{e9}/\u{65e5}\u{672c}"
        );
        assert!(is_plain(b"/etc/app/config.php"));
    }

    #[test]
    fn hostile_bytes_are_escaped() {
        let raw = b"/tmp/\x1b[31mred\nline\ttab\\back\x7f\xff\xfe.php";
        let e = escape_path(raw);
        assert_eq!(e, "/tmp/\\e[31mred\\nline\\ttab\\\\back\\x7f\\xff\\xfe.php");
        assert!(!e.chars().any(|c| c.is_control()));
        assert!(!is_plain(raw));
    }

    #[test]
    fn c1_and_bidi_are_escaped() {
        let s = "/a\u{85}b\u{9b}c\u{202e}d\u{200b}e\u{2028}";
        assert_eq!(
            escape_str(s),
            "/a\\u{0085}b\\u{009B}c\\u{202E}d\\u{200B}e\\u{2028}"
        );
    }

    #[test]
    fn escaping_roundtrips() {
        let cases: &[&[u8]] = &[
            b"/plain",
            b"\\x41 is not A",
            b"\x1b]0;title\x07",
            b"\xc2\x85 vs \x85",
            b"\xe2\x80\xae\xf0\x9f\x98\x80\xed\xa0\x80",
            b"\xc3",
            b"",
        ];
        for raw in cases {
            assert_eq!(unescape(&escape_path(raw)), *raw, "{raw:?}");
        }
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote(b"/srv/app"), "/srv/app");
        assert_eq!(shell_quote(b"/srv/my app"), "'/srv/my app'");
        assert_eq!(shell_quote(b"/srv/it's"), "'/srv/it'\\''s'");
        assert_eq!(shell_quote(b"/srv/\x1b\xff"), "$'/srv/\\x1b\\xff'");
    }

    #[test]
    fn sanitize_keeps_backslashes() {
        assert_eq!(
            sanitize_text("did you mean /a\\x1b (exists)\x1b[2J"),
            "did you mean /a\\x1b (exists)\\e[2J"
        );
    }
}
