<?php
// Loads the configuration and the helpers, then what a framework looks for on every request.
define('APP_ROOT', dirname(__DIR__));

require APP_ROOT . '/config/app.php';
require __DIR__ . '/helpers.php';

// Optional drop-ins: most sites have none of them, every request looks.
if (file_exists(APP_ROOT . '/config/local.php')) {
    require APP_ROOT . '/config/local.php';
}
foreach (['object-cache.php', 'advanced-cache.php', 'sunrise.php'] as $dropin) {
    if (file_exists(APP_ROOT . '/content/' . $dropin)) {
        require APP_ROOT . '/content/' . $dropin;
    }
}
if (is_file(APP_ROOT . '/.maintenance')) {
    http_response_code(503);
    exit("Down for maintenance\n");
}

app_load_translations(APP_LOCALE);
