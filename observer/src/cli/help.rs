//! The longer help texts of the commands (`--help`), kept out of the flag definitions.

pub(super) const ABOUT: &str = "Which files is my server failing to open or stat? \
observer traces failing open/stat/access/exec calls of the watched processes from the kernel \
(eBPF tracepoints, no ptrace), deduplicates them, ranks the likely culprit first and says what \
to check.";

pub(super) const AFTER_HELP: &str = "\
Examples:
  sudo observer                          watch the web stack; live view; Ctrl-C for the report
  sudo observer --comm 'php-fpm*' -d 30s watch PHP-FPM's workers for 30 seconds, then report
  sudo observer --pid 1234               a process and its descendants (e.g. Apache's parent)
  sudo observer --cgroup /sys/fs/cgroup/system.slice/apache2.service
  sudo observer --container 3f2a9c1b2d4e every process of one container (id prefix)
  sudo observer -f json -d 10s -o r.json machine-readable report, file mode 0600
  sudo observer -f jsonl | jq .          one JSON line per new distinct failure, as it happens

Selectors combine: kinds with AND (--comm X --cgroup Y: X inside Y), repeated values with OR;
--cgroup and --container are one kind. With no selector observer watches the web stack: Apache
(apache2 on Debian, httpd on RHEL) and PHP-FPM's workers (php-fpm*: php-fpm8.2, php-fpm,
php-fpm82, ...), on the host and in containers. Any selector replaces that.

Each row says where its processes ran (WHERE: a container, a systemd unit) when that is not the
host itself, and its hints are checked in what those processes saw: a container's own files, a
service's private /tmp; kept reachable after the processes exit.

Faults that only show at start-up (a deleted module .so) are seen only if the service starts or
reloads while observer runs: start observer, then `systemctl reload apache2`, or keep
`observer record` running as a service and ask it afterwards:

  sudo observer record                   record continuously into /var/lib/observer/observer.db
  sudo observer report --since 2h        the same ranked report, from the history
  sudo observer timeline /var/www/x.php  when a path started and stopped failing

See `observer record --help`.";

pub(super) const RECORD_ABOUT: &str = "\
Record continuously into the history database, with the same selectors as the ad-hoc mode.

Failures are counted in the kernel and written once per --flush-interval, in one transaction, as
per-minute counts per (path, errno, syscall, process name, uid/gid, container or unit). A crash
or `kill -9` loses at most one interval; SIGTERM and SIGINT write everything before exiting.
SIGHUP re-reads the configuration file and reopens the --jsonl file (for log rotation).

Memory stays bounded: keys idle for two minutes are forgotten in the kernel and in observer after
their counts are taken; at most 200,000 per-minute counts and 32 MiB of path names wait for a
flush. When the history cannot be written (disk full), capture goes on within those bounds, the
error is logged, and writing resumes when it can; what does not fit is counted as dropped.";

pub(super) const RECORD_AFTER_HELP: &str = "\
Configuration file (TOML, default /etc/observer/observer.toml; a missing default file is fine).
Every long option above is a key; the command line overrides the file. If the command line
names any selector (--comm, --pid, --cgroup, --container, --all), the file's selectors are
ignored.

  comm = [\"apache2\", \"php-fpm8.2\"]
  errno = [\"ENOENT\", \"EACCES\"]
  db = \"/var/lib/observer/observer.db\"
  flush-interval = \"10s\"
  retention = \"14d\"
  max-db-size = \"1GiB\"
  metrics = \"127.0.0.1:9464\"
  metrics-top = 20
  jsonl = \"/var/log/observer/failures.jsonl\"

On SIGHUP, flush-interval, retention, max-db-size, metrics, metrics-top, jsonl and verbose
change at once; a change of selectors restarts the capture (counts are kept); db needs a
restart of observer.

Examples:
  sudo observer record --comm apache2 --comm php-fpm8.2
  sudo observer record --cgroup /sys/fs/cgroup/system.slice/apache2.service --metrics 127.0.0.1:9464
  sudo systemctl reload observer         re-read /etc/observer/observer.toml";

pub(super) const REPORT_AFTER_HELP: &str = "\
WHEN is a duration back from now (30m, 2h, 1d), `now`, a time today (12:00), or a date and
time: 2024-05-01, 2024-05-01 12:00, 2024-05-01T12:00:00 (local time), or with Z or an offset
(2024-05-01T10:00Z). The window is rounded out to whole minutes.

Novelty in history mode: a path failing in the window that never failed before it outranks one
that has always failed (\"has always failed\" in its reasons), as far back as the history reaches.

Examples:
  observer report --since 2h
  observer report --since '2024-05-01 11:30' --until '2024-05-01 12:30' --format json
  observer report --db ./copy-of-observer.db --top 10";

pub(super) const TIMELINE_AFTER_HELP: &str = "\
Shows, per errno, each episode (failing minutes with no more than 5 quiet minutes between them:
when it started, when it stopped, how many calls), then each failing minute with its count,
syscalls and process names, and the times observer was not recording. Times are local.

Examples:
  observer timeline /var/www/html/wp-config.php
  observer timeline --since 1d /usr/lib/apache2/modules/mod_php.so --format json";
