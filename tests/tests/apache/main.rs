//! End to end against a real Apache, serving PHP the two ways Debian does: mod_php in prefork
//! workers ([`mod_php`]), and a private PHP-FPM pool behind mpm_event + proxy_fcgi
//! ([`php_fpm`]). Every scenario runs on both.
//!
//! Each test runs a private Apache (its own configuration, pid file, loopback port and logs
//! under `/tmp/observer-e2e-*`) serving the small PHP application in `tests/apache/www`, which
//! makes the benign failing lookups of a healthy site (`.htaccess` at every level, DirectoryIndex
//! fallbacks, optional drop-ins probed with `file_exists`/`is_file`, a missing translation, a
//! template lookup in a child theme). Observer runs with its default selection (the web stack:
//! `apache2`, `httpd`, `php-fpm*`); each scenario serves healthy traffic, then breaks the service
//! one way, as operators' postmortems tell it (scenarios 1 to 5 of [`scenarios`]: a deleted
//! module, a config file's permissions, a bad Include, a wrong `extension_dir`, a misspelled
//! `require`), and serves more traffic or reloads. The culprit must be ranked first with the
//! right errno, its exact count (counted from the requests and the logs, not from observer) and
//! a correct hint; a healthy run must not put a strong hint on anything; strace, attached to the
//! same workers for the same traffic, must see the same failing (path, errno) pairs, as many
//! times each; and the responses must not change when observer watches.
//!
//! The suite installs apache2, libapache2-mod-php and php-fpm (and strace) when missing, with
//! service starts disabled while it does. It never touches the system's Apache or PHP-FPM: its
//! pool has its own configuration, socket, pid file and log. One scenario renames a module file of the apache2-bin package
//! (loaded by the private instance only) and a guard puts it back, also on panic.
//!
//! - [`harness`]: packages, host facts, the private Apache;
//! - [`report`]: reading observer's report;
//! - [`strace`]: the oracle (strace attached to the same workers) and its parser;
//! - [`scenarios`]: the incidents with ad-hoc observer, a healthy site, observer changes nothing;
//! - [`record`]: `observer record` across a full restart of the service;
//! - [`container`]: Apache + mod_php in a container (a mount namespace with its own document
//!   root, a Docker-style cgroup), seen from the host;
//! - [`bench`]: `cargo xtask bench apache`, what observer costs this Apache (an ignored test).

mod bench;
mod container;
mod harness;
mod record;
mod report;
mod scenarios;
mod strace;

/// Every scenario, once per stack: `mod_php::<scenario>` and `php_fpm::<scenario>`.
macro_rules! on_both_stacks {
    ($($module:ident::$name:ident),* $(,)?) => {
        /// The scenarios with mod_php.
        mod mod_php {
            $(#[test]
            fn $name() {
                crate::$module::$name(crate::harness::Stack::ModPhp)
            })*
        }
        /// The scenarios with PHP-FPM: PHP's failures come from `php-fpm8.2` workers.
        mod php_fpm {
            $(#[test]
            fn $name() {
                crate::$module::$name(crate::harness::Stack::Fpm)
            })*
        }
    };
}

on_both_stacks!(
    scenarios::deleted_module_so_is_first_at_reload_and_named_with_its_package,
    scenarios::unreadable_config_is_first_with_the_denying_file_and_the_workers_uid,
    scenarios::include_of_a_missing_file_is_first_at_reload_with_the_existing_one,
    scenarios::mistyped_extension_dir_is_first_with_the_nearest_existing_sibling,
    scenarios::misspelled_require_is_first_naming_the_existing_file_and_strace_agrees,
    scenarios::healthy_site_has_no_strong_hint_on_anything,
    scenarios::same_answers_with_and_without_observer_and_the_table_puts_the_culprit_on_top,
    record::record_counts_the_misspelled_require_exactly_across_a_full_apache_restart,
);

/// `cargo xtask bench apache` runs this (figures, not a test: ignored by the suite).
#[test]
#[ignore = "a benchmark: cargo xtask bench apache"]
fn bench_apache() {
    bench::apache_throughput_and_latency();
}
