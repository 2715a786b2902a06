<h1><?= htmlspecialchars(__t('Welcome')) ?></h1>
<p><?= htmlspecialchars(APP_NAME) ?></p>
