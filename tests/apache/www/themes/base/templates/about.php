<h1><?= htmlspecialchars(__t('About us')) ?></h1>
<p>PHP <?= PHP_MAJOR_VERSION ?></p>
