-- One customer's rated line items for the month, as on an invoice detail:
-- every event and unit type with quantity, unit price, cost and charge.
-- From rated_lines; FINAL collapses a line written twice by a redelivery.
SELECT
    event_time,
    event_id,
    model,
    price_key,
    unit,
    quantity,
    unit_price,
    cost,
    charge
FROM rated_lines FINAL
WHERE customer_id = 'acme'
  AND event_date >= toDate('2026-11-01') AND event_date < toDate('2026-12-01')
ORDER BY event_ms, event_id, unit;
