//! End to end against a real Apache + mod_php.
//!
//! Each test runs a private Apache (its own configuration, pid file, loopback port and logs
//! under `/tmp/observer-e2e-*`) serving the small PHP application in `tests/apache/www`, which
//! makes the benign failing lookups of a healthy site (`.htaccess` at every level, DirectoryIndex
//! fallbacks, optional drop-ins probed with `file_exists`/`is_file`, a missing translation, a
//! template lookup in a child theme). Observer runs with its default selection (processes named
//! `apache2`); each scenario serves healthy traffic, then breaks the service one way, as the
//! operators' postmortems tell it (the README's incidents: a deleted module, a config file's
//! permissions, a bad Include, a wrong `extension_dir`, a misspelled `require`), and serves more
//! traffic or reloads. The culprit must be ranked first with the right errno and a correct hint;
//! a healthy run must not put a strong hint on anything; strace, attached to the same workers for
//! the same traffic, must see the same failing (path, errno) pairs; and the responses must not
//! change when observer watches.
//!
//! The suite installs apache2 and libapache2-mod-php (and strace) when missing. It never
//! touches the system's Apache. One scenario renames a module file of the apache2-bin package
//! (loaded by the private instance only) and a guard puts it back, also on panic.
//!
//! - [`harness`]: packages, host facts, the private Apache;
//! - [`report`]: reading observer's report;
//! - [`strace`]: the oracle (strace attached to the same workers) and its parser;
//! - [`scenarios`]: the incidents with ad-hoc observer, a healthy site, observer changes nothing;
//! - [`record`]: `observer record` across a full restart of the service.

mod harness;
mod record;
mod report;
mod scenarios;
mod strace;
