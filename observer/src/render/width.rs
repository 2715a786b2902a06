//! Stage 5, how wide text is on a terminal (combining marks take no cell, East Asian wide
//! characters and emoji two), and cutting it to fit.

/// Terminal cells a character takes: 0 for combining marks, 2 for East Asian wide and emoji,
/// 1 otherwise. (Escaped text holds no control characters.)
fn char_width(c: char) -> usize {
    let u = c as u32;
    let zero = [
        (0x0300, 0x036f),
        (0x0483, 0x0489),
        (0x0591, 0x05bd),
        (0x0610, 0x061a),
        (0x064b, 0x065f),
        (0x1ab0, 0x1aff),
        (0x1dc0, 0x1dff),
        (0x200b, 0x200f),
        (0x20d0, 0x20ff),
        (0xfe00, 0xfe0f),
        (0xfe20, 0xfe2f),
    ];
    if zero.iter().any(|(a, b)| (*a..=*b).contains(&u)) {
        return 0;
    }
    let wide = [
        (0x1100, 0x115f),
        (0x2e80, 0x303e),
        (0x3041, 0x33ff),
        (0x3400, 0x4dbf),
        (0x4e00, 0x9fff),
        (0xa000, 0xa4cf),
        (0xac00, 0xd7a3),
        (0xf900, 0xfaff),
        (0xfe30, 0xfe4f),
        (0xff00, 0xff60),
        (0xffe0, 0xffe6),
        (0x1f300, 0x1f64f),
        (0x1f900, 0x1f9ff),
        (0x20000, 0x2fffd),
        (0x30000, 0x3fffd),
    ];
    if wide.iter().any(|(a, b)| (*a..=*b).contains(&u)) {
        2
    } else {
        1
    }
}

/// Display width of a string.
pub(crate) fn width_of(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

pub(crate) fn pad_left(s: &str, w: usize) -> String {
    let n = w.saturating_sub(width_of(s));
    format!("{}{s}", " ".repeat(n))
}

pub(crate) fn pad_right(s: &str, w: usize) -> String {
    let n = w.saturating_sub(width_of(s));
    format!("{s}{}", " ".repeat(n))
}

/// Cuts `s` to `max` cells, ending with `…` when cut.
pub(crate) fn truncate_end(s: &str, max: usize) -> String {
    if width_of(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if w + cw > max - 1 {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('\u{2026}');
    out
}

/// Cuts `s` to `max` cells by removing its middle (`/var/www/…/class-x.php`): the file name at
/// the end is what matters most, so the tail keeps two thirds.
pub(crate) fn truncate_middle(s: &str, max: usize) -> String {
    if width_of(s) <= max {
        return s.to_string();
    }
    if max <= 1 {
        return "\u{2026}".repeat(max);
    }
    let budget = max - 1;
    let head_w = budget / 3;
    let tail_w = budget - head_w;
    let mut head = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if w + cw > head_w {
            break;
        }
        head.push(c);
        w += cw;
    }
    let mut tail: Vec<char> = Vec::new();
    let mut w = 0;
    for c in s.chars().rev() {
        let cw = char_width(c);
        if w + cw > tail_w {
            break;
        }
        tail.push(c);
        w += cw;
    }
    tail.reverse();
    let mut out = head;
    out.push('\u{2026}');
    out.extend(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation() {
        assert_eq!(
            truncate_middle("/var/www/html/index.php", 12),
            "/va…ndex.php"
        );
        assert_eq!(width_of(&truncate_middle("/srv/日本語/ファイル.php", 9)), 9);
        assert!(width_of(&truncate_middle("/srv/日本語/ファイル.php", 10)) <= 10);
        assert_eq!(truncate_end("abcdef", 4), "abc…");
        assert_eq!(truncate_end("abc", 3), "abc");
        assert_eq!(truncate_middle("abc", 1), "…");
    }
}
