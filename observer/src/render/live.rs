//! Stage 5, the live view: a top-like frame redrawn in place on the alternate screen (no
//! clearing, so no flicker), restored on exit so the final report lands on the normal screen.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use crate::escape::sanitize_text;
use crate::model::{Ranked, Totals};
use crate::report::Report;
use crate::time::elapsed;

use super::table::{Cells, cells, shows_place, totals_line};
use super::width::{pad_left, pad_right, truncate_end, truncate_middle, width_of};

/// The refreshing terminal view.
pub(crate) struct Live {
    started: std::time::Instant,
}

impl Live {
    /// Switches to the alternate screen and hides the cursor.
    pub(crate) fn start() -> Live {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\x1b[?1049h\x1b[?25l");
        let _ = out.flush();
        Live {
            started: std::time::Instant::now(),
        }
    }

    /// Draws `report` over the previous frame, at most `top` rows.
    pub(crate) fn draw(&mut self, report: &Report, top: Option<usize>, header: &str) {
        let (w, h) = terminal_size();
        let frame = live_frame(
            &report.ranked,
            &report.totals,
            top,
            w,
            h,
            self.started.elapsed(),
            header,
        );
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(frame.as_bytes()).and_then(|()| out.flush());
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
    }
}

/// (columns, rows) of the terminal on stdout; 80x24 when unknown.
fn terminal_size() -> (usize, usize) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize struct.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col as usize, ws.ws_row as usize)
    } else {
        (80, 24)
    }
}

/// One frame of the live view, drawn over the previous one: cursor home, each line cleared to
/// its end, everything below cleared. Fits `width` x `height` cells.
pub(super) fn live_frame(
    ranked: &[Ranked],
    totals: &Totals,
    top: Option<usize>,
    width: usize,
    height: usize,
    elapsed_time: Duration,
    header_info: &str,
) -> String {
    const HOME: &str = "\x1b[H";
    const EOL: &str = "\x1b[K";
    const EOS: &str = "\x1b[J";
    const BOLD: &str = "\x1b[1m";
    const RESET: &str = "\x1b[0m";
    if width == 0 || height == 0 {
        return format!("{HOME}{EOS}");
    }
    let mut lines: Vec<String> = Vec::new();
    let mut head = String::from("observer");
    let info = sanitize_text(header_info);
    if !info.is_empty() {
        head.push_str("  ");
        head.push_str(&info);
    }
    let _ = write!(head, "  {}  {}", elapsed(elapsed_time), totals_line(totals));
    lines.push(format!("{BOLD}{}{RESET}", truncate_end(&head, width)));

    let total = top.map_or(ranked.len(), |n| n.min(ranked.len()));
    if height >= 2 {
        if ranked.is_empty() {
            lines.push(truncate_end("no failed opens or stats yet", width));
        } else {
            let rows: Vec<Cells> = ranked[..total].iter().map(|r| cells(r, 2)).collect();
            let cap = |get: fn(&Cells) -> &String, min: usize, max: usize| {
                rows.iter()
                    .map(|c| width_of(get(c)))
                    .max()
                    .unwrap_or(0)
                    .clamp(min, max)
            };
            let wr = cap(|c| &c.rank, 4, 6);
            let ws = cap(|c| &c.score, 5, 7);
            let wc = cap(|c| &c.count, 5, 10);
            let we = cap(|c| &c.errno, 5, 12);
            let mut wy = cap(|c| &c.syscalls, 8, 20);
            let mut wm = cap(|c| &c.comms, 5, 12);
            let mut wh = if shows_place(&ranked[..total]) {
                cap(|c| &c.place, 5, 20)
            } else {
                0
            };
            // The path matters most: drop COMMS, then SYSCALLS, then WHERE, before it gets less
            // than 40% of the line (or less than it needs).
            let want_path = cap(|c| &c.path, 4, usize::MAX).min((width * 2 / 5).max(24));
            let fixed = |wy: usize, wm: usize, wh: usize| {
                wr + ws
                    + wc
                    + we
                    + 8
                    + [wy, wm, wh]
                        .iter()
                        .map(|&w| if w > 0 { w + 2 } else { 0 })
                        .sum::<usize>()
            };
            if width.saturating_sub(fixed(wy, wm, wh)) < want_path {
                wm = 0;
            }
            if width.saturating_sub(fixed(wy, wm, wh)) < want_path {
                wy = 0;
            }
            if width.saturating_sub(fixed(wy, wm, wh)) < want_path {
                wh = 0;
            }
            let wp = width.saturating_sub(fixed(wy, wm, wh)).max(12);
            let row = |c: &Cells| {
                let mut s = format!(
                    "{}  {}  {}  {}  ",
                    pad_left(&c.rank, wr),
                    pad_left(&c.score, ws),
                    pad_left(&c.count, wc),
                    pad_right(&truncate_end(&c.errno, we), we),
                );
                if wy > 0 {
                    s.push_str(&pad_right(&truncate_end(&c.syscalls, wy), wy));
                    s.push_str("  ");
                }
                if wm > 0 {
                    s.push_str(&pad_right(&truncate_end(&c.comms, wm), wm));
                    s.push_str("  ");
                }
                if wh > 0 {
                    s.push_str(&pad_right(&truncate_end(&c.place, wh), wh));
                    s.push_str("  ");
                }
                s.push_str(&truncate_middle(&c.path, wp));
                s
            };
            let header = Cells::header();
            lines.push(truncate_end(&row(&header), width));
            // Rows first; spare lines show the top rows' first hint (or reasons).
            let avail = height - lines.len();
            let reserve = if avail > 6 { total.min(3) } else { 0 };
            let n_rows = total.min(avail - reserve);
            let mut spare = avail - n_rows;
            for (r, c) in ranked[..n_rows].iter().zip(&rows) {
                lines.push(truncate_end(&row(c), width));
                if spare > 0 {
                    let detail = match r.hints.first() {
                        Some(h) => format!("      \u{21b3} {}", sanitize_text(&h.message)),
                        None => format!(
                            "      why: {}",
                            sanitize_text(
                                &r.reasons
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        ),
                    };
                    lines.push(truncate_end(&detail, width));
                    spare -= 1;
                }
            }
        }
    }
    lines.truncate(height);
    let mut out = String::from(HOME);
    out.push_str(&lines.join(&format!("{EOL}\r\n")));
    out.push_str(EOL);
    out.push_str(EOS);
    out
}
