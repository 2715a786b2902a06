# observer --fix puppet: the fixes observer is sure of, from a capture from 2024-05-01T12:00:00.000Z to 2024-05-01T12:10:00.000Z.
# Review them, then, as root: puppet apply FILE
# Each change is guarded: a second run changes nothing. A culprit without a sure fix is
# named with the reason, and left as it is.

# 1. /var/www/html/wp-content/plugins/shop/class-shop.phpp (ENOENT, rank 1)
#    did you mean /var/www/html/wp-content/plugins/shop/class-shop.php (exists)
#    /var/www/html/wp-content/plugins/shop/shop.php:12
#    - require_once __DIR__ . '/class-shop.phpp';
#    + require_once __DIR__ . '/class-shop.php';
exec { 'observer: edit /var/www/html/wp-content/plugins/shop/shop.php:12':
  provider    => shell,
  path        => ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'],
  environment => [
    'OBSERVER_FILE=/var/www/html/wp-content/plugins/shop/shop.php',
    'OBSERVER_LINE=12',
    'OBSERVER_OLD=    require_once __DIR__ . \'/class-shop.phpp\';',
    'OBSERVER_NEW=    require_once __DIR__ . \'/class-shop.php\';',
  ],
  onlyif      => 'perl -e \'open(my $f, "<", $ENV{OBSERVER_FILE}) or exit 1; while (<$f>) { next if $. != $ENV{OBSERVER_LINE}; s/\\r?\\n\\z//; exit($_ eq $ENV{OBSERVER_OLD} ? 0 : 1) } exit 1\'',
  command     => 'perl -e \'my ($p, $n) = @ENV{qw(OBSERVER_FILE OBSERVER_LINE)}; open(my $f, "+<", $p) or die "$p: $!\\n"; my @l = <$f>; die "$p has no line $n: not changed\\n" unless $n >= 1 && $n <= @l && $l[$n - 1] =~ /\\A(.*?)(\\r?\\n)?\\z/s; my ($line, $eol) = ($1, $2 // ""); exit 0 if $line eq $ENV{OBSERVER_NEW}; die "$p:$n does not read as observer saw it: not changed\\n" unless $line eq $ENV{OBSERVER_OLD}; $l[$n - 1] = $ENV{OBSERVER_NEW} . $eol; seek($f, 0, 0) or die "$p: $!\\n"; print $f @l or die "$p: $!\\n"; truncate($f, tell($f)) or die "$p: $!\\n"; close($f) or die "$p: $!\\n"\'',
  notify      => Exec['observer: reload apache2.service'],
}

# 2. /etc/app/config.php (EACCES, rank 2)
#    uid 4242420 cannot read /etc/app/config.php (-rw------- 0600 root:root)
file { '/etc/app/config.php':
  group       => '4242420',
  mode        => 'g+r',
  notify      => Exec['observer: reload php-fpm8.2 (pid 4100)'],
}

# 3. /srv/very-long-directory-name/very-long-directory-name/very-long-directory-name/very-long-directory-name/very-long-directory-name/very-long-directory-name//deep/config.inc.php (ENOTDIR, rank 4)
#    not changed: nothing says what the right file is

exec { 'observer: reload apache2.service':
  provider    => shell,
  path        => ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'],
  command     => 'systemctl reload-or-restart apache2.service',
  refreshonly => true,
}

exec { 'observer: reload php-fpm8.2 (pid 4100)':
  provider    => shell,
  path        => ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'],
  command     => 'kill -USR2 4100',
  onlyif      => 'test "$(cat /proc/4100/comm 2>/dev/null)" = php-fpm8.2',
  refreshonly => true,
}
