<?php
// Application settings (in a real site: database credentials, keys). Readable by www-data.
define('APP_NAME', 'Observer test shop');
define('APP_LOCALE', 'de_DE');
define('APP_TEXT_DOMAIN', 'shop');
define('APP_DB_DSN', 'sqlite::memory:');
