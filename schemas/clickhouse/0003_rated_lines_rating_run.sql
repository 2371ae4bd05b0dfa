-- What re-rating (tariff replay) needs in rated_lines.
--
-- rating_run: the rating run that wrote the row: '' for live usage, the
-- replay's run id for an event re-rated by `tariff replay`. A re-rated
-- event's rows replace the old ones (same key, later rated_at), so
-- `rating_run = '<run>'` under FINAL counts how far a replay has got.
--
-- price_provider: the provider of the price-list entry that priced the
-- row (`provider` is the provider as the event reported it, possibly
-- empty). The aggregate tables are keyed by this one, so a replay needs it
-- to take the old amounts out of the right totals.
--
-- unlined: quantities the event reported for units that have no row
-- (request counts on a model priced by tokens) as "unit=quantity" pairs
-- joined by commas ("requests=1"), repeated on each row of the event, so
-- that the event can be rebuilt whole from its rows: a corrected price may
-- bill what the old one did not. One string rather than two arrays: it is
-- written on every row at stream speed.
--
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: `tariff migrate`
-- treats "column already exists" (code 44) on an ALTER ... ADD COLUMN as
-- applied, so a run interrupted between two statements can be repeated.
-- Rows written before this migration read the defaults, '' (a replay then
-- finds the price provider in usage_daily, and such rows carry no unlined
-- quantities).
ALTER TABLE rated_lines ADD COLUMN rating_run String DEFAULT '';
ALTER TABLE rated_lines ADD COLUMN price_provider String DEFAULT '';
ALTER TABLE rated_lines ADD COLUMN unlined String DEFAULT '';
