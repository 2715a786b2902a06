<?php
// Needs PHP's calendar extension (extension=calendar.so).
$days = cal_days_in_month(CAL_GREGORIAN, 2, 2024);
?>
<h1><?= htmlspecialchars(__t('Calendar')) ?></h1>
<p>February 2024 has <?= $days ?> days.</p>
