<?php
// Front controller: /index.php/<page> (pretty URLs through PATH_INFO), or / for the home page.
require __DIR__ . '/app/bootstrap.php';

$page = trim($_SERVER['PATH_INFO'] ?? '', '/');
app_render($page === '' ? 'home' : $page);
