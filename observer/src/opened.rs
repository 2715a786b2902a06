//! Stage 2, the files watched processes read: each regular file a watched process opened
//! successfully for reading, once per (path, place), as the kernel reports them
//! (`STATUS_OPENED`). They are where a failing name is usually written: the PHP script that
//! requires it, the Apache or PHP configuration that names it. The report searches them
//! ([`crate::report`]'s referrers); the recorder keeps them in the history.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::place::{Place, Where};

/// Files remembered, at most (a WordPress site reads a few hundred); past it new ones are not
/// kept, and the report falls back to the service's configuration directories.
pub(crate) const MAX_OPENED: usize = 20_000;

/// A file a watched process read.
#[derive(Clone, Debug)]
pub(crate) struct OpenedFile {
    /// As the process named it, made absolute.
    pub(crate) path: Bytes,
    /// Where the process ran: the file is read in the view of the rows of that place.
    pub(crate) place: Place,
}

/// The files read so far, in the order they were first read.
#[derive(Default)]
pub(crate) struct Opened {
    seen: HashSet<(Bytes, Place)>,
    files: Vec<OpenedFile>,
    /// Files from here on were not handed to the history yet.
    unsaved: usize,
}

impl Opened {
    /// Remembers that a process in `at` read `path`.
    pub(crate) fn add(&mut self, path: Bytes, at: &Arc<Where>) {
        if self.files.len() >= MAX_OPENED {
            return;
        }
        if self.seen.insert((path.clone(), at.place.clone())) {
            self.files.push(OpenedFile {
                path,
                place: at.place.clone(),
            });
        }
    }

    pub(crate) fn files(&self) -> &[OpenedFile] {
        &self.files
    }

    /// The files not handed out by this call before (the recorder writes them).
    pub(crate) fn take_unsaved(&mut self) -> &[OpenedFile] {
        let from = self.unsaved.min(self.files.len());
        self.unsaved = self.files.len();
        &self.files[from..]
    }

    /// Forgets the files handed out by the last `take_unsaved` (their write failed).
    pub(crate) fn unsave(&mut self, n: usize) {
        self.unsaved = self.unsaved.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::place::ViewRef;

    #[test]
    fn each_file_once_per_place_and_bounded() {
        let host = Arc::new(Where {
            place: Place::default(),
            view: ViewRef::host(),
        });
        let unit = Arc::new(Where {
            place: Place {
                unit: Some("apache2.service".into()),
                ..Place::default()
            },
            view: ViewRef::host(),
        });
        let mut o = Opened::default();
        o.add(Bytes::from_static(b"/etc/a.conf"), &host);
        o.add(Bytes::from_static(b"/etc/a.conf"), &host);
        o.add(Bytes::from_static(b"/etc/a.conf"), &unit);
        assert_eq!(o.files().len(), 2);
        assert_eq!(o.take_unsaved().len(), 2);
        assert!(o.take_unsaved().is_empty());
        o.add(Bytes::from_static(b"/etc/b.conf"), &host);
        assert_eq!(o.take_unsaved().len(), 1);
        o.unsave(1);
        assert_eq!(o.take_unsaved()[0].path, b"/etc/b.conf"[..]);
        for i in 0..MAX_OPENED + 10 {
            o.add(Bytes::from(format!("/f/{i}")), &host);
        }
        assert_eq!(o.files().len(), MAX_OPENED);
    }
}
