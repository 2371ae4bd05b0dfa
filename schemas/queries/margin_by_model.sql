-- Margin by model over the month: what customers paid over provider cost.
SELECT
    provider,
    price_key,
    sum(cost)               AS total_cost,
    sum(charge)             AS total_charge,
    sum(charge) - sum(cost) AS margin
FROM usage_daily FINAL
WHERE day >= toDate('2026-11-01') AND day < toDate('2026-12-01')
GROUP BY provider, price_key
ORDER BY margin DESC, price_key;
