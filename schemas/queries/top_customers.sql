-- The ten customers who spent most in the month, with their margin.
SELECT
    customer_id,
    sum(charge)             AS total_charge,
    sum(charge) - sum(cost) AS margin
FROM usage_daily FINAL
WHERE day >= toDate('2026-11-01') AND day < toDate('2026-12-01')
GROUP BY customer_id
ORDER BY total_charge DESC, customer_id
LIMIT 10;
