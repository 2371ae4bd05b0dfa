-- Tokens and spend by model (price-list entry), unit type and day.
SELECT
    day,
    provider,
    price_key,
    unit,
    sum(quantity) AS total_quantity,
    sum(events)   AS total_events,
    sum(charge)   AS total_charge
FROM usage_daily FINAL
WHERE day >= toDate('2026-11-01') AND day < toDate('2026-12-01')
GROUP BY day, provider, price_key, unit
ORDER BY day, provider, price_key, unit;
