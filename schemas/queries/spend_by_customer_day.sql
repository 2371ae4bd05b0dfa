-- Spend by customer and day: provider cost, customer charge and margin.
-- From the pre-aggregated daily table; FINAL keeps each window's newest
-- total. Change the month to taste.
SELECT
    customer_id,
    day,
    sum(cost)               AS total_cost,
    sum(charge)             AS total_charge,
    sum(charge) - sum(cost) AS margin
FROM usage_daily FINAL
WHERE day >= toDate('2026-11-01') AND day < toDate('2026-12-01')
GROUP BY customer_id, day
ORDER BY day, customer_id;
