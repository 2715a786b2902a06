#!/bin/sh
# observer --fix shell: the fixes observer is sure of, from a capture from 2024-05-01T12:00:00.000Z to 2024-05-01T12:10:00.000Z.
# Review them, then, as root: sh FILE
# Each change is guarded: a second run changes nothing. A culprit without a sure fix is
# named with the reason, and left as it is.
set -eu

# 1. /var/www/html/wp-content/plugins/shop/class-shop.phpp (ENOENT, rank 1)
#    did you mean /var/www/html/wp-content/plugins/shop/class-shop.php (exists)
#    /var/www/html/wp-content/plugins/shop/shop.php:12
#    - require_once __DIR__ . '/class-shop.phpp';
#    + require_once __DIR__ . '/class-shop.php';
OBSERVER_FILE=/var/www/html/wp-content/plugins/shop/shop.php OBSERVER_LINE=12 \
  OBSERVER_OLD='    require_once __DIR__ . '\''/class-shop.phpp'\'';' \
  OBSERVER_NEW='    require_once __DIR__ . '\''/class-shop.php'\'';' \
  perl -e 'my ($p, $n) = @ENV{qw(OBSERVER_FILE OBSERVER_LINE)}; open(my $f, "+<", $p) or die "$p: $!\n"; my @l = <$f>; die "$p has no line $n: not changed\n" unless $n >= 1 && $n <= @l && $l[$n - 1] =~ /\A(.*?)(\r?\n)?\z/s; my ($line, $eol) = ($1, $2 // ""); exit 0 if $line eq $ENV{OBSERVER_NEW}; die "$p:$n does not read as observer saw it: not changed\n" unless $line eq $ENV{OBSERVER_OLD}; $l[$n - 1] = $ENV{OBSERVER_NEW} . $eol; seek($f, 0, 0) or die "$p: $!\n"; print $f @l or die "$p: $!\n"; truncate($f, tell($f)) or die "$p: $!\n"; close($f) or die "$p: $!\n"'

# 2. /etc/app/config.php (EACCES, rank 2)
#    uid 4242420 cannot read /etc/app/config.php (-rw------- 0600 root:root)
chgrp 4242420 /etc/app/config.php
chmod g+r /etc/app/config.php

# 3. /srv/very-long-directory-name/very-long-directory-name/very-long-directory-name/very-long-directory-name/very-long-directory-name/very-long-directory-name//deep/config.inc.php (ENOTDIR, rank 4)
#    not changed: nothing says what the right file is

# Reload what runs the changed files.
systemctl reload-or-restart apache2.service
if test "$(cat /proc/4100/comm 2>/dev/null)" = php-fpm8.2; then kill -USR2 4100; fi
