<?php
// Template lookup and translations, the way themes and frameworks do them.

$GLOBALS['app_strings'] = [];

function app_load_translations(string $locale): void
{
    $base = APP_ROOT . '/content/languages/' . APP_TEXT_DOMAIN . '-' . $locale;
    // Newer sites ship a PHP translation file, older ones a gettext .mo; this one has neither.
    if (is_file($base . '.l10n.php')) {
        $GLOBALS['app_strings'] = require $base . '.l10n.php';
    } elseif (is_readable($base . '.mo')) {
        $GLOBALS['app_strings'] = ['loaded' => filesize($base . '.mo')];
    }
}

function __t(string $text): string
{
    return $GLOBALS['app_strings'][$text] ?? $text;
}

function app_template(string $name): ?string
{
    // A child theme may override any template of the base theme.
    foreach (['child', 'base'] as $theme) {
        $file = APP_ROOT . '/themes/' . $theme . '/templates/' . $name . '.php';
        if (is_file($file)) {
            return $file;
        }
    }
    return null;
}

function app_render(string $page): void
{
    if (!preg_match('/^[a-z0-9-]+$/', $page) || ($tpl = app_template($page)) === null) {
        http_response_code(404);
        echo __t('Not found'), "\n";
        return;
    }
    $cached = APP_ROOT . '/content/cache/' . $page . '.html';
    if (is_file($cached)) {
        readfile($cached);
        return;
    }
    header('Content-Type: text/html; charset=utf-8');
    echo '<!doctype html><title>', htmlspecialchars(APP_NAME), '</title>', "\n";
    require $tpl;
}
