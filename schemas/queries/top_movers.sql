-- Top movers: the ten customers whose daily spend changed most, up or
-- down, from the day before to the day (here 2026-11-20), for spotting a
-- runaway integration or a customer who stopped. A customer with no usage
-- on one of the two days counts 0 there.
SELECT
    customer_id,
    sumIf(charge, day = toDate('2026-11-20') - 1) AS previous_charge,
    sumIf(charge, day = toDate('2026-11-20'))     AS current_charge,
    current_charge - previous_charge              AS charge_change
FROM usage_daily FINAL
WHERE day >= toDate('2026-11-20') - 1 AND day <= toDate('2026-11-20')
GROUP BY customer_id
ORDER BY abs(charge_change) DESC, customer_id
LIMIT 10;
